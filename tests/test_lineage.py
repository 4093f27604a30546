"""Lineage through a real run on the dev server: a document parsed, a row written to the
database with its provenance columns, an object written to S3 (moto) with its provenance
metadata, all traced back to the document with ``tideflow lineage``."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import uuid
from contextlib import redirect_stdout

from activities import WorkerSettings
from starter import lineage
from starter.cli import main as cli_main
from starter.client import TideflowClient
from tests.servers.s3 import S3Server
from tests.servers.tideflow_worker import Tideflow

LEDGER = """
name: Ledger
version: "2.1"
inputs:
  document: {type: string, required: true}
  bucket: {type: string, required: true}
  table: {type: string, required: true}
tasks:
  - id: parse
    type: documents.parse
    config: {source: "${{ inputs.document }}"}
  - id: book
    type: database.insert
    depends_on: [parse]
    config:
      table: "${{ inputs.table }}"
      record: {characters: "${{ size(nodes.parse.output.text) }}"}
      provenance: true
  - id: archive
    type: storage.write
    depends_on: [parse]
    config:
      uri: "s3://${{ inputs.bucket }}/ledger/${{ inputs.table }}.json"
      content: {text: "${{ nodes.parse.output.text }}"}
"""


def _cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(list(args))
    return code, out.getvalue()


async def test_records_are_traced_back_to_their_document(
    tideflow: Tideflow, s3_server: S3Server
) -> None:
    folder = tideflow.home / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    document = folder / "invoice-7.txt"
    document.write_text("Invoice 7 from Acme, 120 EUR\n")
    digest = hashlib.sha256(document.read_bytes()).hexdigest()
    bucket = s3_server.new_bucket("ledger")
    table = f"ledger_{uuid.uuid4().hex[:8]}"
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue, origin="cli")
    run = await client.start(
        tideflow.load(LEDGER), {"document": str(document), "bucket": bucket, "table": table}
    )
    report = await run.report()
    assert report.status == "completed", report.error

    # The S3 object carries its provenance as metadata.
    head = s3_server.client().head_object(Bucket=bucket, Key=f"ledger/{table}.json")
    assert head["Metadata"] == {
        "tideflow-workflow-id": run.id,
        "tideflow-run-id": report.run_id,
        "tideflow-definition": "Ledger",
        "tideflow-version": "2.1",
        "tideflow-documents": digest,
        "tideflow-node": "archive",
    }
    # The row carries it as columns (provenance: true).
    settings = WorkerSettings(home=tideflow.home)
    database = settings.database_url("default_database")
    assert database is not None
    with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
        connection.row_factory = sqlite3.Row
        [row] = connection.execute(f"SELECT * FROM {table}").fetchall()
    assert dict(row) == {
        "characters": len(document.read_text()),
        "tideflow_workflow_id": run.id,
        "tideflow_run_id": report.run_id,
        "tideflow_node": "book",
        "tideflow_definition": "Ledger",
        "tideflow_version": "2.1",
        "tideflow_documents": digest,
    }

    # The lineage store traces both records back to the document, and the run to both.
    [traced] = lineage.of_document(digest)
    assert (traced.workflow_id, traced.definition, traced.version) == (run.id, "Ledger", "2.1")
    assert sorted((r.node, r.node_type, r.target) for r in traced.records) == [
        ("archive", "storage.write", f"s3://{bucket}/ledger/{table}.json"),
        ("book", "database.insert", f"database:default_database/{table}"),
    ]
    assert all(r.documents == [digest] and r.definition == "Ledger" for r in traced.records)
    assert {(d.node, d.uri) for d in traced.documents} == {
        (None, document.as_uri()),  # the input the run started from (recorded by the client)
        ("parse", str(document)),  # what documents.parse read (recorded by the worker)
    }

    code, printed = _cli("lineage", "--document", str(document))
    assert code == 0
    assert f"document {digest}: 1 run(s)" in printed
    assert f"run {run.id} (Ledger 2.1)" in printed
    assert f"wrote database:default_database/{table} (node book, database.insert, 1 row(s))" in (
        printed
    )
    code, as_json = _cli("lineage", "--run", run.id, "--json")
    assert code == 0
    body = json.loads(as_json)
    assert {r["node"] for r in body["records"]} == {"archive", "book"}
    assert {d["sha256"] for d in body["documents"]} == {digest}
    code, _ = _cli("lineage", "--document", "0" * 64)
    assert code == 1
