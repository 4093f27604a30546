"""``/runs``: start runs (of a folder's definition or of one given in the request), list them,
follow their state and report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from interpreter.report import RunReport
from starter.api import starting
from starter.api.errors import ERROR_RESPONSES, field_error
from starter.api.idempotency import Idempotency, IdempotencyKeyParam
from starter.api.models import InlineRunRequest, RunStarted, RunStateOut, StartRequest
from starter.api.permissions import IdentityParam, check
from starter.api.runtime import ClientParam, RuntimeParam
from starter.api.starting import EARLIER_RUN
from starter.auth import Permission
from starter.client import RunSummary

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)


@router.post(
    "/definitions/{slug}/runs", status_code=201, response_model=RunStarted, responses=EARLIER_RUN
)
async def start_run(
    slug: str,
    body: StartRequest,
    runtime: RuntimeParam,
    identity: IdentityParam,
    response: Response,
    idempotency_key: IdempotencyKeyParam = None,
) -> RunStarted | Response:
    """Start a run of a definition of the folder (inputs are checked first). While Temporal
    is unreachable, or the definition's runs are at their ``concurrency.max_runs``, the start
    is kept in the outbox and answered 202."""
    definition = runtime.valid_definition(slug)
    request = {"start": "definition", "slug": slug, **body.model_dump(mode="json")}
    started = await starting.start_run(
        runtime,
        definition,
        body.inputs,
        body.workflow_id,
        idempotency=Idempotency.of(idempotency_key, request),
        priority=body.priority,
        caller=identity,
    )
    return started.answer(response)


@router.post("/runs", status_code=201, response_model=RunStarted, responses=EARLIER_RUN)
async def start_inline(
    body: InlineRunRequest,
    runtime: RuntimeParam,
    identity: IdentityParam,
    response: Response,
    idempotency_key: IdempotencyKeyParam = None,
) -> RunStarted | Response:
    """Start a run of a definition given in the request (YAML text or a JSON object). It is
    parsed in a worker process, bounded in time, memory and nodes (422 beyond)."""
    definition = await runtime.parser.parse(body.definition, "<request>")
    check(identity, Permission.START_INLINE, definition.slug)
    request = {"start": "inline", **body.model_dump(mode="json")}
    started = await starting.start_run(
        runtime,
        definition,
        body.inputs,
        body.workflow_id,
        idempotency=Idempotency.of(idempotency_key, request),
        priority=body.priority,
        caller=identity,
        # Code written by the caller: its egress is refused private networks (activities.http).
        origin="inline",
    )
    return started.answer(response)


RUN_STATUSES = (
    "running",
    "paused",
    "waiting",
    "needs_attention",
    "completed",
    "failed",
    "cancelled",
    "terminated",
    "timed_out",
    "continued",
)
"""The statuses ``GET /runs`` filters on (:func:`starter.client.visibility_query`)."""


@router.get("/runs", response_model=list[RunSummary])
async def list_runs(
    client: ClientParam,
    identity: IdentityParam,
    definition: Annotated[
        str | None,
        # A slug goes into a visibility query: nothing that could end its quoted string.
        Query(description="a definition slug", pattern=r"^[a-z0-9-]+$", max_length=200),
    ] = None,
    status: Annotated[
        str | None,
        # Checked below (422 naming the field); the document lists the statuses.
        Query(description="the runs' status", json_schema_extra={"enum": list(RUN_STATUSES)}),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunSummary]:
    """Recent runs, newest first (of the definitions the caller may read)."""
    if definition is not None:
        check(identity, Permission.READ, definition)
    try:
        runs = await client.list_runs(definition=definition, status=status, limit=limit)
    except ValueError as e:
        raise field_error("status", str(e)) from None
    return [run for run in runs if identity.covers(run.definition)]


@router.get("/runs/{workflow_id}", response_model=RunStateOut)
async def run_state(workflow_id: str, client: ClientParam) -> RunStateOut:
    """The live state of a run: status, node statuses, vars, history."""
    state = await client.get_run(workflow_id).state()
    return RunStateOut(workflow_id=workflow_id, **state.model_dump())


@router.get("/runs/{workflow_id}/report", response_model=RunReport)
async def run_report(
    workflow_id: str,
    client: ClientParam,
    wait: Annotated[bool, Query(description="wait until the run ends")] = False,
) -> RunReport:
    """The run report: final once the run has ended, so far while it runs (or, with
    ``wait=true``, once it ends)."""
    run = client.get_run(workflow_id)
    if wait or await run.ended() is not None:
        return await run.report()
    return await run.report_so_far()
