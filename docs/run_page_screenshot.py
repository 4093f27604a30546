"""Makes docs/run-page.png: the run page of `tideflow api` for a run still running.

A throwaway Temporal dev server, a worker whose AI nodes answer from the tests' OpenAI-compatible
stub (priced, so tokens and cost show), the API on a local port, and headless Chromium:

    PYTHONPATH=. .venv/bin/python docs/run_page_screenshot.py
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import textwrap
import threading
from pathlib import Path

import uvicorn
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings, registry
from activities.settings import AISettings, ModelPrice
from interpreter import load_string
from starter.api import create_app
from starter.client import TideflowClient, data_converter
from starter.server import SEARCH_ATTRIBUTES, free_port
from tests.servers._quiet_http import QuietHTTPServer
from tests.servers.openai_stub import OpenAIStub, _handler
from tests.servers.temporal import temporal_cli_path
from tests.servers.webhook import WebhookServer

OUT = Path(__file__).resolve().parent / "run-page.png"

DEFINITION = """
name: Invoice Processing
version: "1.4.0"
budget: {cost_usd: 0.50}
inputs:
  document: {type: string, required: true}
  registry: {type: string, required: true}
tasks:
  - {id: parse_document, name: Parse the PDF, type: documents.parse}
  - id: extract_invoice_data
    name: Extract the fields
    type: ai.summarize
    depends_on: [parse_document]
    config: {text: "INVOICE INV-2024-0042 Northwind Supplies 45.00 EUR"}
  - id: classify
    name: Route by type
    type: ai.classify
    depends_on: [parse_document]
    config: {text: "INVOICE INV-2024-0042", labels: [invoice, receipt, contract]}
  - id: check_vendor
    name: Vendor registry
    type: http.request
    depends_on: [parse_document]
    config: {url: "${{ inputs.registry }}"}
    retry: {max_attempts: 3, initial_interval: 200ms}
  - id: review
    name: Finance review
    type: approval
    depends_on: [extract_invoice_data, classify, check_vendor]
    config: {message: Totals above 40 EUR need a look, approvers: [finance]}
  - id: store_results
    name: Store in the ledger
    type: database.insert
    depends_on: [review]
    config: {table: invoices, record: "${{ nodes.extract_invoice_data.output }}"}
  - id: notify_ops
    name: Tell ops
    type: notify.slack
    depends_on: [store_results]
    config: {text: "Invoice stored"}
"""


async def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "apt-get install -y chromium"
    stub = OpenAIStub()
    http = QuietHTTPServer(("127.0.0.1", 0), _handler(stub))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    stub.base_url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    stub.reply(
        "Northwind billed 45 EUR for paper.",
        prompt_tokens=1850,
        completion_tokens=240,
        when="Northwind Supplies",
    )
    stub.reply(
        json_content={"label": "invoice", "confidence": 0.97},
        prompt_tokens=420,
        completion_tokens=12,
        when="receipt",
    )
    from worker import running_worker

    vendors = WebhookServer()
    vendors.start()
    vendors.respond("/vendors/northwind", status=503, text="registry warming up")

    with tempfile.TemporaryDirectory() as home:
        settings = WorkerSettings(
            home=Path(home),
            allow_private_networks=True,
            task_queue="screenshot",
            ai=AISettings(
                base_url=stub.base_url,
                api_key="stub",
                model="gpt-4o-mini",
                prices={"gpt-4o-mini": ModelPrice(input_per_million=2.5, output_per_million=10)},
            ),
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli_path(),
            search_attributes=list(SEARCH_ATTRIBUTES),
            data_converter=data_converter(settings),
        )
        client = TideflowClient(env.client, task_queue="screenshot")
        port = free_port()
        app = create_app(Path(home), client=client, settings=settings, triggers=False)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        async with running_worker(env.client, settings):
            definition = load_string(textwrap.dedent(DEFINITION), "invoice.yaml", registry)
            document = (
                Path(__file__).resolve().parent.parent / "examples/documents/invoice-acme.pdf"
            )
            inputs = {"document": document.as_uri(), "registry": vendors.url("/vendors/northwind")}
            settings.file_roots.append(document.parent)
            run = await client.start(definition, inputs, workflow_id="invoice-processing-7f3a9c21")
            while (await run.state()).nodes.get("review") != "waiting":
                assert (await run.ended()) is None, "the run ended before its review"
                await asyncio.sleep(0.2)
            await asyncio.to_thread(
                subprocess.run,
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--no-first-run",
                    f"--user-data-dir={home}/chromium",
                    "--virtual-time-budget=4000",
                    f"--screenshot={OUT}",
                    "--window-size=1560,600",
                    f"http://127.0.0.1:{port}/ui/runs/{run.id}",
                ],
                check=True,
                capture_output=True,
            )
            await run.cancel()
        server.should_exit = True
        thread.join(10)
        await env.shutdown()
    http.shutdown()
    vendors.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
