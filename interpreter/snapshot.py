"""The run core's records of work in progress, and :class:`RunSnapshot`: the one typed,
versioned model a run hands to the next when it continues as new.

Format 2 (this code) holds the whole core: the graph's node states and history, vars, buffered
events, waits in progress (timers re-armed for the time left), foreach progress, handler
progress, pause state and status. Format 1 (the first engine) held the scheduler's states and a
few lists; :meth:`RunSnapshot.from_json` reads both.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interpreter.control import Event
from interpreter.report import RunStatusName

Purpose = Literal["node", "item", "batch", "fallback", "compensation", "on_failure", "notification"]
Kind = Literal["activity", "child", "timer", "event", "approval"]


@dataclass(slots=True)
class Work:
    """A unit of work in flight: an activity, a child workflow, or a wait inside the workflow
    (a timer, an event, an approval — each with an optional timeout timer)."""

    label: str
    node: str
    kind: Kind
    purpose: Purpose
    item: int | None = None
    """For a foreach item: its index."""
    span: tuple[int, int] | None = None
    """For a batch: the items [start, end) its child runs."""
    invoker: str | None = None
    """For a handler: the node whose failure (fallback) or success (compensation) it serves."""
    error: str | None = None
    """For a handler: the failure it answers (``error`` in its scope)."""
    deadline: str | None = None
    """When its timer fires (ISO time), if it has one."""
    waiting_since: str | None = None
    event: str | None = None
    correlation: str | None = None
    on_timeout: str = "fail"
    on_reject: str = "fail"
    approvers: list[str] = field(default_factory=list)
    message: str | None = None
    """What an approval asks."""
    review: dict[str, Any] | None = None
    """For a node's answer waiting for a person's review: the ``ReviewRequest``."""
    attempts: int = 0
    usage: dict[str, Any] | None = None
    """For a review: what the node's activity took, kept for the outcome."""
    cancelling: bool = False
    local: bool = False
    """An activity running as a local activity."""


@dataclass(slots=True)
class Foreach:
    """A foreach node's items while it runs (or waits for an operator to retry failed items)."""

    node: str
    items: list[Any]
    scope: dict[str, Any]
    """What the items' expressions read besides ``item`` and ``index`` (fixed at the start)."""
    concurrency: int
    """Units (items, or batches when batched) running at once."""
    results: list[Any]
    batch_size: int | None = None
    """Items per child workflow, or None to run items in this run."""
    fail_fast: bool = True
    pending: deque[tuple[int, int]] = field(default_factory=deque)
    """Ranges [start, end) of items not started yet (one item each unless batched)."""
    running: dict[str, tuple[int, int]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    attempts: int = 0
    usage: dict[str, Any] | None = None
    failure: str | None = None
    """The first item failure of a fail-fast foreach (its siblings are being cancelled)."""
    budget_stop: bool = False
    """An item stopped because the budget ran out: the node waits for an operator."""
    batches_started: int = 0
    child_concurrency: int = 1
    offset: int = 0
    """Index of ``items[0]`` in the whole list (a batch run by a child starts anywhere)."""
    stopped: bool = False
    """The run is ending: items not started never will, the node ends cancelled."""


@dataclass(slots=True)
class Step:
    """A handler call of the wind-down: a compensation or an on_failure handler."""

    handler: str
    purpose: Literal["compensation", "on_failure"]
    invoker: str | None = None


class RunSnapshot(BaseModel):
    """Everything a run needs to go on in a new run (continue-as-new)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[2] = 2
    scheduler: dict[str, Any]
    """The graph's state (``Scheduler.snapshot``)."""
    vars: dict[str, Any] = Field(default_factory=dict)
    events: list[Event] = Field(default_factory=list)
    work: list[Work] = Field(default_factory=list)
    foreach: list[Foreach] = Field(default_factory=list)
    paused_foreach: list[Foreach] = Field(default_factory=list)
    compensations: list[str] = Field(default_factory=list)
    reruns: dict[str, int] = Field(default_factory=dict)
    invocations: dict[str, int] = Field(default_factory=dict)
    fatal: tuple[str | None, str] | None = None
    cancel_requested: bool = False
    steps: list[Step] = Field(default_factory=list)
    steps_planned: bool = False
    status: RunStatusName = "running"
    status_upserted: bool = False
    started_at: str = ""
    batch_outputs: dict[str, Any] | None = None
    reused: list[str] = Field(default_factory=list)
    spent_tokens: int = 0
    spent_usd: float = 0.0
    added_tokens: int = 0
    added_usd: float = 0.0
    node_spent: dict[str, tuple[int, float]] = Field(default_factory=dict)
    attention: dict[str, str] = Field(default_factory=dict)
    notified: int = 0
    ref_nodes: list[str] = Field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSnapshot:
        """Read a snapshot of any format this code ever wrote."""
        if data.get("format") == 2:
            return cls.model_validate(data)
        # Format 1: written only after a drain, so nothing was in flight.
        return cls(
            scheduler=data["scheduler"],
            vars=data.get("vars") or {},
            events=[Event.model_validate(e) for e in data.get("events") or []],
            compensations=list(data.get("compensations") or []),
            reruns=dict(data.get("reruns") or {}),
            status=data.get("status") or "running",
            status_upserted=bool(data.get("status_upserted")),
            started_at=data.get("started_at") or "",
        )
