"""Starting a run for a trigger: at most once under a derived workflow id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from interpreter import Definition
from starter.client import TideflowClient


@dataclass(frozen=True)
class StartedRun:
    """A run a trigger started, or found already started (``new`` False)."""

    definition: str
    workflow_id: str
    run_id: str | None
    new: bool = True
    source: str = ""
    """What started it: a file's path or URI, ``event:<name>``."""


async def _start_once(
    client: TideflowClient,
    definition: Definition,
    inputs: dict[str, Any],
    *,
    workflow_id: str,
    task_queue: str,
    source: str,
    memo: dict[str, Any] | None = None,
) -> StartedRun:
    """Start a run under a derived workflow id, at most once: a second start of the same id is
    refused by Temporal (also once the first run has closed) and reported with ``new`` False.
    Raises InputError before anything starts."""
    try:
        run = await client.start(
            definition,
            inputs,
            workflow_id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=memo,
        )
    except WorkflowAlreadyStartedError:
        return StartedRun(definition.slug, workflow_id, None, new=False, source=source)
    return StartedRun(definition.slug, run.id, run.run_id, source=source)


class StartOnce(Protocol):
    """How triggers start a run under a derived workflow id, at most once (:func:`_start_once`
    by default; the API hands its outbox's, so watched files wait while Temporal is down)."""

    async def __call__(
        self,
        client: TideflowClient,
        definition: Definition,
        inputs: dict[str, Any],
        *,
        workflow_id: str,
        task_queue: str,
        source: str,
        memo: dict[str, Any] | None = None,
    ) -> StartedRun: ...


def _digest(*parts: str, length: int = 20) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]
