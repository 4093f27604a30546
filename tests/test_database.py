"""database.insert / upsert / query against a real PostgreSQL 15 and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, create_engine, inspect
from sqlalchemy.engine import make_url
from temporalio.exceptions import ApplicationError

from activities import WorkerResources, WorkerSettings
from tests.nodes import run_node
from tests.servers.postgres import free_port

INVOICE = {
    "invoice_number": "INV-2024-001",
    "date": "2024-01-31",
    "total_amount": 1234.5,
    "vendor_name": "Acme GmbH",
    "paid": False,
    "line_items": [
        {"description": "Widget", "quantity": 3, "amount": 1000.0},
        {"description": "Shipping", "quantity": 1, "amount": 234.5},
    ],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[WorkerSettings, str]:
    """Worker settings whose ``default_database`` is SQLite in a temp folder or the PostgreSQL
    server, and the backend's name."""
    if request.param == "sqlite":
        return WorkerSettings(home=tmp_path), "sqlite"
    url = request.getfixturevalue("postgres_url")
    return WorkerSettings(home=tmp_path, databases={"default_database": url}), "postgresql"


def _table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


async def _rows(settings: WorkerSettings, sql: str, **params: Any) -> list[dict[str, Any]]:
    result = await run_node("database.query", {"sql": sql, "params": params}, settings=settings)
    rows: list[dict[str, Any]] = result.output["rows"]
    return rows


def _json(value: Any) -> Any:
    """A JSON column's value as read back: PostgreSQL's driver parses it, SQLite gives text."""
    return json.loads(value) if isinstance(value, str) else value


