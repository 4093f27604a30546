"""Lineage on the worker: what nodes read and write, told to a :class:`LineageRecorder`.

The registry wrapper calls :func:`after_node` once a node succeeded; for the node types that
read documents or write records it tells the worker's recorder (``WorkerResources.lineage``,
set by ``worker.py`` to the store's :class:`starter.lineage.StoreLineage`; None records
nothing):

- ``documents.parse``: the document read (its source, sha256 and size);
- ``database.insert`` / ``database.upsert``: the table written (connection name, or its URL
  with the password masked), the row count, an upsert's key values;
- ``storage.write``: the object written (URI and content sha256).

Each record gets the run's provenance from the recorder: run and node ids, definition name and
version, and the sha256 of the documents the run started from or read. ``storage.write`` also
writes the provenance into an S3 object's metadata (``x-amz-meta-tideflow-*``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from activities._context import NodeContext
    from interpreter.node_io import RunInfo

log = logging.getLogger("tideflow.lineage")


class Provenance(Protocol):
    """Where a run's records come from (see :class:`starter.lineage.Provenance`)."""

    documents: list[str]
    definition: str | None
    version: str | None

    def as_metadata(self) -> dict[str, str]:
        """As object metadata."""
        ...


class LineageRecorder(Protocol):
    """Where a worker records lineage."""

    async def provenance(self, run: RunInfo) -> Provenance:
        """The provenance of the run's records."""
        ...

    async def document_read(
        self, run: RunInfo, node: str, *, uri: str | None, sha256: str, size: int | None
    ) -> None:
        """A document a node read."""
        ...

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
        """Rows or an object a node wrote."""
        ...


def shown_uri(uri: str) -> str:
    """A source URI without credentials or query string (signed URLs, tokens)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.scheme or parts.scheme == "file":
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _connection(name: str) -> str:
    if "://" not in name and not name.startswith("sqlite:"):
        return name
    from sqlalchemy.engine import make_url

    try:
        return make_url(name).render_as_string(hide_password=True)
    except Exception:
        return "<connection URL>"


def _rows(config: Any) -> list[dict[str, Any]]:
    if getattr(config, "records", None) is not None:
        return list(config.records)
    if getattr(config, "record", None) is not None:
        return [config.record]
    return []


async def after_node(node_type: str, config: Any, output: Any, ctx: NodeContext) -> None:
    """Tell the worker's recorder what the node read or wrote (never raises)."""
    recorder: LineageRecorder | None = ctx.resources.lineage
    if recorder is None or not isinstance(output, dict):
        return
    try:
        if node_type == "documents.parse":
            metadata = output.get("metadata") or {}
            digest = metadata.get("sha256")
            if digest:
                await recorder.document_read(
                    ctx.run,
                    ctx.node_id,
                    uri=shown_uri(str(config.source)),
                    sha256=str(digest),
                    size=metadata.get("size_bytes"),
                )
        elif node_type in ("database.insert", "database.upsert"):
            if not output.get("row_count"):
                return
            key = list(getattr(config, "key", None) or [])
            keys = [[row.get(k) for k in key] for row in _rows(config)] if key else None
            await recorder.record_written(
                ctx.run,
                ctx.node_id,
                node_type,
                target=f"database:{_connection(config.connection)}/{output.get('table')}",
                rows=output.get("row_count"),
                keys=keys,
            )
        elif node_type == "storage.write" and output.get("uri"):
            await recorder.record_written(
                ctx.run,
                ctx.node_id,
                node_type,
                target=str(output["uri"]),
                sha256=output.get("sha256"),
            )
    except Exception as e:  # lineage never fails a node
        log.warning("lineage of node %s (%s): %s", ctx.node_id, node_type, e)


async def object_metadata(ctx: NodeContext) -> dict[str, str]:
    """The provenance of what a node writes, as object metadata (empty without a recorder)."""
    recorder: LineageRecorder | None = ctx.resources.lineage
    if recorder is None:
        return {}
    try:
        found = await recorder.provenance(ctx.run)
        return {**found.as_metadata(), "tideflow-node": ctx.node_id}
    except Exception as e:
        log.warning("lineage: provenance of %s: %s", ctx.run.workflow_id, e)
        return {}


PROVENANCE_COLUMNS = (
    "tideflow_workflow_id",
    "tideflow_run_id",
    "tideflow_node",
    "tideflow_definition",
    "tideflow_version",
    "tideflow_documents",
)
"""The columns ``provenance: true`` adds to each row a database node writes."""


async def provenance_columns(ctx: NodeContext) -> dict[str, Any]:
    """The provenance of a row a node writes, one column each (see
    :data:`PROVENANCE_COLUMNS`; the documents are their sha256, comma separated)."""
    recorder: LineageRecorder | None = ctx.resources.lineage
    documents: list[str] = []
    definition = version = None
    if recorder is not None:
        try:
            found: Any = await recorder.provenance(ctx.run)
            documents = list(found.documents)
            definition, version = found.definition, found.version
        except Exception as e:
            log.warning("lineage: provenance of %s: %s", ctx.run.workflow_id, e)
    return dict(
        zip(
            PROVENANCE_COLUMNS,
            (
                ctx.run.workflow_id,
                ctx.run.run_id,
                ctx.node_id,
                definition,
                version,
                ",".join(documents) or None,
            ),
            strict=True,
        )
    )
