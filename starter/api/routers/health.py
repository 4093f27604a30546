"""``GET /health``: whether the API, Temporal and the definitions are fine."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from starter.api.errors import ApiError
from starter.api.models import HealthOut
from starter.api.runtime import RuntimeParam

router = APIRouter(tags=["api"])


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Temporal is unreachable"}},
)
async def health(runtime: RuntimeParam) -> JSONResponse:
    """The API is up; ``temporal`` tells whether Temporal answers (503 when it does not)."""
    entries = runtime.catalog.entries()
    state = "ok"
    try:
        client = await runtime.client.get()
        await client.temporal.service_client.check_health(timeout=timedelta(seconds=5))
    except (ApiError, RPCError) as e:
        state = f"unreachable: {getattr(e, 'detail', None) or getattr(e, 'message', e)}"
    body = HealthOut(
        status="ok" if state == "ok" else "degraded",
        temporal=state,
        definitions=len(entries),
        invalid_definitions=sum(1 for e in entries if not e.valid),
    )
    return JSONResponse(body.model_dump(), status_code=200 if state == "ok" else 503)
