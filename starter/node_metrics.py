"""The engine's metrics store: one row per node attempt, written by workers.

Each activity attempt of a node (``activities._metrics``) leaves a row in the control plane's
SQL store (:mod:`starter.store`): which run, definition, node and node type, the attempt, how it
ended (``completed``, ``failed`` with the error's type, ``cancelled``), when and for how long,
the worker's CPU seconds and peak memory while it ran, and the AI tokens and cost it reported.
``tideflow stats`` and ``GET /stats`` read them (with Temporal's visibility for whole runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
)

from starter.store import metadata, open_store

node_attempts = Table(
    "tideflow_node_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(400), nullable=False),
    Column("run_id", String(100), nullable=False, default=""),
    Column("definition", String(200), nullable=False, default=""),
    Column("node", String(400), nullable=False),  # a foreach item's count under its node
    Column("node_type", String(200), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("outcome", String(20), nullable=False),
    Column("error_type", String(200), nullable=False, default=""),
    Column("started_at", DateTime(), nullable=False),  # naive UTC: SQLite has no zones
    Column("duration_seconds", Float, nullable=False),
    Column("cpu_seconds", Float, nullable=False, default=0.0),
    Column("peak_rss_bytes", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=True),
    Index("ix_tideflow_node_attempts_started", "started_at"),
    Index("ix_tideflow_node_attempts_definition", "definition", "started_at"),
)
"""One row per activity attempt of a node."""


def write_attempts(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows (one transaction)."""
    batch = [dict(row) for row in rows]
    if batch:
        with engine.begin() as connection:
            connection.execute(insert(node_attempts), batch)


def utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC without its zone, as the table keeps times."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def read_attempts(
    engine: Engine, since: datetime, definition: str | None = None
) -> list[dict[str, Any]]:
    """The rows of attempts started since ``since`` (of one definition slug)."""
    query = select(node_attempts).where(node_attempts.c.started_at >= utc_naive(since))
    if definition:
        query = query.where(node_attempts.c.definition == definition)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def forget_before(engine: Engine, before: datetime) -> int:
    """Delete the rows of attempts started before ``before``; how many were deleted."""
    with engine.begin() as connection:
        return connection.execute(
            delete(node_attempts).where(node_attempts.c.started_at < utc_naive(before))
        ).rowcount


def metrics_store(url: str | None = None) -> Engine:
    """The store's engine with the attempts table created."""
    return open_store(url)
