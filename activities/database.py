"""Node types of the database family: ``database.insert`` (seed alias ``database_connector``),
``database.upsert`` and ``database.query``, through SQLAlchemy 2 (sync engines run in threads).

``connection`` is a name — ``default_database`` (SQLite in the data folder) or one configured
as ``TIDEFLOW_DATABASE_<NAME>`` / ``databases:`` in the worker config — or a SQLAlchemy URL.
``postgresql://`` and ``postgres://`` URLs use psycopg 3 (``postgresql+psycopg://``). Passwords
never appear in outputs or errors: URLs are shown masked. Engines are shared per URL.

Writing records. A record is a JSON object whose keys are column names. When the table does not
exist (and ``create_table`` is true) it is created with one column per key seen in the records,
typed after their non-null values:

=========================  ======================================================
values                     column type
=========================  ======================================================
booleans                   BOOLEAN
integers                   BIGINT
numbers (ints and floats)  DOUBLE PRECISION (REAL in SQLite)
objects / lists            JSONB in PostgreSQL, JSON (stored as text) in SQLite
strings, mixed, all null   TEXT (objects and lists in a TEXT column are JSON text)
=========================  ======================================================

Keys the table lacks are added as nullable columns of the same mapping (``add_columns``, on
by default; off, an unknown key fails the node). Keys a record omits are left to the column's
default (NULL). Nested values (the invoice example's ``line_items``) are stored as JSON.

Retries: ``database.insert`` adds rows, so an attempt retried after its commit reached the
database adds them again. ``database.upsert`` writes each key once: ``INSERT … ON CONFLICT
(key) DO UPDATE`` (PostgreSQL and SQLite); a table it creates gets the key as its primary key,
and an existing table without a unique constraint on the key gets a unique index (when
``create_table`` is true).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities import lineage
from activities._context import NodeContext
from activities._registry import node_type
from activities.errors import (
    NodeConfigError,
    NodeError,
    PermanentNodeError,
    RetryableNodeError,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table
    from sqlalchemy.types import TypeEngine

T = TypeVar("T")

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE_NAME = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})?$")
# PostgreSQL silently truncates longer identifiers, which would break reflection afterwards.
_MAX_IDENTIFIER = 63

# SQLSTATE classes and codes (PostgreSQL) another attempt may get past: connection exceptions,
# serialization failures and deadlocks, insufficient resources, lock timeouts, statement
# timeouts, server shutdown, I/O errors.
_RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "58", "XX")
_RETRYABLE_SQLSTATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03", "55006"})
# Connection failures without a SQLSTATE (libpq fails before a session exists) whose text says
# another attempt is pointless.
_PERMANENT_CONNECT_TEXT = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "no password supplied",
    "permission denied",
    "invalid sslmode",
)
_RETRYABLE_SQLITE = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL"})


class _ConnectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection: str = Field(
        default="default_database",
        description="A connection name (default_database, or one from the worker config) or a "
        "SQLAlchemy URL such as postgresql://user@host/db or sqlite:///path.db.",
    )


class DatabaseInsertConfig(_ConnectionConfig):
    """Config of ``database.insert``."""

    table: str = Field(description="Table name, optionally schema-qualified (schema.table).")
    record: dict[str, Any] | None = Field(
        default=None,
        description="One row to write; default the only dependency's extracted entities (or "
        "its output), so a seed-style `database_connector` after an extraction stores it.",
        json_schema_extra={
            "default_expression": "${{ has(upstream.output.entities) ? "
            "upstream.output.entities : upstream.output }}",
            "default_unless": ["records"],
        },
    )
    records: list[dict[str, Any]] | None = Field(default=None, description="Rows to write.")
    create_table: bool = Field(
        default=True, description="Create the table (columns inferred from the records)."
    )
    add_columns: bool = Field(
        default=True, description="Add columns for keys the table lacks (else fail the node)."
    )
    provenance: bool = Field(
        default=False,
        description="Add to each row where it comes from: tideflow_workflow_id, "
        "tideflow_run_id, tideflow_node, tideflow_definition, tideflow_version and "
        "tideflow_documents (sha256 of the run's documents). Every write is in the lineage "
        "store either way (tideflow lineage).",
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not _TABLE_NAME.match(value) or any(
            len(part) > _MAX_IDENTIFIER for part in value.split(".")
        ):
            raise ValueError(
                "a table name is letters, digits and _ (not starting with a digit), at most 63 "
                "characters, optionally prefixed by a schema and a dot"
            )
        return value


class DatabaseUpsertConfig(DatabaseInsertConfig):
    """Config of ``database.upsert``."""

    key: list[str] = Field(
        min_length=1,
        description="The column (or columns) identifying a row: a row with the same key is "
        "updated instead of added.",
    )

    @field_validator("key", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DatabaseQueryConfig(_ConnectionConfig):
    """Config of ``database.query``."""

    sql: str = Field(
        description="One SQL statement with :name placeholders; values go in params, never "
        "into the text."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Bound parameters. A list expands for `IN :name`; an object is bound as "
        "JSON text.",
    )
    max_rows: int = Field(
        default=10_000,
        gt=0,
        description="Return at most this many rows; the output says truncated when there were "
        "more.",
    )


@dataclass(frozen=True)
class _Target:
    """An engine and how to name its connection in messages."""

    engine: Engine
    label: str
    password: str | None


@node_type("database.insert", DatabaseInsertConfig)
async def database_insert(config: DatabaseInsertConfig, ctx: NodeContext) -> dict[str, Any]:
    """Insert ``record`` or ``records`` into ``table``, creating it (and columns) if needed."""
    rows = await _with_provenance(_rows(config), config, ctx)
    target = await _target(config.connection, ctx)
    return await asyncio.to_thread(
        _guarded, target, f"insert into {config.table}", lambda: _write(target, config, rows, [])
    )


@node_type("database.upsert", DatabaseUpsertConfig)
async def database_upsert(config: DatabaseUpsertConfig, ctx: NodeContext) -> dict[str, Any]:
    """Insert or update rows by ``key`` (INSERT … ON CONFLICT): a retried node writes once."""
    rows = await _with_provenance(_rows(config), config, ctx)
    for index, row in enumerate(rows):
        absent = [k for k in config.key if row.get(k) is None]
        if absent:
            raise NodeConfigError(f"record {index} has no value for the key column(s) {absent}")
    target = await _target(config.connection, ctx)
    return await asyncio.to_thread(
        _guarded,
        target,
        f"upsert into {config.table}",
        lambda: _write(target, config, rows, config.key),
    )


@node_type("database.query", DatabaseQueryConfig)
async def database_query(config: DatabaseQueryConfig, ctx: NodeContext) -> dict[str, Any]:
    """Run one SQL statement with bound parameters: rows for a SELECT (or RETURNING), the
    affected row count for other statements. The statement is committed."""
    target = await _target(config.connection, ctx)
    return await asyncio.to_thread(_guarded, target, "query", lambda: _query(target, config))


async def _with_provenance(
    rows: list[dict[str, Any]], config: DatabaseInsertConfig, ctx: NodeContext
) -> list[dict[str, Any]]:
    """The rows, each with its provenance columns when ``provenance`` is on."""
    if not config.provenance or not rows:
        return rows
    columns = await lineage.provenance_columns(ctx)
    return [{**row, **columns} for row in rows]


def _rows(config: DatabaseInsertConfig) -> list[dict[str, Any]]:
    if config.record is not None and config.records is not None:
        raise NodeConfigError("give either record or records, not both")
    if config.record is None and config.records is None:
        raise NodeConfigError(
            "nothing to write: give record (e.g. record: ${{ nodes.<id>.output }}) or records"
        )
    rows = [config.record] if config.record is not None else list(config.records or [])
    for index, row in enumerate(rows):
        for column in row:
            if not column or len(column) > _MAX_IDENTIFIER:
                raise NodeConfigError(
                    f"record {index}: column name {column!r} must be 1 to 63 characters"
                )
    return rows


# --- connections ------------------------------------------------------------------------------


async def _target(connection: str, ctx: NodeContext) -> _Target:
    """The shared engine of a connection name or URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "://" in connection or connection.startswith("sqlite:"):
        raw, name = connection, None
    else:
        found = ctx.settings.database_url(connection)
        if found is None:
            raise NodeConfigError(
                f"unknown connection {connection!r}: name one configured on the worker "
                f"(TIDEFLOW_DATABASE_{connection.upper()} or databases: in the worker config) "
                "or give a URL"
            )
        raw, name = found, connection
    try:
        url = make_url(raw)
    except ArgumentError as e:
        what = f"connection {name!r}" if name else "the connection URL"
        raise NodeConfigError(f"{what} is not a valid database URL") from e
    if url.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the PostgreSQL driver Tideflow ships; SQLAlchemy's default is psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    masked = url.render_as_string(hide_password=True)
    label = f"connection {name!r} ({masked})" if name else f"connection {masked}"
    engine = await ctx.resources.get(
        f"database.engine:{url.render_as_string(hide_password=False)}",
        lambda: _new_engine(url, label),
        close=_dispose,
    )
    return _Target(engine=engine, label=label, password=url.password)


