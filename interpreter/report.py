"""The run report (DSL.md section 5): what ``tideflow run --json`` prints and a run returns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

NodeStatusName = Literal[
    "pending",
    "ready",
    "running",
    "waiting",
    "needs_attention",
    "completed",
    "failed",
    "skipped",
    "cancelled",
]
"""Where a node is (``interpreter.scheduler.NodeStatus``)."""

RunStatusName = Literal[
    "running",
    "paused",
    "waiting",
    "needs_attention",
    "completed",
    "failed",
    "cancelled",
    "terminated",
    "timed_out",
]
"""Where a run is; ``terminated`` and ``timed_out`` only for runs Temporal ended from outside."""


class DefinitionRef(BaseModel):
    """Which definition a run ran."""

    name: str
    version: str = ""


class NodeReport(BaseModel):
    """One node's outcome."""

    status: NodeStatusName
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    output: Any = None
    error: str | None = None
    usage: dict[str, Any] | None = None


class RunUsage(BaseModel):
    """Resources the run's AI nodes consumed, summed."""

    ai_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class BudgetReport(BaseModel):
    """A run's spend against its budget."""

    tokens: int | None = None
    """The budget in tokens (with what operators added), if any."""
    cost_usd: float | None = None
    """The budget in US dollars (with what operators added), if any."""
    spent_tokens: int = 0
    spent_usd: float = 0.0


class RunReport(BaseModel):
    """The result of a run."""

    workflow_id: str
    run_id: str
    definition: DefinitionRef
    status: RunStatusName
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    usage: RunUsage = Field(default_factory=RunUsage)
    nodes: dict[str, NodeReport] = Field(default_factory=dict)
    reused: list[str] = Field(default_factory=list)
    """Nodes that kept the output of the run this one redrove, without running again."""
    budget: BudgetReport | None = None

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The report is the run's result, kept in its history: what is empty stays out.
        data: dict[str, Any] = handler(self)
        for key in ("reused", "budget"):
            if not data.get(key):
                data.pop(key, None)
        return data


class Transition(BaseModel):
    """One entry of the run's history of status changes."""

    at: str
    node: str | None = None
    status: str
    detail: str | None = None


class AwaitedEvent(BaseModel):
    """What a ``wait_for_event`` node waits for."""

    event: str
    correlation: str | None = None


class PendingApproval(BaseModel):
    """An approval or review waiting for a person."""

    kind: str = "approval"
    """``approval``, or ``review`` for a node's answer a person should confirm."""
    message: str | None = None
    approvers: list[str] = Field(default_factory=list)
    proposed: Any = None
    options: list[Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class RunState(BaseModel):
    """The answer of the ``state`` query: a live view of a run."""

    status: RunStatusName
    nodes: dict[str, NodeStatusName]
    attempts: dict[str, int] = Field(default_factory=dict)
    running: list[str] = Field(default_factory=list)
    needs_attention: list[str] = Field(default_factory=list)
    waiting: dict[str, str] = Field(default_factory=dict)
    """Node → what it waits for (``timer``, ``event:<name>``, ``approval``)."""
    vars: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False
    history: list[Transition] = Field(default_factory=list)
    error: str | None = None
    waiting_events: dict[str, AwaitedEvent] = Field(default_factory=dict)
    """Node → the event (and correlation) it waits for."""
    approvals: dict[str, PendingApproval] = Field(default_factory=dict)
    """Node → what a person is asked (approvals and reviews waiting for an answer)."""
    attention: dict[str, str] = Field(default_factory=dict)
    """Node that needs attention → why (``error``, or ``budget`` when the budget stopped it)."""
    budget: BudgetReport | None = None
