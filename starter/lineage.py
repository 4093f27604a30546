"""Data lineage: which documents each run read and which records it wrote, with provenance.

Three tables of the control-plane store (:mod:`starter.store`):

- ``lineage_runs``: which definition (name, version, slug) a run runs. Written by the client
  when it starts a run (just before, so the run's first node finds it) and by the worker when a
  run starts there (child runs, runs started by other Temporal clients).
- ``lineage_documents``: the documents a run started from or read, by sha256. Written by the
  client for inputs naming local files (and documents it is told about: API uploads) and by the
  worker for each document ``documents.parse`` reads (local, S3 or HTTP).
- ``lineage_records``: every write of a ``database.insert``/``database.upsert`` or
  ``storage.write`` node: target (table or URI), rows, keys, content hash, and its provenance —
  run id, node id, definition name and version, and the sha256 of the documents the run had
  started from or read by then.

``tideflow lineage --document FILE|SHA256`` lists the runs that read a document and the records
they wrote; ``tideflow lineage --run ID`` lists the documents a run read and the records it
wrote. With workers on several machines, point every process at one store
(``TIDEFLOW_STORE_URL``). Recording never fails a run or a start: errors are logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, insert, select

from starter.store import metadata, open_store

if TYPE_CHECKING:
    from interpreter import Definition
    from interpreter.node_io import RunInfo

log = logging.getLogger("tideflow.lineage")

runs_table = Table(
    "lineage_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(500), nullable=False, index=True),
    Column("run_id", String(100), nullable=True),
    Column("definition", String(300), nullable=True),
    Column("version", String(100), nullable=True),
    Column("slug", String(300), nullable=True),
    Column("origin", String(40), nullable=True),
    Column("at", DateTime(), nullable=False),
)

documents_table = Table(
    "lineage_documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(500), nullable=False, index=True),
    Column("run_id", String(100), nullable=True),
    # The node that read it; None for a document the run started from (an input).
    Column("node", String(300), nullable=True),
    Column("uri", Text, nullable=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", Integer, nullable=True),
    Column("at", DateTime(), nullable=False),
)

records_table = Table(
    "lineage_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(500), nullable=False, index=True),
    Column("run_id", String(100), nullable=True),
    Column("node", String(300), nullable=False),
    Column("node_type", String(100), nullable=False),
    Column("definition", String(300), nullable=True),
    Column("version", String(100), nullable=True),
    # database:<connection>/<table>, or the written object's URI.
    Column("target", Text, nullable=False),
    Column("rows", Integer, nullable=True),
    # JSON: the key values an upsert wrote (at most 1,000).
    Column("keys", Text, nullable=True),
    # The written object's content hash (storage).
    Column("sha256", String(64), nullable=True),
    # JSON list of the sha256 of the run's documents.
    Column("documents", Text, nullable=False),
    Column("at", DateTime(), nullable=False),
)

_MAX_KEYS = 1000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Provenance:
    """Where a run's records come from: its definition and its documents."""

    workflow_id: str
    run_id: str | None = None
    definition: str | None = None
    version: str | None = None
    documents: list[str] = field(default_factory=list)
    """sha256 of each document the run started from or read, in the order first seen."""

    def as_metadata(self) -> dict[str, str]:
        """As object metadata (S3 user metadata: ASCII strings)."""
        out = {"tideflow-workflow-id": self.workflow_id}
        if self.run_id:
            out["tideflow-run-id"] = self.run_id
        if self.definition:
            out["tideflow-definition"] = self.definition.encode("ascii", "replace").decode()
        if self.version:
            out["tideflow-version"] = self.version.encode("ascii", "replace").decode()
        if self.documents:
            out["tideflow-documents"] = ",".join(self.documents)
        return out


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _local_path(value: Any) -> Path | None:
    """The existing local file an input value names (a path or a file:// URI), if any."""
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        return None
    if value.startswith("file://"):
        parsed = urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            return None
        candidate = Path(url2pathname(unquote(parsed.path)))
    elif "://" in value:
        return None
    else:
        candidate = Path(value).expanduser()
    try:
        return candidate.resolve() if candidate.is_file() else None
    except (OSError, ValueError):
        return None


# --- recording --------------------------------------------------------------------------------


def record_run(
    workflow_id: str,
    run_id: str | None,
    *,
    definition: str | None,
    version: str | None,
    slug: str | None = None,
    origin: str | None = None,
    store_url: str | None = None,
) -> None:
    """Record that a run runs a definition's version."""
    _insert(
        runs_table,
        [
            {
                "workflow_id": workflow_id,
                "run_id": run_id,
                "definition": definition,
                "version": version,
                "slug": slug,
                "origin": origin,
                "at": _now(),
            }
        ],
        store_url,
    )


