"""``GET /audit``: the audit trail (admin): who changed what, when, and how it went."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from starter import audit
from starter.api.errors import ERROR_RESPONSES, field_error

router = APIRouter(tags=["governance"], responses=ERROR_RESPONSES)

_SINCE_FORMS = (
    re.compile(r"\d{1,6}(\.\d{1,3})?[smhdw]"),
    re.compile(r"\d{4}-\d{2}-\d{2}"),
    re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"),
)
"""What ``since`` may be, as the OpenAPI document says: a duration, an RFC 3339 date or
date-time."""


class AuditEntryOut(BaseModel):
    """One recorded action."""

    id: int
    at: str
    user: str
    via: str | None
    action: str
    target: str | None
    definition: str | None
    outcome: str
    detail: str | None


@router.get("/audit", response_model=list[AuditEntryOut])
async def audit_trail(
    run: Annotated[str | None, Query(description="a run's workflow id", max_length=500)] = None,
    user: Annotated[str | None, Query(description="who acted", max_length=200)] = None,
    since: Annotated[
        str | None,
        Query(
            description="a duration back from now (30m, 2h, 7d) or an ISO date or date-time",
            json_schema_extra={
                "anyOf": [
                    {"type": "string", "pattern": r"^\d{1,6}(\.\d{1,3})?[smhdw]$"},
                    {"type": "string", "format": "date"},
                    {"type": "string", "format": "date-time"},
                ]
            },
        ),
    ] = None,
    action: Annotated[str | None, Query(description="start, pause, approve…")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[dict[str, Any]]:
    """The audit trail, oldest first (the newest ``limit`` entries): every start, control
    action, approval, redrive, deploy and token change, refused and denied ones included."""
    moment = None
    if since is not None:
        if not any(form.fullmatch(since) for form in _SINCE_FORMS):
            raise field_error("since", "give a duration (30m, 2h, 7d) or an ISO date or date-time")
        try:
            moment = audit.parse_since(since)
        except ValueError as e:
            raise field_error("since", str(e)) from None
    entries = await asyncio.to_thread(
        audit.entries, run=run, user=user, since=moment, action=action, limit=limit
    )
    return [entry.as_json() for entry in entries]
