"""The audit trail: who changed what, when, on which target, and how it went.

Every action that changes something — a start, each control action on a run (pause, resume,
cancel, skip, retry, fail, set vars, approve, emit), a redrive, a deploy, a token change — is
appended to the ``audit`` table of the control-plane store (:mod:`starter.store`: SQLite in the
data folder, PostgreSQL with ``TIDEFLOW_STORE_URL``), refusals included. The table is
append-only in the database itself: triggers refuse every UPDATE and DELETE (and TRUNCATE on
PostgreSQL), so a bug or a careless script cannot rewrite history.

Recording is one call wherever an action happens::

    from starter import audit

    audit.record("deploy", "invoice-processing@3", user="ana", via="cli")

or around the action, recording its outcome (``ok``, ``refused`` when Tideflow or the run said
no, ``failed`` for any other error)::

    async with audit.audited("redrive", workflow_id, user=client.user, via=client.origin):
        ...

:class:`~starter.client.TideflowClient` records its starts and :class:`~starter.client.RunHandle`
its control actions this way, so the CLI, the HTTP API and the triggers are covered; the API
records the requests it denies (``denied``). Details never hold values (inputs, vars, payloads,
tokens): names only. A store that cannot be written is logged and does not stop the action.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import (
    DDL,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    event,
    insert,
    select,
)

from starter.store import metadata, open_store

log = logging.getLogger("tideflow.audit")

Outcome = Literal["ok", "refused", "denied", "failed"]
"""``ok``; ``refused`` by Tideflow or the run (a control action it does not accept, bad input);
``denied`` for want of a permission (401/403); ``failed`` on any other error."""

audit_table = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(), nullable=False, index=True),  # UTC
    Column("actor", String(200), nullable=False, index=True),
    Column("via", String(40), nullable=True),
    Column("action", String(60), nullable=False),
    Column("target", String(500), nullable=True, index=True),
    Column("definition", String(200), nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("detail", Text, nullable=True),
)

_APPEND_ONLY = "the audit trail is append-only"


def _make_append_only(table: Table) -> None:
    """Triggers refusing UPDATE and DELETE (and TRUNCATE) once the table is created."""
    name = table.name
    sqlite = [
        f"CREATE TRIGGER IF NOT EXISTS {name}_no_{verb.lower()} BEFORE {verb} ON {name} "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        for verb in ("UPDATE", "DELETE")
    ]
    postgresql = [
        f"CREATE OR REPLACE FUNCTION tideflow_{name}_append_only() RETURNS trigger AS $$ "
        f"BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$ LANGUAGE plpgsql",
        f"CREATE TRIGGER {name}_no_change BEFORE UPDATE OR DELETE ON {name} "
        f"FOR EACH ROW EXECUTE FUNCTION tideflow_{name}_append_only()",
        f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION tideflow_{name}_append_only()",
    ]
    for dialect, statements in (("sqlite", sqlite), ("postgresql", postgresql)):
        for statement in statements:
            ddl = DDL(statement)  # type: ignore[no-untyped-call]
            event.listen(table, "after_create", ddl.execute_if(dialect=dialect))


_make_append_only(audit_table)


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    id: int
    at: dt.datetime
    user: str
    via: str | None
    action: str
    target: str | None
    definition: str | None
    outcome: str
    detail: str | None

    def as_json(self) -> dict[str, Any]:
        """The entry as JSON-able data (``at`` in ISO 8601, UTC)."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def record(
    action: str,
    target: str | None = None,
    *,
    user: str | None,
    via: str | None = None,
    outcome: Outcome = "ok",
    detail: str | None = None,
    definition: str | None = None,
    store_url: str | None = None,
) -> None:
    """Append one entry (now, UTC). Never raises: a store that cannot be written is logged."""
    row = {
        "at": _utc_naive(dt.datetime.now(dt.UTC)),
        "actor": (user or "unknown")[:200],
        "via": via,
        "action": action[:60],
        "target": target[:500] if target else None,
        "definition": definition[:200] if definition else None,
        "outcome": outcome,
        "detail": detail,
    }
    try:
        with open_store(store_url).begin() as connection:
            connection.execute(insert(audit_table).values(**row))
    except Exception as e:  # the action itself must not fail because its record could not
        log.warning("audit: could not record %s of %s by %s: %s", action, target, user, e)