def record_document(
    workflow_id: str,
    run_id: str | None,
    *,
    sha256: str,
    uri: str | None,
    size: int | None = None,
    node: str | None = None,
    store_url: str | None = None,
) -> None:
    """Record a document a run started from (``node`` None) or a node read."""
    _insert(
        documents_table,
        [
            {
                "workflow_id": workflow_id,
                "run_id": run_id,
                "node": node,
                "uri": uri,
                "sha256": sha256,
                "size": size,
                "at": _now(),
            }
        ],
        store_url,
    )


def record_start(
    *,
    workflow_id: str,
    run_id: str | None,
    definition: Definition,
    inputs: Mapping[str, Any],
    documents: Iterable[str] = (),
    origin: str | None = None,
    store_url: str | None = None,
) -> None:
    """Record a run about to start: its definition, and the sha256 of every local file its
    inputs name (paths or file:// URIs) and of ``documents``."""
    record_run(
        workflow_id,
        run_id,
        definition=definition.display_name,
        version=definition.display_version,
        slug=definition.slug,
        origin=origin,
        store_url=store_url,
    )
    seen: set[Path] = set()
    for value in [*inputs.values(), *documents]:
        path = _local_path(value)
        if path is None or path in seen:
            continue
        seen.add(path)
        try:
            digest, size = sha256_file(path)
        except OSError as e:
            log.warning("lineage: cannot read %s: %s", path, e)
            continue
        record_document(
            workflow_id, run_id, sha256=digest, uri=path.as_uri(), size=size, store_url=store_url
        )


async def record_start_async(**fields: Any) -> None:
    """:func:`record_start` from async code (hashing and writing run in a thread)."""
    await asyncio.to_thread(record_start, **fields)


def record_write(
    provenance: Provenance,
    *,
    node: str,
    node_type: str,
    target: str,
    rows: int | None = None,
    keys: list[Any] | None = None,
    sha256: str | None = None,
    store_url: str | None = None,
) -> None:
    """Record a record (rows of a table, or an object) a node wrote, with its provenance."""
    _insert(
        records_table,
        [
            {
                "workflow_id": provenance.workflow_id,
                "run_id": provenance.run_id,
                "node": node,
                "node_type": node_type,
                "definition": provenance.definition,
                "version": provenance.version,
                "target": target,
                "rows": rows,
                "keys": json.dumps(keys[:_MAX_KEYS], default=str) if keys else None,
                "sha256": sha256,
                "documents": json.dumps(provenance.documents),
                "at": _now(),
            }
        ],
        store_url,
    )


def _insert(table: Table, rows: list[dict[str, Any]], store_url: str | None) -> None:
    try:
        with open_store(store_url).begin() as connection:
            connection.execute(insert(table), rows)
    except Exception as e:  # lineage must never fail a run or a start
        log.warning("lineage: could not record in %s: %s", table.name, e)


# --- reading ----------------------------------------------------------------------------------


def _lineage_of(workflow_id: str) -> list[str]:
    """The run's own id and those of the runs it may be a child of (child runs are named
    ``<parent>-<label>``), closest first: a foreach batch's writes carry its parent's
    documents. (A run whose id happens to be such a prefix of another's counts too.)"""
    ids = [workflow_id]
    position = workflow_id.rfind("-")
    while position > 0:
        ids.append(workflow_id[:position])
        position = workflow_id.rfind("-", 0, position)
    return ids


def provenance(
    workflow_id: str, run_id: str | None = None, *, store_url: str | None = None
) -> Provenance:
    """The provenance of a run's records: its definition (recorded at its start, else the
    closest parent's) and the documents it or its parents started from or read."""
    candidates = _lineage_of(workflow_id)
    engine = open_store(store_url)
    with engine.connect() as connection:
        runs = connection.execute(
            select(runs_table)
            .where(runs_table.c.workflow_id.in_(candidates))
            .order_by(runs_table.c.id.desc())
        ).all()
        documents = connection.execute(
            select(documents_table.c.sha256, documents_table.c.workflow_id)
            .where(documents_table.c.workflow_id.in_(candidates))
            .order_by(documents_table.c.id)
        ).all()
    rank = {wid: index for index, wid in enumerate(candidates)}
    chosen = min(runs, key=lambda row: (rank[row.workflow_id], -row.id), default=None)
    shas = list(dict.fromkeys(row.sha256 for row in documents))
    return Provenance(
        workflow_id=workflow_id,
        run_id=run_id or (chosen.run_id if chosen and chosen.workflow_id == workflow_id else None),
        definition=chosen.definition if chosen else None,
        version=chosen.version if chosen else None,
        documents=shas,
    )


@dataclass(frozen=True)
class DocumentRead:
    """A document a run started from or read."""

    workflow_id: str
    run_id: str | None
    node: str | None
    uri: str | None
    sha256: str
    size: int | None
    at: dt.datetime


@dataclass(frozen=True)
class RecordWritten:
    """Rows or an object a node wrote, with its provenance."""

    workflow_id: str
    run_id: str | None
    node: str
    node_type: str
    definition: str | None
    version: str | None
    target: str
    rows: int | None
    keys: list[Any] | None
    sha256: str | None
    documents: list[str]
    at: dt.datetime


