"""The example workflows run for real: the inventory reorder alerts (code actions over a CSV,
a webhook notification, purchase-order records), document triage (summarise and classify in
parallel, then file the digest) and parse-and-post."""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings
from activities.settings import AISettings
from starter import client as api
from tests.servers.openai_stub import OpenAIStub
from tests.servers.webhook import WebhookServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOCUMENTS = EXAMPLES / "documents"


@pytest_asyncio.fixture(scope="module")
async def examples_worker(
    temporal_env: WorkflowEnvironment,
    openai_stub: OpenAIStub,
    tmp_path_factory: object,
) -> AsyncIterator[tuple[str, WorkerSettings]]:
    """A worker whose AI nodes talk to the stub, with its own data folder."""
    from worker import running_worker

    home = tmp_path_factory.mktemp("examples-home")  # type: ignore[attr-defined]
    queue = f"examples-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(
        home=home,
        task_queue=queue,
        ai=AISettings(base_url=openai_stub.base_url, api_key="test", model="stub-model"),
        # The sample documents and the webhook, as `tideflow dev` allows them.
        file_roots=[EXAMPLES],
        allow_private_networks=True,
    )
    async with running_worker(temporal_env.client, settings):
        yield queue, settings


async def test_inventory_reorder_alerts_notify_and_record_purchase_orders(
    temporal_env: WorkflowEnvironment,
    examples_worker: tuple[str, WorkerSettings],
    webhook_server: WebhookServer,
) -> None:
    queue, settings = examples_worker
    definition = api.load(EXAMPLES / "inventory-reorder.yaml")
    inputs = {
        "stock_levels": str(DOCUMENTS / "stock-levels.csv"),
        "notify_url": webhook_server.url("/reorder"),
    }
    for _ in range(2):  # a second run updates the same purchase orders (upsert by sku)
        report = await api.run(temporal_env.client, definition, inputs, task_queue=queue)
        assert report.status == "completed", report.error
        assert report.outputs == {"checked": 8, "reorder": ["WID-1002", "GSK-3100", "LUB-5005"]}

    alerts = webhook_server.requests_to("/reorder")
    assert len(alerts) == 2
    alert = alerts[0].json()
    assert alert["text"] == "3 item(s) below their reorder level"
    assert [i["order_quantity"] for i in alert["items"]] == [125, 108, 22]
    with sqlite3.connect(settings.home / "tideflow.db") as db:
        rows = db.execute(
            "SELECT sku, quantity, supplier, requested_by FROM purchase_orders ORDER BY sku"
        ).fetchall()
    assert [(sku, qty, supplier) for sku, qty, supplier, _ in rows] == [
        ("GSK-3100", 108, "supply@sealco.example.org"),
        ("LUB-5005", 22, "sales@lubritech.example.com"),
        ("WID-1002", 125, "orders@widgetworks.example.com"),
    ]
    assert {run for *_, run in rows} == {report.workflow_id}  # the second run's upserts


async def test_document_triage_summarises_classifies_and_files_the_digest(
    temporal_env: WorkflowEnvironment,
    examples_worker: tuple[str, WorkerSettings],
    openai_stub: OpenAIStub,
) -> None:
    queue, settings = examples_worker
    openai_stub.reset()
    # The label's token is 90% likely (10% "invoice"): the node's confidence is 0.9.
    openai_stub.reply(
        json_content={"label": "article"},
        when='"classification"',
        logprobs=[
            ('{"', 0.0, {}),
            ("label", 0.0, {}),
            ('":', 0.0, {}),
            (' "', 0.0, {}),
            ("article", math.log(0.9), {"invoice": math.log(0.1)}),
            ('"}', 0.0, {}),
        ],
    )
    openai_stub.reply("Warehouses cut stock-outs by reordering earlier.", when="Summarize")
    definition = api.load(EXAMPLES / "document-triage.yaml")
    report = await api.run(
        temporal_env.client,
        definition,
        {"document": str(DOCUMENTS / "article.md")},
        task_queue=queue,
    )
    assert report.status == "completed", report.error
    assert report.outputs["label"] == "article"
    assert report.outputs["summary"] == "Warehouses cut stock-outs by reordering earlier."
    assert report.usage.ai_tokens == 30  # the stub's 15 tokens per call, summed by the report
    stored = settings.resolved_file_root / "triage" / "article" / f"{report.workflow_id}.json"
    assert json.loads(stored.read_text()) == {
        "document": str(DOCUMENTS / "article.md"),
        "label": "article",
        "confidence": 0.9,
        "summary": "Warehouses cut stock-outs by reordering earlier.",
    }
    article = (DOCUMENTS / "article.md").read_text()
    sent = [r["messages"][1]["content"] for r in openai_stub.requests]
    assert sent == [article, article]  # both nodes read the parsed text, in either order


async def test_parse_and_post_sends_the_digest(
    temporal_env: WorkflowEnvironment,
    examples_worker: tuple[str, WorkerSettings],
    webhook_server: WebhookServer,
) -> None:
    queue, _ = examples_worker
    definition = api.load(EXAMPLES / "parse-and-post.yaml")
    inputs = {
        "document": str(DOCUMENTS / "invoice-acme.pdf"),
        "endpoint": webhook_server.url("/hook"),
    }
    report = await api.run(temporal_env.client, definition, inputs, task_queue=queue)
    assert report.status == "completed", report.error
    (posted,) = webhook_server.requests_to("/hook")
    digest = posted.json()
    assert digest["mime_type"] == "application/pdf"
    assert digest["pages"] == 1
    assert digest["first_line"] == "Acme Corporation"
    assert report.outputs == {"pages": 1, "status_code": 200}
