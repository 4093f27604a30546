"""The contract between the workflow and the activities: one input object in, one result out.

The workflow builds a :class:`NodeInput` for every activity node (its config with every
expression already evaluated) and gets a :class:`NodeResult` back. Both are plain pydantic
models so any Temporal SDK can read them as JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class RunInfo(BaseModel):
    """Which run a node belongs to (read from the activity's own info on the worker)."""

    workflow_id: str
    run_id: str


class BudgetLeft(BaseModel):
    """What an AI node may still spend before the run needs an operator (``budget:``)."""

    tokens: int | None = None
    cost_usd: float | None = None


class NodeInput(BaseModel):
    """The single input of every node activity. Kept small: it is stored in the history of
    every node; the node type is the activity's type and the run is in the activity's info."""

    node_id: str
    config: dict[str, Any] = Field(default_factory=dict)
    scope: dict[str, Any] | None = None
    """The expression scope (inputs, vars, nodes, item, index), for node types that run user
    code (``code.python``); None for the others, so payloads stay small."""
    cache_ttl_seconds: float | None = None
    """Reuse the output of an identical node config within this many seconds, across runs."""
    origin: str | None = None
    """Where the run came from (``api``, ``cli``, ``trigger``…): workers may trust runs of some
    origins more than others (private networks for definitions an operator ran)."""
    budget: BudgetLeft | None = None
    """For AI nodes of a run with a budget: what the node may still spend."""
    limits: dict[str, Any] | None = None
    """The node's ``resource_limits`` (the worker applies them within its own ceilings)."""

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Stored in the history of every node: unset fields stay out.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k == "config"}


class Usage(BaseModel):
    """Resources an AI node consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    provider: str | None = None
    model: str | None = None


class ReviewRequest(BaseModel):
    """An activity's answer that a person should confirm before the run goes on (a doubtful
    classification, an extraction that failed its checks). The node waits like an approval;
    the reviewer's answer (or ``proposed`` when approved as is) becomes its output."""

    message: str
    proposed: Any = None
    """The output the node would have, if the reviewer accepts it."""
    options: list[Any] | None = None
    """The answers a reviewer may choose from (labels), if the answer is one of a set."""
    field: str | None = None
    """The key of ``proposed`` the reviewer's answer replaces (``label``); None: the answer is
    the whole output."""
    details: dict[str, Any] = Field(default_factory=dict)
    """What the reviewer should see (the document's text, the model's confidence…)."""
    approvers: list[str] = Field(default_factory=list)


class NodeResult(BaseModel):
    """What a node activity returns."""

    output: Any = None
    attempt: int = 1
    usage: Usage | None = None
    cached: bool = False
    review: ReviewRequest | None = None
    references: bool = False
    """Whether the output holds references to stored values (:mod:`interpreter.values`)."""


BUDGET_EXCEEDED = "TideflowBudgetExceeded"
"""Failure type an AI node raises when its call would spend more than ``NodeInput.budget``."""
