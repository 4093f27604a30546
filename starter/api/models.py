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


class HealthOut(BaseModel):
    """Whether the API, Temporal and the definitions are fine."""

    status: str
    temporal: str
    definitions: int
    invalid_definitions: int
