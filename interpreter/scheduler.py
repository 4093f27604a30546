"""The graph's state machine: which nodes are ready, joins, skip propagation, pause, operator
actions. Pure: no Temporal, no I/O, no clock (callers pass the time in).

Every event costs work proportional to the edges it touches: a node ending decrements a
pending-dependency counter on each dependent (in-degree countdown), so a 10,000-node graph is as
cheap per node as a 3-node one.

Join rules (DSL.md section 2): a node runs when all its dependencies have ended and none failed;
if every dependency was skipped it is skipped too. ``join: any`` runs it once the first
dependency completes. A dependency that failed with ``on_error: continue`` (or was rescued by a
fallback) counts as ended and lets its dependents run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class NodeStatus(StrEnum):
    """Where a node is in its life."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    WAITING = "waiting"
    """Running, but waiting for a timer, an event or an approval."""
    NEEDS_ATTENTION = "needs_attention"
    """Failed with ``on_error: pause``: waiting for an operator's retry, skip or fail."""
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


ENDED = frozenset(
    {NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)
ACTIVE = frozenset({NodeStatus.RUNNING, NodeStatus.WAITING})


@dataclass(frozen=True)
class GraphNode:
    """What the scheduler needs to know of a node."""

    id: str
    depends_on: tuple[str, ...] = ()
    join: Literal["all", "any"] = "all"
    handler: bool = False
    """Fallbacks, compensations and on_failure nodes: run only when invoked."""


@dataclass
class NodeState:
    """One node's outcome so far; the run report is made of these."""

    id: str
    status: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    output: Any = None
    error: str | None = None
    usage: dict[str, Any] | None = None
    lets_dependents_run: bool = False
    """For a failed node: True when its failure was handled (continue or fallback)."""


@dataclass
class Transition:
    """One entry of the run's history: a node (or the run, node None) changed status."""

    at: str
    node: str | None
    status: str
    detail: str | None = None


@dataclass
class _Counts:
    pending: int
    satisfied: int = 0
    decided: bool = False


@dataclass
class Scheduler:
    """The state of one run's graph."""

    nodes: Sequence[GraphNode]
    states: dict[str, NodeState] = field(init=False)
    history: list[Transition] = field(init=False, default_factory=list)
    paused: bool = field(init=False, default=False)
    dropped_history: int = field(init=False, default=0)
    """Transitions left out of ``history`` by earlier snapshots (continue-as-new)."""
    _graph: dict[str, GraphNode] = field(init=False)
    _dependents: dict[str, list[str]] = field(init=False)
    _counts: dict[str, _Counts] = field(init=False)
    _ready: deque[str] = field(init=False, default_factory=deque)
    _forced: dict[str, Any] = field(init=False, default_factory=dict)
    _open: int = field(init=False, default=0)
    _attention: set[str] = field(init=False, default_factory=set)
    _active: set[str] = field(init=False, default_factory=set)
    _counter: dict[NodeStatus, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._graph = {n.id: n for n in self.nodes}
        self.states = {n.id: NodeState(n.id) for n in self.nodes}
        self._counter = {NodeStatus.PENDING: len(self.states)}
        self._dependents = {n.id: [] for n in self.nodes}
        self._counts = {}
        for node in self.nodes:
            if node.handler:
                continue
            deps = tuple(dict.fromkeys(d for d in node.depends_on if d in self._graph))
            self._counts[node.id] = _Counts(pending=len(deps))
            for dep in deps:
                self._dependents[dep].append(node.id)
            self._open += 1

    # -- queries -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Every regular node has ended and nothing is running."""
        return self._open == 0 and not self._active

    @property
    def needs_attention(self) -> frozenset[str]:
        """Nodes that failed with ``on_error: pause`` and wait for an operator."""
        return frozenset(self._attention)

    @property
    def active(self) -> frozenset[str]:
        """Nodes running or waiting."""
        return frozenset(self._active)

    def has_ready(self) -> bool:
        """Whether :meth:`take_ready` would return something."""
        return bool(self._ready) and not self.paused

    def status(self, node_id: str) -> NodeStatus:
        """The status of a node."""
        return self.states[node_id].status

    # -- events --------------------------------------------------------------------------

    def start(self, now: str) -> None:
        """Queue every regular node without dependencies."""
        self.history.append(Transition(now, None, "running"))
        for node in self.nodes:
            counts = self._counts.get(node.id)
            if counts is not None and counts.pending == 0:
                self._decide(node.id, run=True, now=now)

    def take_ready(self, limit: int | None = None) -> list[str]:
        """Up to ``limit`` nodes to start now, in a stable order; none while paused."""
        if self.paused:
            return []
        count = len(self._ready) if limit is None else min(limit, len(self._ready))
        return [self._ready.popleft() for _ in range(count)]

    def count(self, status: NodeStatus) -> int:
        """How many nodes have this status."""
        return self._counter.get(status, 0)

    def node_started(self, node_id: str, now: str, *, waiting: bool = False) -> None:
        """A ready node (or an invoked handler) began to run."""
        state = self.states[node_id]
        self._set(state, NodeStatus.WAITING if waiting else NodeStatus.RUNNING)
        state.started_at = state.started_at or now
        state.ended_at = None
        state.error = None
        self._active.add(node_id)
        self._record(now, node_id, state.status)

    def node_waiting(self, node_id: str, now: str, waiting: bool) -> None:
        """A running node began (or stopped) waiting for a timer, event or approval."""
        state = self.states[node_id]
        self._set(state, NodeStatus.WAITING if waiting else NodeStatus.RUNNING)
        self._record(now, node_id, state.status)

    def node_completed(
        self,
        node_id: str,
        now: str,
        output: Any,
        *,
        attempts: int | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """A node succeeded."""
        state = self.states[node_id]
        self._set(state, NodeStatus.COMPLETED)
        state.output = output
        state.ended_at = now
        state.attempts = attempts if attempts is not None else state.attempts
        state.usage = usage
        self._ended(node_id, now, satisfied=True)

    def node_failed(
        self,
        node_id: str,
        now: str,
        error: str,
        *,
        mode: Literal["fail", "continue", "pause", "handled"],
        attempts: int | None = None,
        output: Any = None,
    ) -> None:
        """A node failed after its retries.

        ``fail``: the node ends failed and the caller fails the run. ``continue``: ended, its
        dependents run with a null output. ``handled``: a fallback rescued it (``output`` is the
        fallback's). ``pause``: the node waits for an operator (:meth:`retry`, :meth:`skip`).
        """
        state = self.states[node_id]
        state.error = error
        state.attempts = attempts if attempts is not None else state.attempts
        state.ended_at = now
        if mode == "pause":
            self._set(state, NodeStatus.NEEDS_ATTENTION)
            self._active.discard(node_id)
            self._attention.add(node_id)
            self._record(now, node_id, state.status, error)
            return
        self._set(state, NodeStatus.FAILED)
        state.output = output
        state.lets_dependents_run = mode in ("continue", "handled")
        # A failure that fails the run tells its dependents nothing: they never ran because the
        # run ended, so they are cancelled with the rest, not reported as skipped.
        self._ended(
            node_id,
            now,
            satisfied=state.lets_dependents_run,
            detail=error,
            propagate=mode != "fail",
        )

    def node_cancelled(self, node_id: str, now: str) -> None:
        """A node was stopped because the run ended."""
        state = self.states[node_id]
        self._set(state, NodeStatus.CANCELLED)
        state.ended_at = now
        self._active.discard(node_id)
        self._attention.discard(node_id)
        self._record(now, node_id, state.status)

    def skip_now(
        self, node_id: str, now: str, *, output: Any = None, reason: str | None = None
    ) -> None:
        """End a ready or running node as skipped (``when`` was false, or an operator said so).

        With an ``output`` the skip lets dependents run and see it; without, the skip
        propagates like any skip."""
        state = self.states[node_id]
        self._set(state, NodeStatus.SKIPPED)
        state.output = output
        state.ended_at = now
        state.lets_dependents_run = output is not None
        self._ended(node_id, now, satisfied=output is not None, detail=reason)

    # -- operator actions ----------------------------------------------------------------

    def note(self, now: str, status: str, detail: str | None = None) -> None:
        """Record something that happened to the run (not to a node) in its history."""
        self._record(now, None, status, detail)

    def pause(self, now: str) -> None:
        """Start nothing new until :meth:`resume`."""
        if not self.paused:
            self.paused = True
            self._record(now, None, "paused")

    def resume(self, now: str) -> None:
        """Release the nodes that became ready while paused."""
        if self.paused:
            self.paused = False
            self._record(now, None, "resumed")

    def skip_problem(self, node_id: str) -> str | None:
        """Why :meth:`skip` would be refused, or None."""
        state = self.states.get(node_id)
        if state is None:
            return f"unknown node {node_id!r}"
        if self._graph[node_id].handler:
            return f"{node_id!r} is a handler: it only runs when invoked"
        if state.status in (NodeStatus.PENDING, NodeStatus.READY, NodeStatus.NEEDS_ATTENTION):
            return None
        if state.status == NodeStatus.FAILED and not state.lets_dependents_run:
            return None
        return f"{node_id!r} is {state.status.value}: only a pending or failed node can be skipped"

    def skip(self, node_id: str, now: str, output: Any = None) -> None:
        """An operator skips a pending node (when it is reached) or a failed one (now)."""
        state = self.states[node_id]
        if state.status == NodeStatus.PENDING:
            self._forced[node_id] = output
            self._record(now, node_id, "skip requested")
            return
        if state.status == NodeStatus.READY:
            self._ready.remove(node_id)
        self._attention.discard(node_id)
        self.skip_now(node_id, now, output=output, reason="skipped by an operator")

    def retry_problem(self, node_id: str) -> str | None:
        """Why :meth:`retry` would be refused, or None."""
        state = self.states.get(node_id)
        if state is None:
            return f"unknown node {node_id!r}"
        if state.status == NodeStatus.NEEDS_ATTENTION:
            return None
        return (
            f"{node_id!r} is {state.status.value}: only a node that needs attention can be retried"
        )

    def retry(self, node_id: str, now: str) -> None:
        """Run a node that needs attention again; the graph resumes from it."""
        self._attention.discard(node_id)
        state = self.states[node_id]
        self._set(state, NodeStatus.READY)
        state.error = None
        state.ended_at = None
        self._ready.append(node_id)
        self._record(now, node_id, "retry requested")

    def give_up(self, node_id: str, now: str) -> None:
        """An operator declines to rescue a node that needs attention: it fails for good."""
        self._attention.discard(node_id)
        state = self.states[node_id]
        self._set(state, NodeStatus.FAILED)
        self._ended(node_id, now, satisfied=False, detail=state.error, propagate=False)

    def pending_nodes(self) -> list[str]:
        """Regular nodes that have not ended (for cancelling a failed run's remainder)."""
        return [n.id for n in self.nodes if not n.handler and self.states[n.id].status not in ENDED]

    # -- continue-as-new -----------------------------------------------------------------

    def snapshot(self, keep_history: int = 1000) -> dict[str, Any]:
        """Everything needed to go on in a new run (JSON); the newest ``keep_history``
        transitions are kept. Nodes may be running or waiting (waits carry over)."""
        history = self.history[-keep_history:]
        return {
            "states": [
                {**state.__dict__, "status": state.status.value} for state in self.states.values()
            ],
            "history": [t.__dict__ for t in history],
            "dropped_history": self.dropped_history + len(self.history) - len(history),
            "paused": self.paused,
            "ready": list(self._ready),
            "forced": dict(self._forced),
        }

    @classmethod
    def restore(cls, nodes: Sequence[GraphNode], snapshot: dict[str, Any]) -> Scheduler:
        """A scheduler in the state :meth:`snapshot` recorded; the join counters are rebuilt
        from the node states."""
        scheduler = cls(nodes)
        for raw in snapshot["states"]:
            state = scheduler.states.get(raw["id"])
            if state is not None:
                status = NodeStatus(raw["status"])
                scheduler._set(state, status)
                for key, value in raw.items():
                    if key != "status" and hasattr(state, key):
                        setattr(state, key, value)
                if status in ACTIVE:
                    scheduler._active.add(state.id)
        scheduler.history = [Transition(**t) for t in snapshot.get("history", [])]
        scheduler.dropped_history = int(snapshot.get("dropped_history") or 0)
        scheduler.paused = bool(snapshot.get("paused"))
        scheduler._forced = dict(snapshot.get("forced") or {})
        scheduler._ready = deque(snapshot.get("ready") or [])
        for node_id, counts in scheduler._counts.items():
            node = scheduler._graph[node_id]
            state = scheduler.states[node_id]
            for dep in dict.fromkeys(d for d in node.depends_on if d in scheduler._graph):
                dep_state = scheduler.states[dep]
                if dep_state.status in ENDED:
                    counts.pending -= 1
                    if dep_state.status == NodeStatus.COMPLETED or dep_state.lets_dependents_run:
                        counts.satisfied += 1
            counts.decided = state.status != NodeStatus.PENDING
            if state.status in ENDED:
                scheduler._open -= 1
            if state.status == NodeStatus.NEEDS_ATTENTION:
                scheduler._attention.add(node_id)
        return scheduler

    # -- internals -----------------------------------------------------------------------

    def _set(self, state: NodeState, status: NodeStatus) -> None:
        self._counter[state.status] -= 1
        self._counter[status] = self._counter.get(status, 0) + 1
        state.status = status

    def _record(
        self, now: str, node_id: str | None, status: str, detail: str | None = None
    ) -> None:
        self.history.append(Transition(now, node_id, str(status), detail))

    def _ended(
        self,
        node_id: str,
        now: str,
        *,
        satisfied: bool,
        detail: str | None = None,
        propagate: bool = True,
    ) -> None:
        self._active.discard(node_id)
        self._record(now, node_id, self.states[node_id].status, detail)
        if self._graph[node_id].handler:
            return
        self._open -= 1
        if not propagate:
            return
        work: deque[tuple[str, bool]] = deque([(node_id, satisfied)])
        while work:
            ended, ok = work.popleft()
            for dependent in self._dependents[ended]:
                counts = self._counts[dependent]
                counts.pending -= 1
                if ok:
                    counts.satisfied += 1
                if counts.decided:
                    continue
                if self._graph[dependent].join == "any" and ok:
                    self._decide(dependent, run=True, now=now)
                elif counts.pending == 0:
                    if counts.satisfied:
                        self._decide(dependent, run=True, now=now)
                    else:
                        self._decide(dependent, run=False, now=now)
                        work.append((dependent, False))

    def _decide(self, node_id: str, *, run: bool, now: str) -> None:
        counts = self._counts[node_id]
        counts.decided = True
        state = self.states[node_id]
        if not run:
            self._set(state, NodeStatus.SKIPPED)
            state.ended_at = now
            self._open -= 1
            self._record(now, node_id, state.status, "no dependency completed")
            return
        if node_id in self._forced:
            output = self._forced.pop(node_id)
            self.skip_now(node_id, now, output=output, reason="skipped by an operator")
            return
        self._set(state, NodeStatus.READY)
        self._ready.append(node_id)
