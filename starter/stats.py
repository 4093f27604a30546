"""``tideflow stats`` and ``GET /stats``: what runs and nodes did over a period, per definition
and per node type.

Whole runs come from Temporal's visibility (started, completed, failed, cancelled, still
running; durations of ended runs); nodes from the engine's metrics store, where workers record
every activity attempt (:mod:`starter.node_metrics`): outcomes, errors by type, retries,
durations, AI tokens and cost, worker CPU seconds and peak memory. Child runs (foreach batches,
``workflow`` nodes) count as part of their top-level run, not as runs of their own. Nodes that
run inside the workflow (``set``, ``wait``, ``approval``…) have no activity and no attempts.

Success rate is completed / (completed + failed) for runs, and the same for node attempts;
cancelled runs and attempts count in neither. Percentiles are nearest-rank.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus

from interpreter.workflow import DEFINITION_KEY
from starter.client.listing import visibility_query

MAX_RUNS = 10_000
"""Runs read from visibility for one report, at most (``runs_truncated`` says when more)."""

_FAILED = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT,
}


class RunCounts(BaseModel):
    """Runs of a definition started in the period, by how they stand now."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    """Failed, terminated or timed out."""
    cancelled: int = 0
    running: int = 0


class NodeFigures(BaseModel):
    """What the node attempts of a definition or a node type did."""

    attempts: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    cached: int = 0
    retries: int = 0
    """Attempts after a node's first (Temporal retried it)."""
    success_rate: float | None = None
    errors: dict[str, int] = Field(default_factory=dict)
    """Failed attempts by error type (``RetryableNodeError``, ``NodeConfigError``…), most first."""
    duration_p50: float | None = None
    duration_p95: float | None = None
    ai_tokens: int = 0
    cost_usd: float = 0.0
    cpu_seconds: float = 0.0
    """Worker CPU seconds, summed."""
    peak_rss_mb: float | None = None
    """The worker's highest resident memory while one of these attempts ran, in MiB."""


class DefinitionStats(BaseModel):
    """One definition: its runs and its nodes' attempts."""

    definition: str
    runs: RunCounts = Field(default_factory=RunCounts)
    success_rate: float | None = None
    duration_p50: float | None = None
    """Seconds, of the runs that ended."""
    duration_p95: float | None = None
    nodes: NodeFigures = Field(default_factory=NodeFigures)


class NodeTypeStats(NodeFigures):
    """One node type, across definitions (or within ``definition`` when one is asked for)."""

    node_type: str


class Stats(BaseModel):
    """The report of ``tideflow stats`` and ``GET /stats``."""

    since: datetime
    until: datetime
    definition: str | None = None
    definitions: list[DefinitionStats] = Field(default_factory=list)
    node_types: list[NodeTypeStats] = Field(default_factory=list)
    runs_truncated: bool = False
    """True when more than ``MAX_RUNS`` runs started in the period: only those were read."""


async def compute_stats(
    temporal: Client,
    store_url: str | None,
    *,
    since: timedelta,
    definition: str | None = None,
    now: datetime | None = None,
) -> Stats:
    """The statistics of runs started in the last ``since`` (of one definition slug)."""
    import asyncio

    from starter.node_metrics import metrics_store, read_attempts

    until = now or datetime.now(UTC)
    start = until - since
    runs, truncated = await _runs(temporal, start, definition)
    engine = metrics_store(store_url)
    attempts = await asyncio.to_thread(read_attempts, engine, start, definition)
    return summarize(runs, attempts, start, until, definition, truncated)


async def _runs(
    temporal: Client, start: datetime, definition: str | None
) -> tuple[list[dict[str, Any]], bool]:
    moment = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    query = f'{visibility_query(definition)} AND StartTime >= "{moment}"'
    found: list[dict[str, Any]] = []
    async for execution in temporal.list_workflows(query, limit=MAX_RUNS + 1):
        if execution.parent_id or execution.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
            continue  # a batch or child run, or a run that went on under the same id
        found.append(
            {
                "definition": execution.typed_search_attributes.get(DEFINITION_KEY) or "",
                "status": execution.status,
                "start": execution.start_time,
                "close": execution.close_time,
            }
        )
    return found[:MAX_RUNS], len(found) > MAX_RUNS


