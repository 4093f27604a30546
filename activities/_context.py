"""What a node type's function sees besides its config."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import activity

from activities._secrets import Redactor
from activities.settings import WorkerSettings
from interpreter.node_io import BudgetLeft, RunInfo, Usage

if TYPE_CHECKING:
    from activities.values import ValueStore

T = TypeVar("T")


class WorkerResources:
    """Objects a worker creates once and shares between node runs (clients, engines, servers).

    ``get`` creates a resource on first use; ``aclose`` closes them all when the worker stops.
    """

    def __init__(self, settings: WorkerSettings, *, lineage: Any = None) -> None:
        """Resources of a worker configured by ``settings``; ``lineage`` is where nodes'
        reads and writes are recorded (a :class:`activities.lineage.LineageRecorder`, None:
        nowhere)."""
        self.settings = settings
        self.lineage = lineage
        self._items: dict[str, Any] = {}
        self._closers: list[Callable[[], Any]] = []
        self._lock = asyncio.Lock()
        self._values: ValueStore | None = None

    def values(self) -> ValueStore:
        """The worker's store of values passed by reference (one per worker)."""
        if self._values is None:
            from activities.values import ValueStore

            self._values = ValueStore(self.settings)
        return self._values

    async def get(
        self,
        key: str,
        factory: Callable[[], Awaitable[T] | T],
        close: Callable[[T], Any] | None = None,
    ) -> T:
        """The resource named ``key``, created by ``factory`` the first time."""
        if key in self._items:
            return self._items[key]  # type: ignore[no-any-return]
        async with self._lock:
            if key not in self._items:
                made = factory()
                value = await made if inspect.isawaitable(made) else made
                self._items[key] = value
                if close is not None:
                    self._closers.append(lambda: close(value))
        return self._items[key]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close every resource, newest first."""
        while self._closers:
            closer = self._closers.pop()
            result = closer()
            if inspect.isawaitable(result):
                await result
        self._items.clear()


@dataclass
class NodeContext:
    """Per-run context handed to a node type's function next to its validated config."""

    node_id: str
    node_type: str
    run: RunInfo
    attempt: int
    settings: WorkerSettings
    resources: WorkerResources
    scope: dict[str, Any] | None = None
    """inputs, vars, nodes, item, index: only for node types that run user code."""
    limits: dict[str, Any] | None = None
    """The node's ``resource_limits`` (applied within the worker's ceilings)."""
    usage: Usage | None = None
    budget: BudgetLeft | None = None
    """What the node may still spend (tokens, USD) when its run or itself has a ``budget``;
    AI calls that could spend more raise ``TideflowBudgetExceeded`` first."""
    last_heartbeat: tuple[Any, ...] = ()
    """The details of the node's latest heartbeat (the registry repeats them to keep alive)."""
    origin: str | None = None
    """Where the node's run came from (``NodeInput.origin``: ``inline``, ``api``, ``cli``…)."""
    local: bool = False
    """Whether the node runs as a local activity (it cannot heartbeat)."""
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _activity_context: contextvars.Context | None = field(default=None, repr=False)
    _redactor: Redactor | None = field(default=None, repr=False)

    def heartbeat(self, *details: Any) -> None:
        """Tell Temporal the node is alive (with progress ``details`` a retry can read back
        from ``activity.info().heartbeat_details``); safe to call from a worker thread.
        Secret values the node's config used are redacted from the details."""
        if self._redactor:
            details = tuple(self._redactor.value(list(details)))
        self.last_heartbeat = details
        loop, context = self._loop, self._activity_context
        if loop is None or context is None or self.local:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            activity.heartbeat(*details)
        else:
            loop.call_soon_threadsafe(activity.heartbeat, *details, context=context)

    def is_cancelled(self) -> bool:
        """Whether Temporal asked this node to stop (long loops should check it)."""
        if self._activity_context is None:
            return False
        return self._activity_context.run(activity.is_cancelled)

    def add_usage(
        self,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        """Record tokens (and cost) an AI call used; the run report sums them."""
        usage = self.usage or Usage()
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        if cost_usd is not None:
            usage.cost_usd = (usage.cost_usd or 0.0) + cost_usd
        usage.provider = provider or usage.provider
        usage.model = model or usage.model
        self.usage = usage
