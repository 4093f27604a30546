"""The node-type registry: a type name maps to a function and the pydantic model of its config.

A family module declares its types with :func:`node_type`; :meth:`Registry.activities` turns
every type into one Temporal activity named after the type, taking a single
:class:`~interpreter.node_io.NodeInput` and returning a :class:`~interpreter.node_io.NodeResult`.
The wrapper resolves ``${{ secrets.NAME }}`` and redacts their values from everything the node
leaves behind (:mod:`activities._secrets`), validates the config, maps :mod:`activities.errors`
onto Temporal failures (retryable or not), caps the output's size (``max_output_mb``), reports
the attempt number, serves ``cache`` and measures every attempt of a Tideflow run
(:mod:`activities._metrics`: outcome, duration, CPU, memory, tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json, to_jsonable_python
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import lineage
from activities._cache import MISSING, NodeCache
from activities._context import NodeContext, WorkerResources
from activities._metrics import Attempt, NodeMetrics
from activities._secrets import Redactor, redacting_logs, resolve_secrets
from activities.errors import NodeConfigError, NodeError, PermanentNodeError
from activities.files import megabytes
from activities.values import offload, resolve_async
from interpreter.node_io import NodeInput, NodeResult, RunInfo
from interpreter.node_types import BUILTIN_ALIASES, RAW_CONFIG_KEYS
from interpreter.values import has_refs

NodeFunction = Callable[[Any, NodeContext], Any]


@dataclass(frozen=True)
class NodeType:
    """One registered node type."""

    name: str
    config_model: type[BaseModel]
    function: NodeFunction
    aliases: tuple[str, ...] = ()
    description: str = ""
    execution: Execution | None = None
    """How a node of this type runs unless it says: ``local`` (cheap enough for a Temporal local
    activity), or a function of the node's config as written giving ``local`` or None."""


Execution = str | Callable[[Mapping[str, Any]], str | None]


@dataclass
class Registry:
    """Node types by canonical name and alias."""

    _types: dict[str, NodeType] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    def register(self, node_type: NodeType) -> None:
        """Add a node type; a name or alias already taken is an error."""
        if node_type.name in self._types:
            raise ValueError(f"node type {node_type.name!r} is registered twice")
        self._types[node_type.name] = node_type
        for alias in node_type.aliases:
            owner = self._aliases.get(alias)
            if owner and owner != node_type.name:
                raise ValueError(f"alias {alias!r} of {node_type.name!r} belongs to {owner!r}")
            self._aliases[alias] = node_type.name

    def canonical(self, name: str) -> str | None:
        """The canonical name of a type or alias, or None if unknown."""
        if name in self._types:
            return name
        return self._aliases.get(name) or (
            BUILTIN_ALIASES[name] if BUILTIN_ALIASES.get(name) in self._types else None
        )

    def get(self, name: str) -> NodeType | None:
        """The node type of a name or alias."""
        canonical = self.canonical(name)
        return self._types.get(canonical) if canonical else None

    def config_model(self, name: str) -> type[BaseModel] | None:
        """The config model of a type (the interpreter's catalog protocol)."""
        found = self.get(name)
        return found.config_model if found else None

    def default_execution(self, name: str, config: Mapping[str, Any]) -> str | None:
        """How a node of type ``name`` with ``config`` runs unless it says (the plan compiler
        asks): ``local`` or None (a regular activity)."""
        found = self.get(name)
        if found is None or found.execution is None:
            return None
        if isinstance(found.execution, str):
            return found.execution
        return found.execution(config)

    def names(self) -> list[str]:
        """Every canonical name and alias, sorted."""
        return sorted({*self._types, *self._aliases})

    def types(self) -> list[NodeType]:
        """Every registered type, by name."""
        return [self._types[name] for name in sorted(self._types)]

    def activities(
        self, resources: WorkerResources, *, task_queue: str | None = None
    ) -> list[Callable[..., Any]]:
        """One Temporal activity per registered type, bound to the worker's resources. Types
        the worker's settings do not serve (``node_types``, ``exclude_node_types``) get an
        activity that fails at once, naming the type and the queue (``task_queue``)."""
        settings = resources.settings
        queue = task_queue or settings.task_queue
        return [
            _activity_for(node_type, resources)
            if settings.serves(node_type.name)
            else _refusing_activity(node_type, queue)
            for node_type in self.types()
        ]


registry = Registry()


