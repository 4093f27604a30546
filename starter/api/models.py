"""The API's request and response bodies (the errors' shape is in :mod:`starter.api.errors`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from interpreter import report as report_module
from interpreter.control import ControlAnswer
from interpreter.report import RunState
from starter.api.errors import ProblemOut


class DefinitionSummary(BaseModel):
    """One definition file of the folder."""

    slug: str
    name: str | None = None
    version: str | None = None
    description: str | None = None
    file: str
    valid: bool
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    problems: list[ProblemOut] = Field(
        default_factory=list, description="why the file does not load (it cannot run)"
    )
    trigger_problems: list[ProblemOut] = Field(
        default_factory=list, description="triggers that stay inactive (the definition runs)"
    )


class DefinitionDetail(DefinitionSummary):
    """A definition with its JSON form and its graph."""

    definition: dict[str, Any] | None = None
    mermaid: str | None = Field(default=None, description="the graph as a Mermaid flowchart")


class StartRequest(BaseModel):
    """Start a run of a registered definition."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = Field(default=None, description="default <slug>-<random>")
    priority: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="task priority of the run and its nodes: 1 first, 5 last "
        "(default the definition's, else 3)",
    )


class InlineRunRequest(StartRequest):
    """Start a run of a definition given in the request."""

    definition: str | dict[str, Any] = Field(description="YAML text or a JSON object")


class RunStarted(BaseModel):
    """A started run."""

    workflow_id: str
    run_id: str | None
    definition: str
    web_ui: str
    document: str | None = Field(default=None, description="the saved upload's path")


class PendingOut(BaseModel):
    """A start (or event) accepted into the outbox and not handed to Temporal yet: Temporal
    is unreachable, or the definition's runs are at their ``concurrency.max_runs``. It is
    kept and delivered in order; its status URL tells when."""

    pending: str = Field(description="the outbox entry's id")
    kind: str = Field(description="start or event")
    status: str = Field(description="pending (Temporal unreachable) or waiting (for a run slot)")
    status_url: str
    workflow_id: str | None = Field(default=None, description="the id the run will have (a start)")
    definition: str | None = None
    reason: str | None = None
    document: str | None = Field(default=None, description="the saved upload's path")


class OutboxEntryOut(BaseModel):
    """An entry of the start outbox."""

    id: str
    kind: str
    source: str
    definition: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    status: str = Field(description="pending, waiting, delivered or failed")
    attempts: int
    error: str | None = None
    created_at: float
    delivered_at: float | None = None
    parent: str | None = Field(default=None, description="the event entry that made this start")
    result: dict[str, Any] | None = None


class RunStateOut(RunState):
    """The live state of a run (the ``state`` query)."""

    workflow_id: str


# RunState's fields name models defined after it in interpreter.report: resolve them there.
RunStateOut.model_rebuild(_types_namespace=vars(report_module))


class ControlDone(BaseModel):
    """A signal or cancellation the run received."""

    workflow_id: str
    action: str


class ControlOut(ControlAnswer):
    """What the run answered to an update."""

    workflow_id: str


class EventRequest(BaseModel):
    """An event: delivered to waiting runs, and starting runs of definitions that listen."""

    payload: Any = None
    correlation: str | None = Field(
        default=None, description="deliver only to wait_for_event nodes with this correlation"
    )
    key: str | None = Field(
        default=None,
        description="an event id: the same key never starts a definition's run twice",
    )


class RefusedOut(BaseModel):
    """A definition that listens to the event but refused to start."""

    definition: str
    problems: list[str]


class EventOut(BaseModel):
    """What an event did."""

    delivered: list[str] = Field(description="open runs the event was delivered to")
    started: list[RunStarted]
    already_started: list[str] = Field(
        default_factory=list, description="runs this event's key had started before"
    )
    refused: list[RefusedOut] = Field(default_factory=list)
    pending: list[PendingOut] = Field(
        default_factory=list,
        description="what waits in the outbox (answer 202): the event itself while Temporal "
        "is unreachable, starts waiting for Temporal or a run slot",
    )


class OutboxHealth(BaseModel):
    """The outbox's backlog against its bounds."""

    pending: int
    oldest_age_seconds: float | None
    max_pending: int
    max_age_seconds: float
    ok: bool
    alerting: bool = Field(description="past its bounds; the alert was sent")


class HealthOut(BaseModel):
    """Whether the API, Temporal, the definitions and the deployment are fine."""

    status: str
    temporal: str
    definitions: int
    invalid_definitions: int
    outbox: OutboxHealth | None = None
    checks: dict[str, str] = Field(
        default_factory=dict,
        description="`tideflow doctor`'s checks in short: ok, skip, or the problem",
    )
