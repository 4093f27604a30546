"""The worker configuration file (``TIDEFLOW_CONFIG`` or ``<home>/worker.yaml``): read with the
position of every key, seed 003's engine configuration mapped onto the native settings, and
problems located as ``FILE:LINE:COL: message`` instead of a pydantic traceback.

Seed 003 writes the engine's configuration as one block::

    workflow_engine:
      type: "sequential"
      max_concurrent_workflows: 20         # → max_concurrent_workflow_tasks (worker slots)
      state_persistence: true              # Temporal persists every run; false is refused
      error_handling:
        retry_attempts: 3                  # → default_retry.max_attempts = 4 (3 retries)
        backoff_strategy: "exponential"    # → default_retry.backoff
      monitoring:
        enabled: true                      # → monitoring (the Prometheus export)
        metrics: ["latency", "throughput", "failures"]
      extensions:
        - name: "custom_logger"            # → extensions (hooks loaded by entry-point name)
          enabled: true

It loads as written, alone or next to native settings; a setting given both ways is a problem.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from activities.settings import ExtensionSettings, MetricFamily, SettingsError
from interpreter.loader import EMPTY, Document, read_yaml
from interpreter.model import RetrySpec

PathKey = tuple[str | int, ...]

SEED_KEY = "workflow_engine"
"""The top-level key of seed 003's engine configuration."""


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedErrorHandling(_Seed):
    """``workflow_engine.error_handling``: the default retry of nodes that set none."""

    retry_attempts: int = Field(default=2, ge=0)
    """Retries after the first attempt (``max_attempts`` is one more)."""
    backoff_strategy: Literal["exponential", "fixed", "constant"] = "exponential"


class SeedMonitoring(_Seed):
    """``workflow_engine.monitoring``: the worker's metrics export."""

    enabled: bool = True
    metrics: list[MetricFamily] | None = None
    address: str | None = None


class EngineConfig(_Seed):
    """Seed 003's ``workflow_engine`` block, as written."""

    type: Literal["sequential", "parallel", "dag"] = "dag"
    """Accepted and checked; every Tideflow run is a dependency graph (independent nodes run in
    parallel, ``steps:`` in sequence), whatever the engine is called."""
    max_concurrent_workflows: int | None = Field(default=None, ge=1)
    state_persistence: bool = True
    error_handling: SeedErrorHandling | None = None
    monitoring: SeedMonitoring | None = None
    extensions: list[ExtensionSettings] = Field(default_factory=list)

    @field_validator("state_persistence")
    @classmethod
    def _persisted(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false is not possible: Temporal persists the state of every run "
                "(remove the setting or write true)"
            )
        return value


@dataclass
class Source:
    """A configuration file: its native data and where each setting was written."""

    document: Document
    data: dict[str, Any]
    origins: dict[PathKey, PathKey] = field(default_factory=dict)
    """Native path → the path written in the file, for settings the seed form gave."""

    def written_at(self, path: PathKey) -> PathKey:
        """Where the setting at native ``path`` sits in the file."""
        for length in range(len(path), 0, -1):
            written = self.origins.get(path[:length])
            if written is not None:
                return written + path[length:]
        return path

    def where(self, path: PathKey, *, key: bool = False) -> str:
        """``FILE:LINE:COL`` of the setting at native ``path``."""
        position = self.document.position(self.written_at(path), key=key)
        return f"{self.document.file}:{position.line}:{position.column}"


def read(path: Path) -> Source:
    """Read a configuration file; raises :class:`SettingsError` for YAML that does not parse,
    a file that is not a mapping, and seed settings that do not fit."""
    document = read_yaml(path)
    problems = [p for p in document.problems if p.message != EMPTY]
    if problems:
        raise SettingsError([str(p) for p in problems])
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise SettingsError([f"{path}:1:1: the worker configuration must be a mapping"])
    source = Source(document, dict(data))
    if SEED_KEY in source.data:
        _map_seed(source)
    return source