def _new_engine(url: Any, label: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        # Concurrent nodes writing one SQLite file wait for the lock instead of failing at once.
        connect_args["timeout"] = 30
        database = url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise PermanentNodeError(f"{label}: cannot create the folder {folder}: {e}") from e
    elif url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 10
    try:
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except (NoSuchModuleError, ArgumentError, ImportError) as e:
        raise NodeConfigError(f"{label}: unsupported database driver ({e})") from e


def _dispose(engine: Engine) -> None:
    engine.dispose()


# --- writing ----------------------------------------------------------------------------------


def _write(
    target: _Target, config: DatabaseInsertConfig, rows: list[dict[str, Any]], key: list[str]
) -> dict[str, Any]:
    from sqlalchemy import insert

    if not rows:  # an empty foreach result: nothing to write, no table to create
        return {"table": config.table, "row_count": 0, "created_table": False, "added_columns": []}
    table, created, added = _prepare_table(target, config, rows, key)
    if key:
        rows = _last_per_key(rows, key)
    with target.engine.begin() as conn:
        for columns, group in _groups(rows):
            values = [{c: _bind_value(table, c, row[c]) for c in columns} for row in group]
            if key:
                conn.execute(_upsert_statement(conn, table, key, columns), values)
            else:
                conn.execute(insert(table), values)
    result: dict[str, Any] = {
        "table": config.table,
        "row_count": len(rows),
        "created_table": created,
        "added_columns": added,
    }
    if key:
        result["key"] = key
    return result


def _prepare_table(
    target: _Target, config: DatabaseInsertConfig, rows: list[dict[str, Any]], key: list[str]
) -> tuple[Table, bool, list[str]]:
    """Reflect the table, creating it, adding columns and the key's unique index as needed."""
    from sqlalchemy import Column, MetaData
    from sqlalchemy import Table as TableType
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.schema import CreateTable

    schema, name = _split_table(config.table)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    created = False
    table = _reflect(target.engine, schema, name)
    if table is None:
        if not config.create_table:
            raise PermanentNodeError(
                f"table {config.table} does not exist on {target.label} (create_table is false)"
            )
        new = TableType(
            name,
            MetaData(),
            *(
                Column(
                    c,
                    _column_type(row.get(c) for row in rows),
                    primary_key=c in key,
                    autoincrement=False,
                )
                for c in columns
            ),
            schema=schema,
        )
        try:
            with target.engine.begin() as conn:
                conn.execute(CreateTable(new, if_not_exists=True))
            created = True
        except DBAPIError:
            # Another node may have created it at the same moment; use theirs if it is there.
            if _reflect(target.engine, schema, name) is None:
                raise
        table = _reflect(target.engine, schema, name)
        assert table is not None
    added: list[str] = []
    missing = [c for c in columns if c not in table.c]
    if missing:
        if not config.add_columns:
            raise PermanentNodeError(
                f"table {config.table} on {target.label} has no column(s) "
                f"{', '.join(missing)} (add_columns is false)"
            )
        for column in missing:
            _add_column(target, table, column, _column_type(row.get(column) for row in rows))
            added.append(column)
        table = _reflect(target.engine, schema, name)
        assert table is not None
    if key and not _has_unique(target.engine, schema, name, key):
        if not config.create_table:
            raise PermanentNodeError(
                f"table {config.table} on {target.label} has no unique constraint on "
                f"({', '.join(key)}); upsert needs one (or create_table: true to add it)"
            )
        _add_unique_index(target, table, key)
    return table, created, added


def _split_table(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def _reflect(engine: Engine, schema: str | None, name: str) -> Table | None:
    from sqlalchemy import MetaData, Table, inspect

    with engine.connect() as conn:
        if not inspect(conn).has_table(name, schema=schema):
            return None
        return Table(name, MetaData(), schema=schema, autoload_with=conn)


def _column_type(values: Iterable[Any]) -> TypeEngine[Any]:
    """The column type for a key's values (the mapping in the module docstring)."""
    from sqlalchemy import JSON, BigInteger, Boolean, Double, Text
    from sqlalchemy.dialects.postgresql import JSONB

    present = [v for v in values if v is not None]
    if not present:
        return Text()
    if all(isinstance(v, bool) for v in present):
        return Boolean()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return BigInteger()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return Double()
    if all(isinstance(v, dict | list) for v in present):
        return JSON().with_variant(JSONB(), "postgresql")
    return Text()


def _add_column(target: _Target, table: Table, column: str, type_: TypeEngine[Any]) -> None:
    from sqlalchemy import Column, MetaData, Table, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.schema import CreateColumn

    new = Column(column, type_)
    Table(table.name, MetaData(), new, schema=table.schema)  # a column compiles inside a table
    dialect = target.engine.dialect
    statement = (
        f"ALTER TABLE {dialect.identifier_preparer.format_table(table)} "
        f"ADD COLUMN {CreateColumn(new).compile(dialect=dialect)}"
    )
    try:
        with target.engine.begin() as conn:
            conn.execute(text(statement))
    except DBAPIError:
        # A concurrent node may have added the same column; only fail if it is still missing.
        reflected = _reflect(target.engine, table.schema, table.name)
        if reflected is None or column not in reflected.c:
            raise


def _has_unique(engine: Engine, schema: str | None, name: str, key: list[str]) -> bool:
    from sqlalchemy import inspect

    wanted = set(key)
    with engine.connect() as conn:
        inspector = inspect(conn)
        candidates = [inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]]
        candidates += [u["column_names"] for u in inspector.get_unique_constraints(name, schema)]
        candidates += [
            [c for c in i["column_names"] if c is not None]
            for i in inspector.get_indexes(name, schema=schema)
            if i["unique"]
        ]
    return any(set(columns) == wanted for columns in candidates)


def _add_unique_index(target: _Target, table: Table, key: list[str]) -> None:
    from sqlalchemy import Index
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.schema import CreateIndex

    index = Index(
        f"uq_{table.name}_{'_'.join(key)}"[:_MAX_IDENTIFIER],
        *(table.c[k] for k in key),
        unique=True,
    )
    try:
        with target.engine.begin() as conn:
            conn.execute(CreateIndex(index, if_not_exists=True))
    except IntegrityError as e:
        raise PermanentNodeError(
            f"table {table.fullname} on {target.label} already holds rows with the same "
            f"({', '.join(key)}), so it cannot get the unique index upsert needs"
        ) from e


def _last_per_key(rows: list[dict[str, Any]], key: list[str]) -> list[dict[str, Any]]:
    """One row per key, the last one winning (one INSERT cannot update a row twice)."""
    by_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_key[json.dumps([row[k] for k in key], sort_keys=True, default=str)] = row
    return list(by_key.values())


def _groups(rows: list[dict[str, Any]]) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """Rows grouped by their set of keys, so omitted keys keep the column default."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return [(list(columns), group) for columns, group in groups.items()]


def _bind_value(table: Table, column: str, value: Any) -> Any:
    from sqlalchemy import JSON

    if isinstance(value, dict | list) and not isinstance(table.c[column].type, JSON):
        return json.dumps(value, ensure_ascii=False)
    return value


def _upsert_statement(conn: Connection, table: Table, key: list[str], columns: list[str]) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        raise PermanentNodeError(f"database.upsert supports PostgreSQL and SQLite, not {dialect}")
    statement = insert(table)
    updates = [c for c in columns if c not in key]
    if not updates:
        return statement.on_conflict_do_nothing(index_elements=key)
    return statement.on_conflict_do_update(
        index_elements=key, set_={c: statement.excluded[c] for c in updates}
    )


# --- querying ---------------------------------------------------------------------------------


def _query(target: _Target, config: DatabaseQueryConfig) -> dict[str, Any]:
    from sqlalchemy import bindparam, text

    statement = text(config.sql)
    declared = set(statement.compile().params)
    expanding = [k for k, v in config.params.items() if isinstance(v, list) and k in declared]
    if expanding:
        statement = statement.bindparams(*(bindparam(k, expanding=True) for k in expanding))
    params = {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v
        for k, v in config.params.items()
    }
    with target.engine.begin() as conn:
        result = conn.execute(statement, params)
        if not result.returns_rows:
            return {"rows": [], "row_count": result.rowcount, "columns": [], "truncated": False}
        columns = list(result.keys())
        fetched = result.fetchmany(config.max_rows + 1)
        result.close()
    truncated = len(fetched) > config.max_rows
    rows = [
        {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
        for row in fetched[: config.max_rows]
    ]
    return {"rows": rows, "row_count": len(rows), "columns": columns, "truncated": truncated}


def _jsonable(value: Any) -> Any:
    """A database value as JSON: exact numbers as numbers, times as ISO text, bytes as base64."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# --- errors -----------------------------------------------------------------------------------


def _guarded(target: _Target, action: str, work: Callable[[], T]) -> T:
    """Run ``work``, mapping SQLAlchemy and driver errors onto node errors that name the
    action and the (masked) connection."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    try:
        return work()
    except NodeError:
        raise
    except DBAPIError as e:
        raise _classify(e, f"{action} failed on {target.label}", target.password) from e
    except PoolTimeout as e:
        message = _scrub(f"{action} failed on {target.label}: {e}", target.password)
        raise RetryableNodeError(message) from e
    except SQLAlchemyError as e:
        # A StatementError's text lists the SQL and its parameters: report only its cause.
        cause = getattr(e, "orig", None) or e
        message = _scrub(f"{action} failed on {target.label}: {cause}", target.password)
        raise PermanentNodeError(message) from e


def _classify(error: Any, where: str, password: str | None) -> NodeError:
    """Retryable for causes that may pass (refused, timeouts, deadlocks, locks), else permanent."""
    from sqlalchemy.exc import OperationalError

    original = error.orig
    cause = " ".join(str(original if original is not None else error).split())[:600]
    message = _scrub(f"{where}: {cause}", password)
    sqlstate = getattr(original, "sqlstate", None)
    sqlite_name = getattr(original, "sqlite_errorname", None)
    if error.connection_invalidated:
        retryable = True
    elif sqlstate:
        retryable = sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES or sqlstate in _RETRYABLE_SQLSTATES
    elif sqlite_name:
        retryable = sqlite_name in _RETRYABLE_SQLITE
    elif isinstance(error, OperationalError):
        # No SQLSTATE: the connection itself failed (refused, timed out, or refused the login).
        lowered = cause.lower()
        retryable = not any(text in lowered for text in _PERMANENT_CONNECT_TEXT)
    else:
        retryable = False
    return RetryableNodeError(message) if retryable else PermanentNodeError(message)


def _scrub(message: str, password: str | None) -> str:
    return message.replace(password, "***") if password else message
