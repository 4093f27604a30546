"""``POST /events/{name}``: deliver an event to waiting runs and start the definitions that
listen to it."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from starter.api.errors import ERROR_RESPONSES, ApiError
from starter.api.idempotency import IDEMPOTENCY_HEADER, IdempotencyKeyParam
from starter.api.models import EventOut, EventRequest, RefusedOut
from starter.api.runtime import RuntimeParam
from starter.api.starting import pending_out, run_started

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)


@router.post(
    "/events/{name}",
    response_model=EventOut,
    responses={
        202: {
            "model": EventOut,
            "description": "accepted and kept: what Temporal has not taken yet is in `pending`",
        }
    },
)
async def emit(
    name: str,
    body: EventRequest,
    runtime: RuntimeParam,
    idempotency_key: IdempotencyKeyParam = None,
) -> EventOut | Response:
    """Deliver an event to the open runs, then start a run of every definition with an
    ``event`` trigger of that name (``inputs.event`` = the payload). An ``Idempotency-Key``
    header is the event's ``key``: the same key never starts a definition's run twice (nor
    signals the waiting runs twice). The event and its starts go through the outbox: while
    Temporal is unreachable the answer is 202 and they are delivered, in order, once it is
    back."""
    if idempotency_key is not None and body.key is not None and idempotency_key != body.key:
        raise ApiError(409, f"the event's key {body.key!r} differs from its {IDEMPOTENCY_HEADER}")
    key = body.key if body.key is not None else idempotency_key
    # The event is delivered first, so the runs it starts do not also receive it as a signal.
    accepted = await runtime.outbox.event(
        runtime.catalog,
        name,
        body.payload,
        source="event",
        correlation=body.correlation,
        key=key,
        task_queue=runtime.settings.task_queue,
    )
    event = accepted.event.entry
    out = EventOut(
        # The same event again (its key) was delivered once, by the first request.
        delivered=(event.result or {}).get("delivered", []) if accepted.event.new else [],
        started=[],
        refused=[
            RefusedOut(definition=r.definition, problems=r.problems) for r in accepted.refused
        ],
    )
    if not accepted.event.delivered:
        out.pending.append(pending_out(event))
    for start in accepted.starts:
        entry = start.entry
        if not start.delivered:
            out.pending.append(pending_out(entry))
        elif start.started_before:
            assert entry.workflow_id is not None
            out.already_started.append(entry.workflow_id)
        else:
            assert entry.workflow_id is not None and entry.definition is not None
            out.started.append(run_started(entry.workflow_id, entry.run_id, entry.definition))
    if out.pending:
        return JSONResponse(out.model_dump(mode="json"), status_code=202)
    return out
