"""``POST /events/{name}``: deliver an event to waiting runs and start the definitions that
listen to it."""

from __future__ import annotations

from fastapi import APIRouter

from starter.api.errors import ERROR_RESPONSES, ApiError
from starter.api.idempotency import IDEMPOTENCY_HEADER, IdempotencyKeyParam
from starter.api.models import EventOut, EventRequest, RefusedOut
from starter.api.runtime import ClientParam, RuntimeParam
from starter.api.starting import run_started
from starter.triggers import start_runs_for_event

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)


@router.post("/events/{name}", response_model=EventOut)
async def emit(
    name: str,
    body: EventRequest,
    runtime: RuntimeParam,
    client: ClientParam,
    idempotency_key: IdempotencyKeyParam = None,
) -> EventOut:
    """Deliver an event to the open runs, then start a run of every definition with an
    ``event`` trigger of that name (``inputs.event`` = the payload). An ``Idempotency-Key``
    header is the event's ``key``: the same key never starts a definition's run twice."""
    if idempotency_key is not None and body.key is not None and idempotency_key != body.key:
        raise ApiError(409, f"the event's key {body.key!r} differs from its {IDEMPOTENCY_HEADER}")
    key = body.key if body.key is not None else idempotency_key
    # Delivered first, so the runs the event starts do not also receive it as a signal.
    delivered = await client.emit_event(name, body.payload, correlation=body.correlation)
    starts = await start_runs_for_event(
        client,
        runtime.catalog,
        name,
        body.payload,
        task_queue=runtime.settings.task_queue,
        key=key,
    )
    return EventOut(
        delivered=delivered,
        started=[
            run_started(r.workflow_id, r.run_id, r.definition) for r in starts.started if r.new
        ],
        already_started=[r.workflow_id for r in starts.started if not r.new],
        refused=[RefusedOut(definition=r.definition, problems=r.problems) for r in starts.refused],
    )
