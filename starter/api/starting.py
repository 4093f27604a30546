"""Starting a run from a route: the one place every start endpoint goes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Response
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from interpreter import Definition
from starter.api.errors import ApiError
from starter.api.idempotency import IDEMPOTENCY_HEADER, MEMO_KEY, Idempotency
from starter.api.models import RunStarted
from starter.api.runtime import Runtime
from starter.client import TideflowClient, web_ui_url


def run_started(
    workflow_id: str, run_id: str | None, slug: str, document: str | None = None
) -> RunStarted:
    """The answer naming a started run, with its Web UI link."""
    return RunStarted(
        workflow_id=workflow_id,
        run_id=run_id,
        definition=slug,
        web_ui=web_ui_url(workflow_id, run_id),
        document=document,
    )


EARLIER_RUN: dict[int | str, dict[str, Any]] = {
    200: {"model": RunStarted, "description": "the run this Idempotency-Key started before"}
}
"""The extra answer of a start endpoint, for its OpenAPI document."""


@dataclass(frozen=True)
class Start:
    """A run a request started, or the run its idempotency key had started before."""

    run: RunStarted
    new: bool = True

    def answer(self, response: Response) -> RunStarted:
        """The route's answer: 201 for a new run, 200 for the earlier one."""
        if not self.new:
            response.status_code = 200
        return self.run


async def start_run(
    runtime: Runtime,
    client: TideflowClient,
    definition: Definition,
    inputs: dict[str, Any],
    workflow_id: str | None,
    document: str | None = None,
    idempotency: Idempotency | None = None,
) -> Start:
    """Start a run on the API's task queue (inputs are checked first); with ``idempotency``,
    at most once per key (see :mod:`starter.api.idempotency`)."""
    if idempotency is None:
        run = await client.start(
            definition,
            inputs,
            workflow_id=workflow_id,
            task_queue=runtime.settings.task_queue,
        )
        return Start(run_started(run.id, run.run_id, definition.slug, document))
    workflow_id = workflow_id or idempotency.workflow_id()
    try:
        run = await client.start(
            definition,
            inputs,
            workflow_id=workflow_id,
            task_queue=runtime.settings.task_queue,
            # Refused while Temporal keeps the first run, closed or not: the retention window.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=idempotency.memo(definition.slug, document),
        )
    except WorkflowAlreadyStartedError as e:
        return await _earlier_start(client, workflow_id, e.run_id, idempotency)
    return Start(run_started(run.id, run.run_id, definition.slug, document))


async def _earlier_start(
    client: TideflowClient, workflow_id: str, run_id: str | None, idempotency: Idempotency
) -> Start:
    described = await client.get_run(workflow_id, run_id).describe()
    memo = await described.memo()
    same_key, same_request = idempotency.matches(memo)
    if not same_key:
        raise ApiError(409, f"a run with id {workflow_id!r} exists")
    if not same_request:
        raise ApiError(
            409,
            f"{IDEMPOTENCY_HEADER} {idempotency.key!r} was used for a different request "
            f"(run {workflow_id!r})",
        )
    record = dict(memo[MEMO_KEY])
    run = run_started(
        workflow_id, described.run_id, str(record.get("definition")), record.get("document")
    )
    return Start(run, new=False)
