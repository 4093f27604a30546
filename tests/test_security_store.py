"""The governance records of the control-plane store, on SQLite and on the real PostgreSQL
server: API tokens (hashed, revoked, expired), the append-only audit trail, and lineage."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from starter import audit, lineage
from starter.auth import Denied
from starter.auth.tokens import (
    TokenError,
    create_token,
    list_tokens,
    parse_expiry,
    revoke_token,
    tokens_table,
    verify_token,
)
from starter.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL: a fresh SQLite file, or a fresh database of the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'control.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"store_{uuid.uuid4().hex[:10]}"
    admin = open_store(server)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield server.rsplit("/", 1)[0] + f"/{name}"


def test_a_token_is_kept_hashed_and_acts_as_its_name(store: str) -> None:
    token = create_token(
        "ana", ["approver", "viewer"], definitions=["invoice-*"], by="root", store_url=store
    )
    assert token.startswith("tft_") and len(token) > 40
    with open_store(store).connect() as connection:
        stored = connection.execute(select(tokens_table)).one()
    assert token not in " ".join(str(v) for v in stored)  # only the hash is kept
    assert stored.hash == hashlib.sha256(token.encode()).hexdigest()

    identity = verify_token(token, store_url=store)
    assert (identity.user, identity.roles, identity.definitions) == (
        "ana",
        ("approver", "viewer"),
        ("invoice-*",),
    )
    assert identity.covers("invoice-processing") and not identity.covers("payroll")
    [listed] = list_tokens(store_url=store)
    assert (listed.name, listed.state, listed.created_by) == ("ana", "active", "root")


def test_unknown_revoked_expired_and_malformed_tokens_are_refused(store: str) -> None:
    token = create_token("bo", ["operator"], store_url=store)
    with pytest.raises(Denied, match="unknown token") as unknown:
        verify_token("tft_" + "x" * 43, store_url=store)
    assert unknown.value.status == 401
    with pytest.raises(Denied, match="malformed token"):
        verify_token("not-a-token", store_url=store)

    with pytest.raises(TokenError, match="an active token is named 'bo'"):
        create_token("bo", ["viewer"], store_url=store)
    revoke_token("bo", by="root", store_url=store)
    with pytest.raises(Denied, match="'bo' was revoked"):
        verify_token(token, store_url=store)
    with pytest.raises(TokenError, match="no active token is named 'bo'"):
        revoke_token("bo", store_url=store)
    again = create_token("bo", ["viewer"], store_url=store)  # the name is free again
    assert verify_token(again, store_url=store).roles == ("viewer",)

    expiring = create_token("cy", ["viewer"], expires_at=parse_expiry("1h"), store_url=store)
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1)
    with open_store(store).begin() as connection:
        connection.execute(
            update(tokens_table).where(tokens_table.c.name == "cy").values(expires_at=past)
        )
    with pytest.raises(Denied, match="'cy' expired"):
        verify_token(expiring, store_url=store)
    assert {t.name: t.state for t in list_tokens(store_url=store) if t.name == "cy"} == {
        "cy": "expired"
    }


def test_bad_token_requests_name_the_problem(store: str) -> None:
    with pytest.raises(TokenError, match="unknown role 'superuser'"):
        create_token("dee", ["superuser"], store_url=store)
    with pytest.raises(TokenError, match="at least one --role"):
        create_token("dee", [], store_url=store)
    with pytest.raises(TokenError, match="token name"):
        create_token("no spaces", ["viewer"], store_url=store)
    with pytest.raises(ValueError, match="give a duration"):
        parse_expiry("soon")


def test_the_audit_trail_is_append_only_and_filterable(store: str) -> None:
    run = f"run-{uuid.uuid4().hex[:6]}"
    audit.record("start", run, user="ana", via="cli", definition="hello", store_url=store)
    audit.record(
        "approve", run, user="bo", via="api", outcome="refused", detail="no", store_url=store
    )
    audit.record("pause", "other", user="ana", via="api", store_url=store)

    entries = audit.entries(run=run, store_url=store)
    assert [(e.action, e.user, e.outcome) for e in entries] == [
        ("start", "ana", "ok"),
        ("approve", "bo", "refused"),
    ]
    assert entries[0].at.tzinfo is not None
    assert [e.action for e in audit.entries(user="ana", store_url=store)] == ["start", "pause"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert audit.entries(since=later, store_url=store) == []

    engine = open_store(store)
    table = audit.audit_table
    for statement in (update(table).values(actor="mallory"), delete(table)):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(statement)
    assert len(audit.entries(store_url=store)) == 3


def test_since_reads_durations_and_dates() -> None:
    now = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
    assert audit.parse_since("2h", now=now) == now - dt.timedelta(hours=2)
    assert audit.parse_since("7d", now=now) == now - dt.timedelta(days=7)
    assert audit.parse_since("2026-01-30", now=now) == dt.datetime(2026, 1, 30, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        audit.parse_since("yesterday")


def test_lineage_traces_records_to_documents(store: str, tmp_path: Path) -> None:
    from activities import registry
    from interpreter import load_string

    document = tmp_path / "invoice.txt"
    document.write_text("Invoice 7 from Acme")
    digest = hashlib.sha256(document.read_bytes()).hexdigest()
    definition = load_string("name: Book\nversion: '3'\ntasks: []\n", "<t>", catalog=registry)
    lineage.record_start(
        workflow_id="book-1",
        run_id=None,
        definition=definition,
        inputs={"document": document.as_uri(), "note": "not a file"},
        store_url=store,
    )
    # A foreach batch of the run writes: its records carry the parent's documents.
    found = lineage.provenance("book-1-store-batch-1", "r2", store_url=store)
    assert (found.definition, found.version, found.documents) == ("Book", "3", [digest])
    lineage.record_write(
        found,
        node="store",
        node_type="database.insert",
        target="database:x/t",
        rows=2,
        store_url=store,
    )
    lineage.record_document(
        "book-1", None, sha256="f" * 64, uri="s3://b/k", node="parse", store_url=store
    )

    [run] = lineage.of_document(digest, store_url=store)
    assert run.workflow_id == "book-1" and run.definition == "Book"
    assert [(r.node, r.target, r.rows, r.documents) for r in run.records] == [
        ("store", "database:x/t", 2, [digest])
    ]
    traced = lineage.of_run("book-1", store_url=store)
    assert [d.sha256 for d in traced.documents] == [digest, "f" * 64]
    assert traced.documents[0].node is None and traced.documents[1].node == "parse"
    assert lineage.of_document("0" * 64, store_url=store) == []
