"""The inputs of the workflow and of its signals and updates: one pydantic object each, plain
JSON on the wire so any Temporal client can send them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class BatchInput(BaseModel):
    """A batch of a ``foreach`` node's items, run by a child workflow of the node's run."""

    node: str
    """The foreach node (the child's plan holds just this node)."""
    items: list[Any]
    start: int = 0
    """Index of the first item in the whole list (item labels and ``index`` count from here)."""
    scope: dict[str, Any] = Field(default_factory=dict)
    """What the node's expressions may read besides ``item`` and ``index``."""
    concurrency: int = 1
    fail_fast: bool = True
    """Stop at the first failing item (cancelling the others), or run every item and report
    each failure."""


class ReusedNode(BaseModel):
    """A node's outcome in the run a redrive reruns."""

    output: Any = None
    attempts: int = 1
    usage: dict[str, Any] | None = None


class RunInput(BaseModel):
    """The input of ``TideflowWorkflow``: the compiled plan and the run's inputs.

    The plan travels with the run, so a run keeps the definition it started with even if the
    file changes later. Format-1 inputs (from older clients) carry the source ``definition``
    instead of a plan; the workflow still reads them.
    """

    plan: dict[str, Any] | None = None
    """The compiled plan (``interpreter.plan.compile_plan``; ``format`` says which format)."""
    definition: dict[str, Any] | None = None
    """Format 1: the source definition, validated and compiled by the worker."""
    inputs: dict[str, Any] = Field(default_factory=dict)
    history_limit: int | None = None
    """Continue as new once the run's history holds this many events (default: when Temporal
    suggests it). The run goes on under the same workflow id with a fresh history."""
    resume: dict[str, Any] | None = None
    """Set by the run itself when it continues as new: where the previous run stopped."""
    batch: BatchInput | None = None
    """Set when this run is a batch of a parent's foreach items."""
    reuse: dict[str, ReusedNode] | None = None
    """Nodes that completed in an earlier run of the same plan (a redrive): they end with their
    recorded output when reached, without running again."""
    origin: str | None = None
    """Where the run came from (``api``, ``cli``, ``trigger``, ``schedule``…); nodes see it."""

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset optional fields stay out of the history: every byte of it is kept and billed.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if (v is not None and v != {}) or k == "inputs"}


class FailNode(BaseModel):
    """``fail_node``: give up on a node that needs attention (or is waiting or running): it
    fails for good and the run fails, compensating what it did."""

    node: str
    reason: str | None = None
    by: str | None = None


class SkipNode(BaseModel):
    """``skip_node``: skip a pending or failed node, optionally with the output to use."""

    node: str
    output: Any = None


class RetryNode(BaseModel):
    """``retry_node``: run a node that needs attention again."""

    node: str


class SetVars(BaseModel):
    """``set_vars``: change workflow vars (type-checked against their declared values)."""

    values: dict[str, Any]


class Approve(BaseModel):
    """``approve``: answer an approval node (or a node waiting for a person's review)."""

    node: str
    approved: bool = True
    comment: str | None = None
    by: str | None = None
    """Who answers (the API's token, the CLI's user); checked against the node's approvers."""
    roles: list[str] = Field(default_factory=list)
    """The roles of ``by``: an approver list may name roles as well as users."""
    output: Any = None
    """For a review: the reviewer's answer (a label…); empty means the proposed answer."""


class RaiseBudget(BaseModel):
    """``raise_budget``: let a run spend more (and go on where the budget stopped it)."""

    add_tokens: int = Field(default=0, ge=0)
    add_usd: float = Field(default=0.0, ge=0)
    by: str | None = None


class Event(BaseModel):
    """``event`` signal: deliver an event to ``wait_for_event`` nodes."""

    name: str
    payload: Any = None
    correlation: str | None = None


class ControlAnswer(BaseModel):
    """What an accepted update answers."""

    accepted: bool = True
    node: str | None = None
    status: str | None = None
    message: str | None = None
