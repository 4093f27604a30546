"""Node type names that belong to the language itself.

The language defines the seed aliases of the built-in types (DSL.md section 2) and the types
that run inside the workflow without an activity. Activity implementations live in
``activities/``; this module only names them, so the workflow can resolve a definition started
from any Temporal client without importing a single activity.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from interpreter.model import Duration, StrList

BUILTIN_ALIASES: Final[dict[str, str]] = {
    "document_parser": "documents.parse",
    "parse_document": "documents.parse",
    "text_extraction": "documents.parse",
    "entity_extraction": "ai.extract",
    "ai_extraction": "ai.extract",
    "classification": "ai.classify",
    "summarization": "ai.summarize",
    "ai_processing": "ai.prompt",
    "llm": "ai.prompt",
    "storage": "storage.write",
    "database_connector": "database.insert",
    "api": "http.request",
    "http": "http.request",
    "notification": "notify.webhook",
    "code": "code.python",
    "python": "code.python",
}
"""Seed alias → canonical type name."""

WORKFLOW_TYPES: Final[frozenset[str]] = frozenset(
    {"set", "wait", "fail", "input", "wait_for_event", "approval", "workflow"}
)
"""Types the workflow runs itself (timers, signals, updates, child workflows): no activity."""

SCOPED_TYPES: Final[frozenset[str]] = frozenset({"code.python"})
"""Activity types that receive the whole expression scope (they run user code)."""

RAW_CONFIG_KEYS: Final[dict[str, frozenset[str]]] = {
    "code.python": frozenset({"code"}),
    "wait_for_event": frozenset({"filters"}),
    "workflow": frozenset({"definition"}),
    "notify.lifecycle": frozenset({"event"}),
}
"""Config keys taken literally, never as ``${{ }}`` templates: user code reads ``inputs`` and
``nodes`` itself (templating values into code would be an injection hole), and a child
definition's expressions belong to the child run; a run's lifecycle event holds text from the
run (errors) that must never be read as a secret reference."""


def canonical_type(name: str) -> str:
    """The canonical name of a built-in alias; any other name is returned unchanged."""
    return BUILTIN_ALIASES.get(name, name)


# --- config of the types the workflow runs itself ------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetConfig(RootModel[dict[str, object]]):
    """``set``: var name → value or expression."""


class WaitConfig(_Config):
    """``wait``: a durable timer, for a duration or until a time."""

    duration: Duration | None = None
    until: str | None = None
    """An ISO 8601 time (or an expression giving one)."""

    @model_validator(mode="after")
    def _one(self) -> WaitConfig:
        if (self.duration is None) == (self.until is None):
            raise ValueError("wait needs exactly one of duration or until")
        return self


class FailConfig(_Config):
    """``fail``: end the run as failed with a message."""

    message: str = "failed by a fail node"


class InputConfig(_Config):
    """``input``: check that the run's inputs hold these fields (the seeds' input step)."""

    required_fields: StrList = Field(default_factory=list)


class WaitForEventConfig(_Config):
    """``wait_for_event``: wait for the ``event`` signal with this name (and correlation)."""

    event: str
    correlation: str | None = None
    filters: list[str] = Field(default_factory=list)
    """Conditions on the event (``${{ event.payload.amount > 100.0 }}``): an event that fails
    one is not this node's (it stays for another)."""
    timeout: Duration | None = None
    on_timeout: Literal["fail", "continue", "skip"] = "fail"
    """``fail`` (the node fails), ``continue`` (the node completes with a null output) or
    ``skip``."""


class ApprovalConfig(_Config):
    """``approval``: a person approves or rejects through the ``approve`` update."""

    message: str | None = None
    approvers: list[str] = Field(default_factory=list)
    timeout: Duration | None = None
    on_timeout: Literal["fail", "approve", "reject"] = "fail"
    """``fail``, ``approve`` or ``reject`` when nobody answered in time."""
    on_reject: Literal["fail", "continue"] = "fail"
    """``fail`` (the node fails) or ``continue`` (the node completes with approved=false)."""


class ChildWorkflowConfig(_Config):
    """``workflow``: run another definition as a child run and wait for its report."""

    definition: dict[str, object] | None = None
    """The child definition, inlined by the loader from ``file``."""
    file: str | None = None
    inputs: dict[str, object] = Field(default_factory=dict)
    task_queue: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ChildWorkflowConfig:
        if self.definition is None and self.file is None:
            raise ValueError("workflow needs file (a definition file) or definition")
        return self


WORKFLOW_TYPE_CONFIGS: dict[str, type[BaseModel]] = {
    "set": SetConfig,
    "wait": WaitConfig,
    "fail": FailConfig,
    "input": InputConfig,
    "wait_for_event": WaitForEventConfig,
    "approval": ApprovalConfig,
    "workflow": ChildWorkflowConfig,
}