def node_type(
    name: str,
    config_model: type[BaseModel],
    *,
    aliases: Iterable[str] = (),
    execution: Execution | None = None,
    registry_: Registry | None = None,
) -> Callable[[NodeFunction], NodeFunction]:
    """Register the decorated function as the node type ``name``.

    The function takes ``(config, ctx)`` — an instance of ``config_model`` and a
    :class:`NodeContext` — and returns a JSON-able value, or a
    :class:`~interpreter.node_io.NodeResult` with a ``review`` (a person confirms or corrects
    the output before the run goes on). ``async def`` functions run on the
    worker's event loop; plain ``def`` functions run in a thread so blocking libraries are fine.
    The seed aliases of built-in types come from the language (``BUILTIN_ALIASES``).
    """
    builtin = tuple(alias for alias, target in BUILTIN_ALIASES.items() if target == name)

    def decorate(function: NodeFunction) -> NodeFunction:
        (registry_ or registry).register(
            NodeType(
                name=name,
                config_model=config_model,
                function=function,
                aliases=(*builtin, *aliases),
                description=inspect.getdoc(function) or "",
                execution=execution,
            )
        )
        return function

    return decorate


def config_error_message(error: ValidationError) -> str:
    """A one-line summary of a config validation error: ``field: problem; ...``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _activity_for(node_type: NodeType, resources: WorkerResources) -> Callable[..., Any]:
    async def run_node(input: NodeInput) -> NodeResult:
        info = activity.info()
        metrics = await resources.get(
            _METRICS, lambda: NodeMetrics(resources.settings), close=NodeMetrics.aclose
        )
        attempt = metrics.start(info, input.node_id, node_type.name)
        if attempt is None:
            return await measured(input, info, None)
        try:
            result = await measured(input, info, attempt)
        except asyncio.CancelledError as e:
            metrics.finish(attempt, "cancelled", e)
            raise
        except BaseException as e:
            metrics.finish(attempt, "failed", e)
            raise
        attempt.usage = result.usage
        metrics.finish(attempt, "cached" if result.cached else "completed")
        return result

    async def measured(
        input: NodeInput, info: activity.Info, attempt: Attempt | None
    ) -> NodeResult:
        span = trace.get_current_span()
        span.set_attribute("tideflow.node", input.node_id)
        span.set_attribute("tideflow.node_type", node_type.name)
        span.set_attribute("tideflow.workflow_id", info.workflow_id or "")
        used: dict[str, str] = {}
        values = resources.values()
        config_in = await resolve_async(input.config, values)
        scope = await resolve_async(input.scope, values)
        try:
            raw = RAW_CONFIG_KEYS.get(node_type.name, frozenset())
            resolved = {
                k: v if k in raw else resolve_secrets(v, used=used) for k, v in config_in.items()
            }
            config = node_type.config_model.model_validate(resolved)
        except NodeConfigError as e:
            _fail(input, e, info.attempt, node_type.name, Redactor(used))
        except ValidationError as e:
            error = NodeConfigError(f"bad config: {config_error_message(e)}")
            _fail(input, error, info.attempt, node_type.name, Redactor(used), cause=e)
        redactor = Redactor(used)
        ctx = NodeContext(
            node_id=input.node_id,
            node_type=node_type.name,
            run=RunInfo(workflow_id=info.workflow_id or "", run_id=info.workflow_run_id or ""),
            attempt=info.attempt,
            settings=resources.settings,
            resources=resources,
            scope=scope,
            budget=input.budget,
            limits=input.limits,
            local=info.is_local,
            origin=input.origin,
            _loop=asyncio.get_running_loop(),
            _activity_context=contextvars.copy_context(),
            _redactor=redactor or None,
        )
        review = None
        cache: NodeCache | None = None
        cache_key = ""
        if input.cache_ttl_seconds:
            cache = NodeCache(resources.settings.home / "cache")
            cache_key = NodeCache.key(node_type.name, input.config)
            hit = cache.get(cache_key, input.cache_ttl_seconds)
            if hit is not MISSING:
                return NodeResult(
                    output=hit, attempt=info.attempt, cached=True, references=has_refs(hit)
                )
        with redacting_logs(redactor) if redactor else contextlib.nullcontext():
            # A local activity cannot heartbeat: it runs within the workflow task.
            heartbeat = asyncio.create_task(
                _keep_alive(info.heartbeat_timeout, ctx) if not info.is_local else asyncio.sleep(0)
            )
            try:
                if inspect.iscoroutinefunction(node_type.function):
                    output = await node_type.function(config, ctx)
                else:
                    # In its own thread, whose CPU time is the node's.
                    call = attempt.measurement.run_in_thread if attempt else _call
                    output = await asyncio.to_thread(
                        contextvars.copy_context().run, call, node_type.function, config, ctx
                    )
                if isinstance(output, NodeResult):
                    # The node asks a person to confirm its answer (ReviewRequest).
                    output, review = output.output, output.review
                output = redactor.value(to_jsonable_python(output))
                _check_output_size(output, resources.settings.max_output_bytes, input.limits)
                # Large parts stay out of the workflow: stored, and passed on by reference.
                output, references = await asyncio.to_thread(
                    offload, output, values, resources.settings.reference_threshold
                )
            except asyncio.CancelledError:
                raise
            except ApplicationError as e:
                if not redactor:
                    raise
                raise ApplicationError(
                    redactor.text(e.message), type=e.type, non_retryable=e.non_retryable
                ) from None
            except Exception as e:
                _fail(input, e, info.attempt, node_type.name, redactor)
            finally:
                heartbeat.cancel()
                if attempt is not None:
                    attempt.usage = ctx.usage  # spent even when the node then failed
        if review is not None:
            review = review.model_copy(
                update={"proposed": output, "details": redactor.value(review.details)}
            )
        elif cache is not None:
            cache.put(cache_key, output)
        await lineage.after_node(node_type.name, config, output, ctx)
        return NodeResult(
            output=output,
            attempt=info.attempt,
            usage=ctx.usage,
            review=review,
            references=references,
        )

    run_node.__name__ = run_node.__qualname__ = node_type.name.replace(".", "_")
    return activity.defn(name=node_type.name)(run_node)


_METRICS = "tideflow.node_metrics"
"""The worker's :class:`NodeMetrics` among its resources."""


