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
    """``approve``: answer an approval node."""

    node: str
    approved: bool = True
    comment: str | None = None
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