def summarize(
    runs: Sequence[dict[str, Any]],
    attempts: Sequence[dict[str, Any]],
    since: datetime,
    until: datetime,
    definition: str | None = None,
    truncated: bool = False,
) -> Stats:
    """Statistics from runs (``definition``, ``status``, ``start``, ``close``) and attempt rows
    (:data:`starter.node_metrics.node_attempts`)."""
    by_definition: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_definition.setdefault(run["definition"], []).append(run)
    rows_by_definition: dict[str, list[dict[str, Any]]] = {}
    rows_by_type: dict[str, list[dict[str, Any]]] = {}
    for row in attempts:
        rows_by_definition.setdefault(row["definition"], []).append(row)
        rows_by_type.setdefault(row["node_type"], []).append(row)
    definitions = []
    for name in sorted(set(by_definition) | set(rows_by_definition)):
        if not name and name not in by_definition:
            continue  # attempts whose run could not be named: only in the node types
        definitions.append(_definition(name, by_definition.get(name, []), rows_by_definition))
    node_types = [
        NodeTypeStats(node_type=name, **_figures(rows).model_dump())
        for name, rows in sorted(rows_by_type.items())
    ]
    return Stats(
        since=since,
        until=until,
        definition=definition,
        definitions=definitions,
        node_types=node_types,
        runs_truncated=truncated,
    )


def _definition(
    name: str, runs: list[dict[str, Any]], rows: dict[str, list[dict[str, Any]]]
) -> DefinitionStats:
    counts = RunCounts(started=len(runs))
    durations = []
    for run in runs:
        status = run["status"]
        if status == WorkflowExecutionStatus.RUNNING:
            counts.running += 1
            continue
        if status == WorkflowExecutionStatus.COMPLETED:
            counts.completed += 1
        elif status in _FAILED:
            counts.failed += 1
        elif status == WorkflowExecutionStatus.CANCELED:
            counts.cancelled += 1
        if run["start"] and run["close"]:
            durations.append((run["close"] - run["start"]).total_seconds())
    ended = counts.completed + counts.failed
    return DefinitionStats(
        definition=name,
        runs=counts,
        success_rate=round(counts.completed / ended, 4) if ended else None,
        duration_p50=percentile(durations, 50),
        duration_p95=percentile(durations, 95),
        nodes=_figures(rows.get(name, [])),
    )


def _figures(rows: Iterable[dict[str, Any]]) -> NodeFigures:
    figures = NodeFigures()
    errors: Counter[str] = Counter()
    durations = []
    peak = 0
    for row in rows:
        figures.attempts += 1
        outcome = row["outcome"]
        if outcome == "completed":
            figures.completed += 1
        elif outcome == "failed":
            figures.failed += 1
            errors[row["error_type"] or "unknown"] += 1
        elif outcome == "cancelled":
            figures.cancelled += 1
        elif outcome == "cached":
            figures.cached += 1
        if int(row["attempt"] or 1) > 1:
            figures.retries += 1
        if outcome != "cached":
            durations.append(float(row["duration_seconds"]))
        figures.ai_tokens += int(row["prompt_tokens"] or 0) + int(row["completion_tokens"] or 0)
        figures.cost_usd += float(row["cost_usd"] or 0.0)
        figures.cpu_seconds += float(row["cpu_seconds"] or 0.0)
        peak = max(peak, int(row["peak_rss_bytes"] or 0))
    ended = figures.completed + figures.failed
    figures.success_rate = round(figures.completed / ended, 4) if ended else None
    figures.errors = dict(errors.most_common())
    figures.duration_p50 = percentile(durations, 50)
    figures.duration_p95 = percentile(durations, 95)
    figures.cost_usd = round(figures.cost_usd, 6)
    figures.cpu_seconds = round(figures.cpu_seconds, 3)
    figures.peak_rss_mb = round(peak / 2**20, 1) if peak else None
    return figures


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)
