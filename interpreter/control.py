"""The inputs of the workflow and of its signals and updates: one pydantic object each, plain
JSON on the wire so any Temporal client can send them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RunInput(BaseModel):
    """The input of ``TideflowWorkflow``: the definition as JSON, and the run's inputs.

    The definition travels with the run, so a run keeps the definition it started with even if
    the file changes later.
    """

    definition: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    history_limit: int | None = None
    """Continue as new once the run's history holds this many events (default: when Temporal
    suggests it). The run goes on under the same workflow id with a fresh history."""
    resume: dict[str, Any] | None = None
    """Set by the run itself when it continues as new: where the previous run stopped."""


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
