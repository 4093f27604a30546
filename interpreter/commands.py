"""What the run's core asks the shell to do: one typed command per Temporal action.

:class:`interpreter.core.RunCore` returns these from every event it is fed; the shell executes
them in order. Each names the unit of work it concerns by its ``label`` (see
:mod:`interpreter.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interpreter.control import RunInput
from interpreter.node_io import NodeInput
from interpreter.report import RunReport


@dataclass(frozen=True)
class StartActivity:
    """Schedule the activity of a node (or of one foreach item, or of a handler). ``node`` is
    the plan node whose settings (type, timeouts, retry, task queue) apply; None for the run's
    own lifecycle notifications, which run ``activity_type`` with default settings."""

    label: str
    node: str | None
    activity_id: str
    input: NodeInput
    activity_type: str = ""
    local: bool = False
    """Run it as a Temporal local activity."""


@dataclass(frozen=True)
class StartChild:
    """Start a child workflow: a ``workflow`` node's run, or a batch of foreach items."""

    label: str
    node: str
    workflow_id: str
    input: RunInput
    task_queue: str | None
    summary: str


@dataclass(frozen=True)
class StartTimer:
    """Start a durable timer; the shell answers with ``TimerFired(label)``."""

    label: str
    seconds: float


@dataclass(frozen=True)
class CancelWork:
    """Cancel whatever runs under ``label`` (an activity, a child workflow or a timer). An
    activity or child answers with ``WorkCancelled`` (or its result, if it ended first); a
    cancelled timer answers nothing."""

    label: str


@dataclass(frozen=True)
class UpsertStatus:
    """Set the ``TideflowStatus`` search attribute."""

    status: str


@dataclass(frozen=True)
class CompleteRun:
    """End the run as completed with this report."""

    report: RunReport


@dataclass(frozen=True)
class FailRun:
    """End the run as failed (the workflow fails, carrying the report)."""

    message: str
    report: RunReport


@dataclass(frozen=True)
class CancelRun:
    """End the run as cancelled (the workflow ends cancelled)."""

    report: RunReport


@dataclass(frozen=True)
class ContinueAsNew:
    """Go on in a new run of the same workflow id, from this snapshot."""

    snapshot: dict[str, Any]


@dataclass(frozen=True)
class Observe:
    """Tell the worker's observers (extension hooks) what happened: ``run_started``,
    ``node_started``, ``node_ended``, ``run_ended``. Not a Temporal command: the shell hands it
    to the worker outside the workflow's history, and only when not replaying."""

    event: str
    data: dict[str, Any]


RunCommand = (
    StartActivity
    | StartChild
    | StartTimer
    | CancelWork
    | UpsertStatus
    | CompleteRun
    | FailRun
    | CancelRun
    | ContinueAsNew
    | Observe
)
"""Every command the core gives."""
