"""``GET /health``: whether the API, Temporal, the definitions and the deployment are fine:
``tideflow doctor``'s checks in short, and the start outbox's backlog."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from starter.api.errors import ApiError
from starter.api.models import HealthOut, OutboxHealth
from starter.api.runtime import Runtime, RuntimeParam
from starter.doctor import Report, diagnose, subject_of

router = APIRouter(tags=["api"])

CHECKS_TTL = 15.0
"""Seconds the deployment checks are reused: a health probe every second must not open a
connection to every database each time."""


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Temporal or a check fails"}},
)
async def health(runtime: RuntimeParam) -> JSONResponse:
    """The API is up; ``temporal`` tells whether Temporal answers, ``outbox`` what waits for
    it, ``checks`` the doctor's checks in short (the clock probe aside). 503 when Temporal is
    unreachable or a check fails (starts are still accepted: they wait in the outbox)."""
    entries = runtime.catalog.entries()
    state = "ok"
    client = None
    try:
        client = await runtime.client.get()
        await client.temporal.service_client.check_health(timeout=timedelta(seconds=5))
    except (ApiError, RPCError) as e:
        client = None
        state = f"unreachable: {getattr(e, 'detail', None) or getattr(e, 'message', e)}"
    backlog = await runtime.alerts.check()
    report = await _checks(runtime, client)
    healthy = state == "ok" and report.ok
    body = HealthOut(
        status="ok" if healthy else "degraded",
        temporal=state,
        definitions=len(entries),
        invalid_definitions=sum(1 for e in entries if not e.valid),
        outbox=OutboxHealth(
            pending=backlog.backlog.pending,
            oldest_age_seconds=backlog.backlog.oldest_age,
            max_pending=backlog.max_pending,
            max_age_seconds=backlog.max_age,
            ok=backlog.ok,
            alerting=runtime.alerts.alerting,
        ),
        checks={check.name: check.short() for check in report.checks},
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


async def _checks(runtime: Runtime, client: object) -> Report:
    cached = runtime.checks
    if cached.report is not None and client and time.monotonic() - cached.made_at < CHECKS_TTL:
        report: Report = cached.report
        return report
    runtime.catalog.refresh()
    subject = subject_of(
        runtime.settings, runtime.catalog, client=client, outbox=runtime.outbox.outbox
    )
    report = await diagnose(subject, clock=False)
    cached.report, cached.made_at = report, time.monotonic()
    return report
