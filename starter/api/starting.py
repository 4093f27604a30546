"""Starting a run from a route: the one place every start endpoint goes through.

Every start is accepted into the outbox first (:mod:`starter.outbox`), then handed to
Temporal: 201 with the run once Temporal took it, 200 with the run an earlier request of the
same ``Idempotency-Key`` started, 202 with the pending start (its id and status URL) while
Temporal is unreachable or the definition has no free run slot. A pending start is kept (a
crash of the API loses nothing) and delivered in order; retried with its key, it is the same
start, never a second run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from interpreter import Definition
from interpreter.inputs import resolve_inputs
from starter import audit, lineage
from starter.api.errors import ApiError
from starter.api.idempotency import IDEMPOTENCY_HEADER, Idempotency
from starter.api.models import PendingOut, RunStarted
from starter.api.runtime import Runtime
from starter.auth import Identity
from starter.client import new_workflow_id, web_ui_url
from starter.outbox import Entry, StartRecord


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


def pending_out(entry: Entry) -> PendingOut:
    """The answer naming an accepted start or event that waits in the outbox."""
    document = entry.request.get("document") if entry.kind == "start" else None
    return PendingOut(
        pending=entry.id,
        kind=entry.kind,
        status=entry.status,
        status_url=f"/outbox/{entry.id}",
        workflow_id=entry.workflow_id,
        definition=entry.definition,
        reason=entry.error,
        document=document,
    )


EARLIER_RUN: dict[int | str, dict[str, Any]] = {
    200: {"model": RunStarted, "description": "the run this Idempotency-Key started before"},
    202: {
        "model": PendingOut,
        "description": "accepted and kept: Temporal is unreachable or the definition's runs "
        "are at their limit; delivered in order once possible (see its status URL)",
    },
}
"""The extra answers of a start endpoint, for its OpenAPI document."""


@dataclass(frozen=True)
class Start:
    """What became of a start request: a run (new, or the earlier one of its key), or a start
    waiting in the outbox."""

    run: RunStarted | None = None
    pending: PendingOut | None = None
    new: bool = True
    document: str | None = None
    """The upload the start's run reads (an earlier request's, for a repeated key)."""

    def answer(self, response: Response) -> RunStarted | Response:
        """The route's answer: 201 for a new run, 200 for the earlier one, 202 pending."""
        if self.pending is not None:
            return JSONResponse(self.pending.model_dump(mode="json"), status_code=202)
        assert self.run is not None
        if not self.new:
            response.status_code = 200
        return self.run


async def start_run(
    runtime: Runtime,
    definition: Definition,
    inputs: dict[str, Any],
    workflow_id: str | None,
    document: str | None = None,
    idempotency: Idempotency | None = None,
    *,
    source: str = "api",
    priority: int | None = None,
    caller: Identity | None = None,
    origin: str = "api",
) -> Start:
    """Accept a start on the API's task queue (inputs are checked first) and wait a moment
    for Temporal to take it; with ``idempotency``, at most once per key (see
    :mod:`starter.api.idempotency`). Nothing here needs Temporal: the outbox delivers the
    start as ``caller`` (Temporal records their identity), and the audit trail and lineage
    record it now; ``origin`` is what the run's nodes see (``inline`` for a definition given
    in the request: its egress is refused private networks)."""
    if idempotency is not None:
        workflow_id = workflow_id or idempotency.workflow_id()
    workflow_id = workflow_id or new_workflow_id(definition)
    user = caller.user if caller else None
    async with audit.audited(
        "start", workflow_id, user=user, via=origin, definition=definition.slug
    ):
        resolve_inputs(definition, inputs)  # nothing recorded of a start refused at once
        if idempotency is None or not await runtime.outbox.started_before(workflow_id):
            # Before the start is accepted, so that the run's first node finds it; a start
            # repeated with its Idempotency-Key is the same start, recorded once.
            await lineage.record_start_async(
                workflow_id=workflow_id,
                run_id=None,
                definition=definition,
                inputs=inputs,
                documents=[document] if document else [],
                origin=origin,
            )
        accepted = await runtime.outbox.start(
            definition,
            inputs,
            source=source,
            task_queue=runtime.settings.task_queue,
            workflow_id=workflow_id,
            memo=idempotency.memo(definition.slug, document) if idempotency else None,
            priority=priority,
            idempotent=idempotency is not None,
            fingerprint=idempotency.request if idempotency else None,
            document=document,
            user=user,
            roles=caller.approver_names if caller else None,
            origin=origin,
        )
        entry = accepted.entry
        repeated = not accepted.new and idempotency is not None
        if repeated and idempotency and entry.fingerprint != idempotency.request:
            raise _key_conflict(idempotency, entry)
        return _outcome(entry, new=accepted.new, idempotency=idempotency)


def _outcome(entry: Entry, *, new: bool, idempotency: Idempotency | None) -> Start:
    record = StartRecord.model_validate(entry.request)
    if entry.status == "failed":
        status = int((entry.result or {}).get("status", 409))
        message = entry.error or "refused"
        if idempotency is not None and message.startswith(IDEMPOTENCY_HEADER):
            raise _key_conflict(idempotency, entry)
        raise ApiError(status, message)
    if entry.status != "delivered":
        return Start(pending=pending_out(entry), new=new, document=record.document)
    assert entry.workflow_id is not None
    run = run_started(entry.workflow_id, entry.run_id, record.slug, record.document)
    first = new and (entry.result or {}).get("new", True) is not False
    return Start(run=run, new=first, document=record.document)


def _key_conflict(idempotency: Idempotency, entry: Entry) -> ApiError:
    return ApiError(
        409,
        f"{IDEMPOTENCY_HEADER} {idempotency.key!r} was used for a different request "
        f"(run {entry.workflow_id!r})",
    )