async def test_insert_creates_table_and_stores_nested_json(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, name = backend
    table = _table()
    result = await run_node(
        "database_connector",
        {"connection": "default_database", "table": table, "record": INVOICE},
        settings=settings,
    )
    assert result.output == {
        "table": table,
        "row_count": 1,
        "created_table": True,
        "added_columns": [],
    }
    rows = await _rows(settings, f"SELECT * FROM {table}")
    assert len(rows) == 1
    row = rows[0]
    assert row["invoice_number"] == "INV-2024-001"
    assert row["total_amount"] == 1234.5
    assert not row["paid"]
    assert _json(row["line_items"]) == INVOICE["line_items"]

    url = settings.database_url("default_database")
    assert url is not None
    engine = create_engine(url)
    try:
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()
    assert isinstance(columns["line_items"], JSON)
    if name == "postgresql":
        assert type(columns["line_items"]).__name__ == "JSONB"


async def test_insert_adds_missing_columns_and_batches(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    await run_node("database.insert", {"table": table, "record": {"a": 1}}, settings=settings)
    result = await run_node(
        "database.insert",
        {"table": table, "records": [{"a": 2, "tags": ["x", "y"]}, {"b": "only b"}]},
        settings=settings,
    )
    assert result.output["added_columns"] == ["tags", "b"]
    assert result.output["row_count"] == 2
    rows = await _rows(settings, f"SELECT a, tags, b FROM {table} ORDER BY a")
    by_a = {row["a"]: row for row in rows}
    assert _json(by_a[2]["tags"]) == ["x", "y"]
    assert by_a[None]["b"] == "only b"
    assert by_a[1]["b"] is None


async def test_insert_into_missing_table_without_create_fails(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "database.insert",
            {"table": table, "record": {"a": 1}, "create_table": False},
            settings=settings,
        )
    assert failure.value.non_retryable
    assert table in failure.value.message
    assert "default_database" in failure.value.message


async def test_unknown_column_without_add_columns_fails(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    await run_node("database.insert", {"table": table, "record": {"a": 1}}, settings=settings)
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "database.insert",
            {"table": table, "record": {"a": 2, "surprise": 1}, "add_columns": False},
            settings=settings,
        )
    assert failure.value.non_retryable
    assert "surprise" in failure.value.message


async def test_upsert_twice_leaves_one_row_with_new_values(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    first = {**INVOICE, "total_amount": 10.0}
    second = {**INVOICE, "total_amount": 20.0, "line_items": [{"description": "Other"}]}
    out1 = await run_node(
        "database.upsert",
        {"table": table, "key": "invoice_number", "record": first},
        settings=settings,
    )
    assert out1.output["created_table"] is True
    # A retried activity writes the same key again: still one row, holding the latest values.
    for _ in range(2):
        await run_node(
            "database.upsert",
            {"table": table, "key": ["invoice_number"], "record": second},
            settings=settings,
        )
    rows = await _rows(settings, f"SELECT * FROM {table}")
    assert len(rows) == 1
    assert rows[0]["total_amount"] == 20.0
    assert _json(rows[0]["line_items"]) == [{"description": "Other"}]


async def test_upsert_composite_key_and_batch_duplicates(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    records = [
        {"tenant": "a", "id": 1, "value": "first"},
        {"tenant": "b", "id": 1, "value": "other tenant"},
        {"tenant": "a", "id": 1, "value": "last wins"},
    ]
    result = await run_node(
        "database.upsert",
        {"table": table, "key": ["tenant", "id"], "records": records},
        settings=settings,
    )
    assert result.output["row_count"] == 2
    rows = await _rows(settings, f"SELECT tenant, id, value FROM {table} ORDER BY tenant")
    assert rows == [
        {"tenant": "a", "id": 1, "value": "last wins"},
        {"tenant": "b", "id": 1, "value": "other tenant"},
    ]


async def test_upsert_adds_unique_index_to_a_table_made_by_insert(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    await run_node(
        "database.insert", {"table": table, "record": {"k": "x", "v": 1}}, settings=settings
    )
    for v in (2, 3):
        await run_node(
            "database.upsert",
            {"table": table, "key": "k", "record": {"k": "x", "v": v}},
            settings=settings,
        )
    assert await _rows(settings, f"SELECT k, v FROM {table}") == [{"k": "x", "v": 3}]


async def test_upsert_without_unique_constraint_and_no_create_fails(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    await run_node("database.insert", {"table": table, "record": {"k": "x"}}, settings=settings)
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "database.upsert",
            {"table": table, "key": "k", "record": {"k": "x"}, "create_table": False},
            settings=settings,
        )
    assert failure.value.non_retryable
    assert "unique" in failure.value.message


async def test_query_with_bound_params_and_dml_rowcount(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    records = [{"name": n, "score": s} for n, s in [("ann", 3), ("bob", 5), ("cid", 8)]]
    await run_node("database.insert", {"table": table, "records": records}, settings=settings)
    rows = await _rows(
        settings,
        f"SELECT name FROM {table} WHERE score >= :min AND name IN :names ORDER BY name",
        min=4,
        names=["ann", "bob", "cid"],
    )
    assert rows == [{"name": "bob"}, {"name": "cid"}]
    # A value that looks like SQL stays a value.
    sneaky = await _rows(settings, f"SELECT name FROM {table} WHERE name = :n", n="ann' OR '1'='1")
    assert sneaky == []
    updated = await run_node(
        "database.query",
        {"sql": f"UPDATE {table} SET score = score + 1 WHERE score < :s", "params": {"s": 6}},
        settings=settings,
    )
    assert updated.output["row_count"] == 2
    assert updated.output["rows"] == []
    assert await _rows(settings, f"SELECT SUM(score) AS total FROM {table}") == [{"total": 18}]
    limited = await run_node(
        "database.query",
        {"sql": f"SELECT name FROM {table} ORDER BY name", "max_rows": 2},
        settings=settings,
    )
    assert limited.output["row_count"] == 2
    assert limited.output["truncated"] is True


async def test_bad_sql_is_not_retryable(backend: tuple[WorkerSettings, str]) -> None:
    settings, _ = backend
    with pytest.raises(ApplicationError) as failure:
        await run_node("database.query", {"sql": "SELEC 1"}, settings=settings)
    assert failure.value.non_retryable
    assert "default_database" in failure.value.message


async def test_constraint_violation_is_not_retryable(
    backend: tuple[WorkerSettings, str],
) -> None:
    settings, _ = backend
    table = _table()
    await run_node(
        "database.upsert", {"table": table, "key": "id", "record": {"id": 1}}, settings=settings
    )
    with pytest.raises(ApplicationError) as failure:
        await run_node("database.insert", {"table": table, "record": {"id": 1}}, settings=settings)
    assert failure.value.non_retryable
    assert table in failure.value.message


async def test_named_connection_and_plain_postgresql_url(postgres_url: str, tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path, databases={"warehouse": postgres_url})
    resources = WorkerResources(settings)
    try:
        for _ in range(2):
            result = await run_node(
                "database.query",
                {"connection": "warehouse", "sql": "SELECT 1 AS one"},
                resources=resources,
            )
            assert result.output["rows"] == [{"one": 1}]
        # A postgresql:// URL in the config runs through psycopg 3 as well.
        plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        result = await run_node(
            "database.query",
            {"connection": plain, "sql": "SELECT current_user AS who"},
            resources=resources,
        )
        assert result.output["rows"] == [{"who": "postgres"}]
    finally:
        await resources.aclose()


async def test_unknown_connection_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "database.query",
            {"connection": "nowhere", "sql": "SELECT 1"},
            settings=WorkerSettings(home=tmp_path),
        )
    assert failure.value.non_retryable
    assert failure.value.type == "NodeConfigError"
    assert "TIDEFLOW_DATABASE_NOWHERE" in failure.value.message


async def test_wrong_password_is_permanent_and_masked(postgres_url: str, tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path)
    role = f"app_{uuid.uuid4().hex[:8]}"
    await run_node(
        "database.query",
        {"connection": postgres_url, "sql": f"CREATE ROLE {role} LOGIN PASSWORD 'right-pw'"},
        settings=settings,
    )
    base = make_url(postgres_url)
    good = base.set(username=role, password="right-pw").render_as_string(hide_password=False)
    result = await run_node(
        "database.query",
        {"connection": good, "sql": "SELECT current_user AS who"},
        settings=settings,
    )
    assert result.output["rows"] == [{"who": role}]

    bad = base.set(username=role, password="wrong-pw-123").render_as_string(hide_password=False)
    with pytest.raises(ApplicationError) as failure:
        await run_node("database.query", {"connection": bad, "sql": "SELECT 1"}, settings=settings)
    assert failure.value.non_retryable
    assert "password authentication failed" in failure.value.message
    assert "wrong-pw-123" not in failure.value.message
    assert "***" in failure.value.message


async def test_refused_connection_is_retryable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://someone:secret-pw@127.0.0.1:{port}/db"
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "database.insert",
            {"connection": url, "table": "t", "record": {"a": 1}},
            settings=WorkerSettings(home=tmp_path),
        )
    assert not failure.value.non_retryable
    assert f"127.0.0.1:{port}" in failure.value.message
    assert "secret-pw" not in failure.value.message


async def test_sqlite_file_that_cannot_be_opened_is_permanent(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "database.query",
            {"connection": f"sqlite:///{blocker}/x.db", "sql": "SELECT 1"},
            settings=WorkerSettings(home=tmp_path),
        )
    assert failure.value.non_retryable


async def test_concurrent_writers_create_the_table_once(
    backend: tuple[WorkerSettings, str],
) -> None:
    """A foreach node writing one new table from many activities at once: every row lands."""
    settings, _ = backend
    table = _table()
    resources = WorkerResources(settings)
    try:
        await asyncio.gather(
            *(
                run_node(
                    "database.insert",
                    {"table": table, "record": {"n": n, **({"extra": "x"} if n % 2 else {})}},
                    resources=resources,
                )
                for n in range(8)
            )
        )
        rows = await _rows(settings, f"SELECT n, extra FROM {table} ORDER BY n")
    finally:
        await resources.aclose()
    assert [row["n"] for row in rows] == list(range(8))
    assert [row["extra"] for row in rows] == [None, "x"] * 4


async def test_no_records_writes_nothing(backend: tuple[WorkerSettings, str]) -> None:
    settings, _ = backend
    table = _table()
    result = await run_node("database.insert", {"table": table, "records": []}, settings=settings)
    assert result.output["row_count"] == 0
    with pytest.raises(ApplicationError):
        await run_node("database.query", {"sql": f"SELECT * FROM {table}"}, settings=settings)
    with pytest.raises(ApplicationError) as failure:
        await run_node("database_connector", {"table": table}, settings=settings)
    assert failure.value.type == "NodeConfigError"
