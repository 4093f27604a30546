"""The run report (DSL.md section 5): what ``tideflow run --json`` prints and a run returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DefinitionRef(BaseModel):
    """Which definition a run ran."""

    name: str
    version: str = ""


class NodeReport(BaseModel):
    """One node's outcome."""

    status: str
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


class RunReport(BaseModel):
    """The result of a run."""

    workflow_id: str
    run_id: str
    definition: DefinitionRef
    status: str
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    usage: RunUsage = Field(default_factory=RunUsage)
    nodes: dict[str, NodeReport] = Field(default_factory=dict)


class Transition(BaseModel):
    """One entry of the run's history of status changes."""

    at: str
    node: str | None = None
    status: str
    detail: str | None = None


class RunState(BaseModel):
    """The answer of the ``state`` query: a live view of a run."""

    status: str
    nodes: dict[str, str]
    attempts: dict[str, int] = Field(default_factory=dict)
    running: list[str] = Field(default_factory=list)
    needs_attention: list[str] = Field(default_factory=list)
    waiting: dict[str, str] = Field(default_factory=dict)
    """Node → what it waits for (``timer``, ``event:<name>``, ``approval``)."""
    vars: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False
    history: list[Transition] = Field(default_factory=list)
    error: str | None = None
