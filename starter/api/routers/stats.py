"""``/stats``: runs per definition and node attempts per node type over a period (what
``tideflow stats`` prints)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from interpreter.model import parse_duration
from starter.api.errors import ERROR_RESPONSES, field_error
from starter.api.runtime import ClientParam, RuntimeParam
from starter.stats import Stats, compute_stats

_PERIOD = r"^([0-9]{1,9}(\.[0-9]{1,3})?(ms|s|m|h|d|w))+$"
_LONGEST_PERIOD = 366 * 86400.0
"""A longer ``since`` counts from 366 days back; a shorter one than 1 s from 1 s back."""

router = APIRouter(tags=["stats"], responses=ERROR_RESPONSES)


@router.get("/stats", response_model=Stats)
async def stats(
    runtime: RuntimeParam,
    client: ClientParam,
    definition: Annotated[
        str | None,
        # A slug goes into a visibility query: nothing that could end its quoted string.
        Query(description="a definition slug", pattern=r"^[a-z0-9-]+$", max_length=200),
    ] = None,
    since: Annotated[
        str,
        Query(
            description="how far back: 30m, 24h, 7d, 1h30m (at least 1 s, at most 366 days)",
            pattern=_PERIOD,
            max_length=40,
        ),
    ] = "24h",
) -> Stats:
    """Runs started in the period (from Temporal's visibility: started, completed, failed,
    cancelled, running, success rate, p50/p95 duration) and their nodes' attempts (from the
    engine's metrics store: outcomes, errors by type, retries, durations, AI tokens and cost,
    worker CPU and peak memory), per definition and per node type."""
    try:
        seconds = parse_duration(since)
    except ValueError as e:
        raise field_error("since", str(e)) from None
    return await compute_stats(
        client.temporal,
        runtime.settings.resolved_store_url,
        since=timedelta(seconds=min(max(seconds, 1.0), _LONGEST_PERIOD)),
        definition=definition,
    )