async def record_async(action: str, target: str | None = None, **fields: Any) -> None:
    """:func:`record` from async code (the write runs in a thread)."""
    await asyncio.to_thread(record, action, target, **fields)


class Refusal(Exception):
    """Base of errors that mean "refused" rather than "failed" in the trail (the client's
    ``ControlError`` and input errors are recognised too)."""


def outcome_of(error: BaseException) -> Outcome:
    """How an action that raised ``error`` is recorded."""
    from interpreter import DefinitionError
    from interpreter.inputs import InputError
    from starter.client.errors import ControlError

    if isinstance(error, Refusal | ControlError | InputError | DefinitionError):
        return "refused"
    status = getattr(error, "status", None)
    if status in (401, 403):
        return "denied"
    if isinstance(status, int) and 400 <= status < 500:
        return "refused"
    return "failed"


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "detail", None) or error) or type(error).__name__
    return text.strip().splitlines()[0][:1000] if text.strip() else type(error).__name__


@asynccontextmanager
async def audited(
    action: str,
    target: str | None = None,
    *,
    user: str | None,
    via: str | None = None,
    detail: str | None = None,
    definition: str | None = None,
    enabled: bool = True,
) -> AsyncIterator[dict[str, Any]]:
    """Run the block and record the action with its outcome. The block may add to the
    yielded dict: ``target``, ``detail`` or ``definition`` learnt while acting (a started
    run's id). ``enabled=False`` records nothing."""
    learnt: dict[str, Any] = {}
    try:
        yield learnt
    except asyncio.CancelledError:
        raise
    except Exception as e:
        if enabled:
            await record_async(
                action,
                learnt.get("target", target),
                user=user,
                via=via,
                outcome=outcome_of(e),
                detail=_one_line(e),
                definition=learnt.get("definition", definition),
            )
        raise
    if enabled:
        await record_async(
            action,
            learnt.get("target", target),
            user=user,
            via=via,
            detail=learnt.get("detail", detail),
            definition=learnt.get("definition", definition),
        )


def entries(
    *,
    run: str | None = None,
    user: str | None = None,
    since: dt.datetime | None = None,
    action: str | None = None,
    limit: int = 1000,
    store_url: str | None = None,
) -> list[AuditEntry]:
    """Recorded entries, oldest first, filtered by target run (workflow id), user, time and
    action; at most ``limit`` (the newest ones)."""
    query = select(audit_table)
    if run:
        query = query.where(audit_table.c.target == run)
    if user:
        query = query.where(audit_table.c.actor == user)
    if since:
        query = query.where(audit_table.c.at >= _utc_naive(since))
    if action:
        query = query.where(audit_table.c.action == action)
    query = query.order_by(audit_table.c.id.desc()).limit(limit)
    with open_store(store_url).connect() as connection:
        rows = connection.execute(query).all()
    return [
        AuditEntry(
            id=row.id,
            at=row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC),
            user=row.actor,
            via=row.via,
            action=row.action,
            target=row.target,
            definition=row.definition,
            outcome=row.outcome,
            detail=row.detail,
        )
        for row in reversed(rows)
    ]


def _utc_naive(moment: dt.datetime) -> dt.datetime:
    """UTC without a zone: how times are stored (SQLite keeps no zone). Times too close to the
    calendar's ends to shift into UTC become its first or last moment."""
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            return dt.datetime.min if moment.year < 2 else dt.datetime.max
    return moment


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta | None:
    """``30s``, ``30m``, ``2h``, ``7d``, ``1w`` as a duration; None when ``text`` is not one."""
    match = _DURATION.match(text)
    if not match:
        return None
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_since(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``30m``, ``2h``, ``7d``, ``1w`` before now, or an ISO 8601 date or time (UTC unless it
    says otherwise); ValueError for anything else."""
    now = now or dt.datetime.now(dt.UTC)
    duration = parse_duration(text)
    if duration is not None:
        try:
            return now - duration
        except OverflowError:  # further back than the calendar: everything
            return dt.datetime.min.replace(tzinfo=dt.UTC)
    try:
        # RFC 3339 allows a lower-case t and z, and a leap second.
        moment = dt.datetime.fromisoformat(text.strip().upper().replace(":60", ":59"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO date/time "
            "(2026-01-31, 2026-01-31T08:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
