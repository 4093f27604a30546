"""The outbox's table in the control-plane store, and the operations on its entries.

One row per accepted start or event, in the order they were accepted (``seq``). An entry is
``pending`` until it is handed to Temporal, ``waiting`` while its definition has no free run
slot (``concurrency.max_runs``), then ``delivered`` (with the run it started) or ``failed`` (a
request Temporal refused for good, with why). Entries that must not be started twice (a
request's idempotency key, an event's key, a watched file) carry a ``dedupe`` value: accepting
the same one again returns the first entry instead of a second.

Synchronous SQLAlchemy, safe to call from threads: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from activities.settings import WorkerSettings
from starter.store import metadata, open_store, store_url

Status = Literal["pending", "waiting", "delivered", "failed"]
Kind = Literal["start", "event"]

OPEN: tuple[Status, ...] = ("pending", "waiting")
"""Statuses of entries still to deliver."""

outbox_table = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("source", String(32), nullable=False),
    Column("definition", String(200)),
    Column("workflow_id", String(400)),
    Column("dedupe", String(400), unique=True),
    Column("fingerprint", String(64)),
    Column("parent", String(40)),
    Column("request", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("run_id", String(100)),
    Column("closed_at", Float),
    Column("result", Text),
    Index("outbox_status_seq", "status", "seq"),
    Index("outbox_definition_status", "definition", "status"),
)
"""The start outbox: what Tideflow accepted, and what became of it."""


@dataclass(frozen=True)
class Entry:
    """One accepted start or event."""

    seq: int
    id: str
    kind: Kind
    source: str
    """What accepted it: ``api``, ``upload``, ``event``, ``trigger``, ``cli``."""
    definition: str | None
    workflow_id: str | None
    """The run's workflow id, fixed when accepted (starts)."""
    dedupe: str | None
    fingerprint: str | None
    parent: str | None
    """The event entry that made this start."""
    request: dict[str, Any]
    status: Status
    attempts: int
    error: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None
    run_id: str | None
    closed_at: float | None
    result: dict[str, Any] | None

    @property
    def open(self) -> bool:
        """Whether it is still to be delivered."""
        return self.status in OPEN

    def age(self, now: float | None = None) -> float:
        """Seconds since it was accepted."""
        return (now or time.time()) - self.created_at

    def as_json(self) -> dict[str, Any]:
        """What ``tideflow outbox --json`` and ``GET /outbox/{id}`` show (not the request)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "definition": self.definition,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
            "parent": self.parent,
            "result": self.result,
        }


@dataclass(frozen=True)
class Backlog:
    """What waits in the outbox."""

    pending: int
    oldest_age: float | None
    """Seconds the oldest waiting entry has waited (None when nothing waits)."""


def new_entry_id() -> str:
    """``ob-`` and 16 hex digits."""
    return f"ob-{secrets.token_hex(8)}"


class Outbox:
    """The outbox of one store (``TIDEFLOW_STORE_URL``, else SQLite in the home)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        self.engine = engine or open_store(url)

    @classmethod
    def of(cls, settings: WorkerSettings) -> Outbox:
        """The outbox of a deployment: ``TIDEFLOW_STORE_URL``, else SQLite in its home."""
        return cls(store_url(home=settings.home))

    # -- accepting ------------------------------------------------------------------------------

    def accept(
        self,
        kind: Kind,
        request: dict[str, Any],
        *,
        source: str,
        definition: str | None = None,
        workflow_id: str | None = None,
        dedupe: str | None = None,
        fingerprint: str | None = None,
        parent: str | None = None,
        entry_id: str | None = None,
    ) -> tuple[Entry, bool]:
        """Write an entry (committed before this returns); ``(entry, True)``. With a ``dedupe``
        value already accepted, nothing is written: ``(that earlier entry, False)``."""
        row = NewEntry(
            kind, request, source, definition, workflow_id, dedupe, fingerprint, parent, entry_id
        )
        return self.accept_many([row])[0]

    def accept_many(self, rows: list[NewEntry]) -> list[tuple[Entry, bool]]:
        """Write several entries in one transaction, in order (an event and the starts it
        makes): each ``(entry, new)`` as :meth:`accept`."""
        for attempt in range(3):
            try:
                return self._accept_many(rows)
            except IntegrityError:
                # Another process accepted one of the keys meanwhile: the next attempt finds it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _accept_many(self, rows: list[NewEntry]) -> list[tuple[Entry, bool]]:
        now = time.time()
        out: list[tuple[Entry, bool]] = []
        with self.engine.begin() as connection:
            for row in rows:
                if row.dedupe is not None:
                    earlier = connection.execute(
                        select(outbox_table).where(outbox_table.c.dedupe == row.dedupe)
                    ).first()
                    if earlier is not None:
                        out.append((_entry(earlier), False))
                        continue
                entry_id = row.entry_id or new_entry_id()
                connection.execute(
                    insert(outbox_table).values(
                        id=entry_id,
                        kind=row.kind,
                        source=row.source,
                        definition=row.definition,
                        workflow_id=row.workflow_id,
                        dedupe=row.dedupe,
                        fingerprint=row.fingerprint,
                        parent=row.parent,
                        request=json.dumps(row.request, sort_keys=True, default=str),
                        status="pending",
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
                inserted = connection.execute(
                    select(outbox_table).where(outbox_table.c.id == entry_id)
                ).one()
                out.append((_entry(inserted), True))
        return out

    # -- reading --------------------------------------------------------------------------------

    def holds(self, dedupe: str) -> bool:
        """Whether an entry with this ``dedupe`` value was accepted (it is then the answer to
        every later one)."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(outbox_table.c.id).where(outbox_table.c.dedupe == dedupe)
            ).first()
        return found is not None

    def get(self, entry_id: str) -> Entry | None:
        """The entry of an id."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(outbox_table).where(outbox_table.c.id == entry_id)
            ).first()
        return _entry(row) if row is not None else None

    def open_entries(self, limit: int = 1000) -> list[Entry]:
        """Entries still to deliver, oldest first."""
        query = (
            select(outbox_table)
            .where(outbox_table.c.status.in_(OPEN))
            .order_by(outbox_table.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def entries(self, *, include_done: bool = False, limit: int = 100) -> list[Entry]:
        """Entries still to deliver (and, with ``include_done``, the latest delivered or failed
        ones too), oldest first."""
        query = select(outbox_table)
        if not include_done:
            query = query.where(outbox_table.c.status.in_(OPEN))
        query = query.order_by(outbox_table.c.seq.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = [_entry(row) for row in connection.execute(query)]
        return rows[::-1]

    def children(self, parent: str) -> list[Entry]:
        """The starts an event entry made, in order."""
        query = (
            select(outbox_table).where(outbox_table.c.parent == parent).order_by(outbox_table.c.seq)
        )
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def delivered_open_runs(self, definition: str) -> list[Entry]:
        """Delivered starts of ``definition`` whose runs were not seen closed yet."""
        query = select(outbox_table).where(
            outbox_table.c.definition == definition,
            outbox_table.c.kind == "start",
            outbox_table.c.status == "delivered",
            outbox_table.c.closed_at.is_(None),
        )
        with self.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def backlog(self, now: float | None = None) -> Backlog:
        """How many entries wait, and how long the oldest has."""
        query = select(func.count(), func.min(outbox_table.c.created_at)).where(
            outbox_table.c.status.in_(OPEN)
        )
        with self.engine.connect() as connection:
            count, oldest = connection.execute(query).one()
        age = None if oldest is None else max(0.0, (now or time.time()) - float(oldest))
        return Backlog(pending=int(count), oldest_age=age)

    # -- recording what delivery did -----------------------------------------------------------

    def attempt(self, entry_id: str) -> int:
        """Count a delivery attempt (committed before the request goes out) and return it."""
        with self.engine.begin() as connection:
            connection.execute(
                update(outbox_table)
                .where(outbox_table.c.id == entry_id)
                .values(attempts=outbox_table.c.attempts + 1, updated_at=time.time())
            )
            attempts = connection.execute(
                select(outbox_table.c.attempts).where(outbox_table.c.id == entry_id)
            ).scalar_one()
        return int(attempts)

    def delivered(
        self, entry_id: str, *, run_id: str | None = None, result: dict[str, Any] | None = None
    ) -> None:
        """The entry reached Temporal (``result``: what it did)."""
        now = time.time()
        self._set(
            entry_id,
            status="delivered",
            delivered_at=now,
            run_id=run_id,
            error=None,
            result=json.dumps(result, sort_keys=True, default=str) if result is not None else None,
        )

    def failed(self, entry_id: str, error: str, *, status: int = 409) -> None:
        """Temporal refused the entry for good (``status``: the HTTP status that says why)."""
        self._set(entry_id, status="failed", error=error, result=json.dumps({"status": status}))

    def waiting(self, entry_id: str, why: str) -> None:
        """The entry waits for a run slot of its definition."""
        self._set(entry_id, status="waiting", error=why)

    def still_pending(self, entry_id: str, why: str) -> None:
        """The entry could not be delivered yet (Temporal unreachable)."""
        self._set(entry_id, status="pending", error=why)

    def unreachable(self, why: str) -> None:
        """Temporal could not be reached: every pending entry says so."""
        with self.engine.begin() as connection:
            connection.execute(
                update(outbox_table)
                .where(
                    outbox_table.c.status == "pending",
                    (outbox_table.c.error.is_(None)) | (outbox_table.c.error != why),
                )
                .values(error=why, updated_at=time.time())
            )

    def closed(self, entry_id: str) -> None:
        """The run a delivered start made has ended (it no longer takes a slot)."""
        self._set(entry_id, closed_at=time.time())

    def _set(self, entry_id: str, **values: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(outbox_table)
                .where(outbox_table.c.id == entry_id)
                .values(updated_at=time.time(), **values)
            )


@dataclass
class NewEntry:
    """An entry to accept (:meth:`Outbox.accept_many`)."""

    kind: Kind
    request: dict[str, Any]
    source: str
    definition: str | None = None
    workflow_id: str | None = None
    dedupe: str | None = None
    fingerprint: str | None = None
    parent: str | None = None
    entry_id: str | None = None


def _entry(row: Any) -> Entry:
    data = row._mapping
    return Entry(
        seq=int(data["seq"]),
        id=str(data["id"]),
        kind=data["kind"],
        source=str(data["source"]),
        definition=data["definition"],
        workflow_id=data["workflow_id"],
        dedupe=data["dedupe"],
        fingerprint=data["fingerprint"],
        parent=data["parent"],
        request=json.loads(data["request"]),
        status=data["status"],
        attempts=int(data["attempts"] or 0),
        error=data["error"],
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
        delivered_at=data["delivered_at"],
        run_id=data["run_id"],
        closed_at=data["closed_at"],
        result=json.loads(data["result"]) if data["result"] else None,
    )
