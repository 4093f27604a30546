"""Tideflow's own records, outside Temporal: one SQL database for all of them.

The definition registry, the audit trail, the start outbox, data lineage and run metrics each
keep a few tables here, through one SQLAlchemy engine per process — SQLite in
``TIDEFLOW_HOME/control.db`` by default, PostgreSQL (or any SQLAlchemy URL) with
``TIDEFLOW_STORE_URL`` — rather than each opening its own database. Each feature declares its
tables on :data:`metadata` in its own module and calls :func:`open_store`, which creates
missing tables once per engine.

This is the control plane's store; the ``default_database`` of ``database.*`` nodes is the
workflows' data and lives elsewhere (``<home>/tideflow.db``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event

metadata = MetaData()
"""Every control-plane table; features add theirs when their module is imported."""

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def store_url(url: str | None = None, *, home: Path | None = None) -> str:
    """The store's URL: ``url``, else ``TIDEFLOW_STORE_URL``, else SQLite in ``home`` (default
    ``TIDEFLOW_HOME``)."""
    if url:
        return url
    configured = os.environ.get("TIDEFLOW_STORE_URL")
    if configured:
        return configured
    home = home or Path(os.environ.get("TIDEFLOW_HOME", ".tideflow"))
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'control.db').resolve()}"


def open_store(url: str | None = None) -> Engine:
    """The process's engine for the store (created, with every declared table, on first use).

    Call it after importing the modules whose tables you use: tables declared later are
    created by the next call."""
    resolved = store_url(url)
    with _lock:
        engine = _engines.get(resolved)
        if engine is None:
            engine = _create(resolved)
            _engines[resolved] = engine
        metadata.create_all(engine)
    return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            # WAL lets readers (the API, `tideflow audit`) work while a writer appends.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def close_stores() -> None:
    """Dispose of every engine (tests that start and stop stores)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