@dataclass(frozen=True)
class RunLineage:
    """What one run read and wrote."""

    workflow_id: str
    definition: str | None
    version: str | None
    documents: list[DocumentRead]
    records: list[RecordWritten]


def _document(row: Any) -> DocumentRead:
    return DocumentRead(
        workflow_id=row.workflow_id,
        run_id=row.run_id,
        node=row.node,
        uri=row.uri,
        sha256=row.sha256,
        size=row.size,
        at=row.at.replace(tzinfo=dt.UTC),
    )


def _record(row: Any) -> RecordWritten:
    return RecordWritten(
        workflow_id=row.workflow_id,
        run_id=row.run_id,
        node=row.node,
        node_type=row.node_type,
        definition=row.definition,
        version=row.version,
        target=row.target,
        rows=row.rows,
        keys=json.loads(row.keys) if row.keys else None,
        sha256=row.sha256,
        documents=json.loads(row.documents or "[]"),
        at=row.at.replace(tzinfo=dt.UTC),
    )


def of_run(workflow_id: str, *, store_url: str | None = None) -> RunLineage:
    """The documents a run (and its child runs) read and the records it wrote."""
    with open_store(store_url).connect() as connection:
        runs = connection.execute(
            select(runs_table)
            .where(runs_table.c.workflow_id == workflow_id)
            .order_by(runs_table.c.id.desc())
        ).all()
        children = f"{workflow_id}-%"
        documents = connection.execute(
            select(documents_table)
            .where(
                (documents_table.c.workflow_id == workflow_id)
                | documents_table.c.workflow_id.like(children)
            )
            .order_by(documents_table.c.id)
        ).all()
        records = connection.execute(
            select(records_table)
            .where(
                (records_table.c.workflow_id == workflow_id)
                | records_table.c.workflow_id.like(children)
            )
            .order_by(records_table.c.id)
        ).all()
    run = runs[0] if runs else None
    return RunLineage(
        workflow_id=workflow_id,
        definition=run.definition if run else None,
        version=run.version if run else None,
        documents=[_document(row) for row in documents],
        records=[_record(row) for row in records],
    )


def of_document(sha256: str, *, store_url: str | None = None) -> list[RunLineage]:
    """Every run that started from or read the document with this sha256, with the records
    that carry it in their provenance."""
    with open_store(store_url).connect() as connection:
        read = connection.execute(
            select(documents_table.c.workflow_id)
            .where(documents_table.c.sha256 == sha256.lower())
            .order_by(documents_table.c.id)
        ).all()
    out = []
    for workflow_id in dict.fromkeys(row.workflow_id for row in read):
        lineage = of_run(workflow_id, store_url=store_url)
        records = [r for r in lineage.records if sha256.lower() in r.documents]
        out.append(
            RunLineage(
                workflow_id=workflow_id,
                definition=lineage.definition,
                version=lineage.version,
                documents=[d for d in lineage.documents if d.sha256 == sha256.lower()],
                records=records,
            )
        )
    return out


class StoreLineage:
    """The worker's lineage recorder (:class:`activities.lineage.LineageRecorder`): documents
    that nodes read and records they write go to the store."""

    def __init__(self, store_url: str | None = None) -> None:
        """Record in the store of ``store_url`` (default: ``TIDEFLOW_STORE_URL`` or the data
        folder's)."""
        self._url = store_url

    async def provenance(self, run: RunInfo) -> Provenance:
        """The provenance of a run's records (see :func:`provenance`)."""
        try:
            return await asyncio.to_thread(
                provenance, run.workflow_id, run.run_id, store_url=self._url
            )
        except Exception as e:  # records still get their run and node
            log.warning("lineage: cannot read the provenance of %s: %s", run.workflow_id, e)
            return Provenance(workflow_id=run.workflow_id, run_id=run.run_id)

    async def document_read(
        self, run: RunInfo, node: str, *, uri: str | None, sha256: str, size: int | None
    ) -> None:
        """Record a document a node read."""
        await asyncio.to_thread(
            record_document,
            run.workflow_id,
            run.run_id,
            sha256=sha256,
            uri=uri,
            size=size,
            node=node,
            store_url=self._url,
        )

    async def record_written(
        self,
        run: RunInfo,
        node: str,
        node_type: str,
        *,
        target: str,
        rows: int | None = None,
        keys: list[Any] | None = None,
        sha256: str | None = None,
    ) -> None:
        """Record rows or an object a node wrote, with the run's provenance."""
        found = await self.provenance(run)
        await asyncio.to_thread(
            record_write,
            found,
            node=node,
            node_type=node_type,
            target=target,
            rows=rows,
            keys=keys,
            sha256=sha256,
            store_url=self._url,
        )

    def run_started(self, data: Mapping[str, Any]) -> None:
        """Record a run's definition from the worker's ``run_started`` event."""
        record_run(
            str(data.get("workflow_id", "")),
            data.get("run_id"),
            definition=data.get("definition"),
            version=data.get("version"),
            slug=data.get("slug"),
            store_url=self._url,
        )
