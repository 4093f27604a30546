"""The contract between the workflow and the activities: one input object in, one result out.

The workflow builds a :class:`NodeInput` for every activity node (its config with every
expression already evaluated) and gets a :class:`NodeResult` back. Both are plain pydantic
models so any Temporal SDK can read them as JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RunInfo(BaseModel):
    """Which run a node belongs to (read from the activity's own info on the worker)."""

    workflow_id: str
    run_id: str


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


class Usage(BaseModel):
    """Resources an AI node consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    provider: str | None = None
    model: str | None = None


class NodeResult(BaseModel):
    """What a node activity returns."""

    output: Any = None
    attempt: int = 1
    usage: Usage | None = None
    cached: bool = False