def _map_seed(source: Source) -> None:
    raw = source.data.pop(SEED_KEY)
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise SettingsError([_at(source, (SEED_KEY,), f"{SEED_KEY} must be a mapping")])
    try:
        engine = EngineConfig.model_validate(raw)
    except ValidationError as e:
        raise SettingsError(_located(e, EngineConfig, source, prefix=(SEED_KEY,))) from None
    given = engine.model_fields_set
    mapped: dict[PathKey, tuple[Any, PathKey]] = {}
    if "max_concurrent_workflows" in given and engine.max_concurrent_workflows is not None:
        mapped[("max_concurrent_workflow_tasks",)] = (
            engine.max_concurrent_workflows,
            (SEED_KEY, "max_concurrent_workflows"),
        )
    if engine.error_handling is not None:
        handling = engine.error_handling
        retry = RetrySpec(
            max_attempts=handling.retry_attempts + 1, backoff=handling.backoff_strategy
        )
        mapped[("default_retry",)] = (retry.model_dump(), (SEED_KEY, "error_handling"))
        source.origins[("default_retry", "max_attempts")] = (
            SEED_KEY,
            "error_handling",
            "retry_attempts",
        )
        source.origins[("default_retry", "backoff")] = (
            SEED_KEY,
            "error_handling",
            "backoff_strategy",
        )
    if engine.monitoring is not None:
        monitoring = engine.monitoring.model_dump(exclude_none=True)
        mapped[("monitoring",)] = (monitoring, (SEED_KEY, "monitoring"))
    if "extensions" in given:
        extensions = [e.model_dump() for e in engine.extensions]
        mapped[("extensions",)] = (extensions, (SEED_KEY, "extensions"))
    problems = []
    for native, (value, written) in mapped.items():
        name = str(native[0])
        if name in source.data:
            problems.append(
                _at(
                    source,
                    written,
                    f"{'.'.join(map(str, written))} sets {name}, which "
                    f"{source.where((name,), key=True)} sets too: keep one",
                    key=True,
                )
            )
            continue
        source.data[name] = value
        source.origins.setdefault(native, written)
    if problems:
        raise SettingsError(problems)


def problems(
    error: ValidationError, source: Source | None, from_env: dict[tuple[str, ...], str]
) -> list[str]:
    """One located line per problem of :class:`~activities.settings.WorkerSettings`."""
    from activities.settings import WorkerSettings

    return _located(error, WorkerSettings, source, from_env=from_env)


def _located(
    error: ValidationError,
    model: type[BaseModel],
    source: Source | None,
    *,
    prefix: PathKey = (),
    from_env: dict[tuple[str, ...], str] | None = None,
) -> list[str]:
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        variable = _variable(loc, from_env or {})
        kind = item["type"]
        if kind == "extra_forbidden":
            message = f"unknown setting {loc[-1]!r}{_where_in(loc[:-1], prefix)}"
            message += _did_you_mean(str(loc[-1]), _model_at(model, loc[:-1]))
            key = True
        elif kind == "missing":
            message = f"{_dotted(prefix + loc[:-1]) or 'the configuration'} needs {loc[-1]!r}"
            loc, key = loc[:-1], False
        else:
            message = f"{_dotted(prefix + loc)}: {_message(item)}"
            key = False
        if variable is not None:
            lines.append(f"{variable}: {message}")
        elif source is not None:
            lines.append(_at(source, prefix + loc, message, key=key, native=not prefix))
        else:
            lines.append(message)
    return sorted(lines, key=_position)


def _position(line: str) -> tuple[int, int]:
    found = _LOCATED.search(line)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


_LOCATED = re.compile(r":(\d+):(\d+): ")


def _at(
    source: Source, path: PathKey, message: str, *, key: bool = False, native: bool = False
) -> str:
    written = source.written_at(path) if native else path
    problem = source.document.problem(written, message, key=key)
    return str(problem)


def _variable(loc: PathKey, from_env: dict[tuple[str, ...], str]) -> str | None:
    for length in range(len(loc), 0, -1):
        variable = from_env.get(tuple(str(step) for step in loc[:length]))
        if variable is not None:
            return variable
    return None


def _dotted(path: PathKey) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _where_in(parent: PathKey, prefix: PathKey) -> str:
    where = _dotted(prefix + parent)
    return f" in {where}" if where else ""


def _message(item: Any) -> str:
    message = str(item["msg"])
    # pydantic's "Value error, …" prefix says nothing to a person editing a file.
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _did_you_mean(name: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return ""
    close = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(model: type[BaseModel], path: PathKey) -> type[BaseModel] | None:
    """The model whose fields sit at ``path`` below ``model`` (lists and mappings crossed)."""
    current: Any = model
    for step in path:
        # A list index or a mapping's key keeps the item's model, already unwrapped.
        if isinstance(step, str) and _is_model(current) and step in current.model_fields:
            current = _inner(current.model_fields[step].annotation)
    return current if _is_model(current) else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _inner(annotation: Any) -> Any:
    """The model inside ``X | None``, ``list[X]`` or ``dict[str, X]`` (else the annotation)."""
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _inner(arg)
            if _is_model(found):
                return found
    elif origin in (list, tuple) and args:
        return _inner(args[0])
    elif origin is dict and len(args) == 2:
        return _inner(args[1])
    return annotation
