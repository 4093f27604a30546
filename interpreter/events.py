"""What the run's core is fed: one typed event per thing that happened.

The shell (:mod:`interpreter.workflow`) turns Temporal's results, timers, signals, updates and
cancellation into these and feeds them to :class:`interpreter.core.RunCore`, which answers with
commands (:mod:`interpreter.commands`). Work the core started is named by its ``label``: the
node id, ``node[3]`` for a foreach item, ``node#batch2`` for a batch of items run by a child
workflow, ``handler~2`` for a handler's second invocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interpreter.control import Approve, Event, RaiseBudget


@dataclass(frozen=True)
class WorkCompleted:
    """An activity or child workflow the core started succeeded."""

    label: str
    output: Any = None
    attempts: int = 1
    usage: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    """The activity asks a person to confirm its answer (``NodeResult.review``)."""
    references: bool = False
    """The output holds references to stored values (:mod:`interpreter.values`)."""


@dataclass(frozen=True)
class WorkFailed:
    """An activity or child workflow failed after its retries (or could not start)."""

    label: str
    message: str
    attempts: int = 0
    budget: bool = False
    """The node stopped because its call would exceed the run's or node's budget."""


@dataclass(frozen=True)
class WorkCancelled:
    """An activity or child workflow ended because the core cancelled it."""

    label: str


@dataclass(frozen=True)
class TimerFired:
    """The timer of a waiting unit of work fired (a ``wait`` ended, or a wait timed out)."""

    label: str


@dataclass(frozen=True)
class EventArrived:
    """The ``event`` signal."""

    event: Event


@dataclass(frozen=True)
class PauseRequested:
    """The ``pause`` signal."""


@dataclass(frozen=True)
class ResumeRequested:
    """The ``resume`` signal."""


@dataclass(frozen=True)
class SkipRequested:
    """The ``skip_node`` update (validated)."""

    node: str
    output: Any = None


@dataclass(frozen=True)
class RetryRequested:
    """The ``retry_node`` update (validated)."""

    node: str


@dataclass(frozen=True)
class FailRequested:
    """The ``fail_node`` update (validated)."""

    node: str
    reason: str | None = None
    by: str | None = None


@dataclass(frozen=True)
class VarsSet:
    """The ``set_vars`` update (validated)."""

    values: dict[str, Any]


@dataclass(frozen=True)
class ApprovalAnswered:
    """The ``approve`` update (validated)."""

    answer: Approve


@dataclass(frozen=True)
class BudgetRaised:
    """The ``raise_budget`` update (validated)."""

    raised: RaiseBudget


@dataclass(frozen=True)
class CancelRequested:
    """Somebody cancelled the workflow."""


@dataclass(frozen=True)
class HistoryLong:
    """The run's history grew past its limit: go on in a new run at the next boundary."""


RunEvent = (
    WorkCompleted
    | WorkFailed
    | WorkCancelled
    | TimerFired
    | EventArrived
    | PauseRequested
    | ResumeRequested
    | SkipRequested
    | RetryRequested
    | FailRequested
    | VarsSet
    | ApprovalAnswered
    | BudgetRaised
    | CancelRequested
    | HistoryLong
)
"""Every event the core takes."""