def _call(function: NodeFunction, config: Any, ctx: NodeContext) -> Any:
    return function(config, ctx)


def _check_output_size(output: Any, limit: int, limits: dict[str, Any] | None = None) -> None:
    """A node's output may not exceed its ``resource_limits.max_output_kb`` nor the worker's
    ``max_output_mb`` (as JSON)."""
    size = len(to_json(output))
    asked = (limits or {}).get("max_output_kb")
    if asked and asked * 1024 < limit:
        if size > asked * 1024:
            raise PermanentNodeError(
                f"the output is {megabytes(size)}, over the node's resource_limits.max_output_kb "
                f"of {asked} KiB; keep large data in storage and pass its location"
            )
        return
    if size > limit:
        raise PermanentNodeError(
            f"the output is {megabytes(size)}, over the worker's limit of {megabytes(limit)} "
            "for a node's output (setting max_output_mb, TIDEFLOW_MAX_OUTPUT_MB); keep large "
            "data in storage and pass its location"
        )


def _refusing_activity(node_type: NodeType, task_queue: str) -> Callable[..., Any]:
    """The activity of a type this worker does not serve: it fails at once, for good."""

    async def refuse(input: NodeInput) -> NodeResult:
        raise ApplicationError(
            f"node {input.node_id!r} ({node_type.name}): this worker does not run "
            f"{node_type.name} nodes on task queue {task_queue!r} (its node_types / "
            "exclude_node_types settings): give the node the task_queue: of a worker that runs "
            "them",
            type="NodeTypeNotServed",
            non_retryable=True,
        )

    refuse.__name__ = refuse.__qualname__ = node_type.name.replace(".", "_")
    return activity.defn(name=node_type.name)(refuse)


async def _keep_alive(timeout: timedelta | None, ctx: NodeContext) -> None:
    """Heartbeat while the node runs, so a dead worker is noticed within the heartbeat timeout
    (not the whole start-to-close timeout) and a cancellation reaches the node. It repeats the
    node's own latest heartbeat details, so progress a retry could resume from is kept."""
    interval = min(timeout.total_seconds() / 3, 10.0) if timeout else 10.0
    while True:
        await asyncio.sleep(interval)
        activity.heartbeat(*ctx.last_heartbeat)


def _fail(
    input: NodeInput,
    error: Exception,
    attempt: int,
    node_type: str,
    redactor: Redactor,
    *,
    cause: BaseException | None = None,
) -> NoReturn:
    """Raise the Temporal failure of ``error`` naming the node; NodeError decides retrying.

    With secrets in use, the message is redacted and the cause chain left out: Temporal records
    every cause's message in history and the worker logs the whole chain.
    """
    if isinstance(error, NodeError):
        message, retryable = error.message, error.retryable
    else:
        message, retryable = f"{type(error).__name__}: {error}", True
    failure = ApplicationError(
        redactor.text(f"node {input.node_id!r} ({node_type}): {message}"),
        {"attempt": attempt, "node": input.node_id},
        type=type(error).__name__,
        non_retryable=not retryable,
    )
    if redactor:
        raise failure from None
    raise failure from cause or error
