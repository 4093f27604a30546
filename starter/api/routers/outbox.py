"""``/outbox``: the starts and events waiting for Temporal, and what became of one."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from starter.api.errors import ERROR_RESPONSES, ApiError
from starter.api.models import OutboxEntryOut
from starter.api.runtime import RuntimeParam

router = APIRouter(tags=["outbox"], responses=ERROR_RESPONSES)


@router.get("/outbox", response_model=list[OutboxEntryOut])
async def list_outbox(
    runtime: RuntimeParam,
    all: Annotated[bool, Query(description="also the latest delivered and failed ones")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxEntryOut]:
    """What waits in the outbox, oldest first."""
    entries = await asyncio.to_thread(runtime.outbox.outbox.entries, include_done=all, limit=limit)
    return [OutboxEntryOut(**entry.as_json()) for entry in entries]


@router.get("/outbox/{entry_id}", response_model=OutboxEntryOut)
async def outbox_entry(entry_id: str, runtime: RuntimeParam) -> OutboxEntryOut:
    """An accepted start or event: ``pending``, ``waiting`` (for a run slot), ``delivered``
    (with its run) or ``failed`` (why)."""
    entry = await asyncio.to_thread(runtime.outbox.outbox.get, entry_id)
    if entry is None:
        raise ApiError(404, f"no outbox entry {entry_id!r}")
    return OutboxEntryOut(**entry.as_json())
