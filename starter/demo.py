"""``tideflow demo``: the seed's invoice-processing workflow on three sample invoices.

Starts the embedded Temporal server (kept running afterwards, so the Web UI links work) and a
worker in this process, runs ``examples/invoice-processing.yaml`` unchanged on a PDF, a DOCX and
(when tesseract is installed) a scanned PNG — parse → extract with the AI family (the local
model unless ``OPENAI_*`` is set) → store in the SQLite ``default_database`` — and prints what
was extracted next to the invoices' true values.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from activities import WorkerSettings
from interpreter.report import RunReport
from starter import client as tideflow
from starter.embedded import embedded_temporal

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "invoice-processing.yaml"
DOCUMENTS = ROOT / "examples" / "documents"
FIELDS = ("invoice_number", "date", "vendor_name", "total_amount")


def sample_invoices() -> list[Path]:
    """The sample invoices to run: the scan only when OCR is available."""
    names = ["invoice-acme.pdf", "invoice-globex.docx"]
    if shutil.which("tesseract"):
        names.append("invoice-initech-scan.png")
    return [DOCUMENTS / name for name in names]


async def run_demo() -> int:
    """Run the demo; 0 when every run completed."""
    # Wide enough for the table even when the output is a file or a CI log (80 by default).
    console = Console(width=None if Console().is_terminal else 150)
    # The sample invoices live in the examples folder, which a development worker may read.
    settings = WorkerSettings.from_env().for_development()
    definition = tideflow.load(EXAMPLE)
    invoices = sample_invoices()
    if not shutil.which("tesseract"):
        console.print("[yellow]tesseract is not installed: the scanned invoice is left out[/]")
    async with embedded_temporal(settings) as client:
        runs = [await client.start(definition, {"document": str(path)}) for path in invoices]
        console.print(
            f"started {len(runs)} runs of [bold]{escape(definition.display_name or '')}[/] "
            f"{escape(definition.display_version)}; extracting with the AI family…"
        )
        reports = await asyncio.gather(*(run.report() for run in runs))
    expected = _expected()
    console.print(_table(invoices, reports, expected))
    for report in reports:
        if report.status != "completed":
            console.print(
                Text.assemble((f"{report.workflow_id} failed: ", "red"), report.error or "")
            )
    tokens = sum(r.usage.ai_tokens for r in reports)
    provider = _provider(reports)
    console.print(Text(f"AI: {provider} · {tokens} tokens in all"), soft_wrap=True)
    database = settings.home.resolve() / "tideflow.db"
    rows = _rows(database)
    if rows is not None:
        console.print(Text(f"stored in {database} (table invoices: {rows} rows)"), soft_wrap=True)
    for report in reports:
        link = tideflow.web_ui_url(report.workflow_id, report.run_id)
        console.print(Text(f"Web UI: {link}"), soft_wrap=True)
    console.print(
        "The embedded Temporal server keeps running so these links work; "
        "stop it with `tideflow server --stop`."
    )
    return 0 if all(r.status == "completed" for r in reports) else 1


def _table(invoices: list[Path], reports: list[RunReport], expected: dict[str, Any]) -> Table:
    table = Table(title="Extracted invoice fields (expected value in brackets when different)")
    table.add_column("document")
    for field in FIELDS:
        table.add_column(field)
    table.add_column("line items", justify="right")
    table.add_column("checks")
    table.add_column("right", justify="right")
    for path, report in zip(invoices, reports, strict=True):
        node = report.nodes.get("extract_invoice_data")
        entities = (node.output or {}).get("entities", {}) if node and node.output else {}
        truth = expected.get(path.name, {})
        cells: list[Text] = []
        right = 0
        for field in FIELDS:
            got = entities.get(field)
            want = truth.get(field)
            if _same(got, want):
                right += 1
                cells.append(Text(_text(got), style="green"))
            else:
                cells.append(Text.assemble((_text(got), "red"), " ", (f"({_text(want)})", "dim")))
        items = entities.get("line_items")
        count = len(items) if isinstance(items, list) else 0
        name = Text(path.name)
        if report.status != "completed":
            name.append(f" {report.status}", style="red")
        table.add_row(name, *cells, str(count), _checks(node), f"{right}/{len(FIELDS)}")
    return table


def _checks(node: Any) -> Text:
    """What the extraction's checks said: the fields that need review, or that all held."""
    output = node.output if node is not None and isinstance(node.output, dict) else {}
    review = output.get("needs_review")
    if review is None:
        return Text("—")
    if review:
        return Text("review: " + ", ".join(review), style="yellow")
    return Text("ok", style="green")


def _same(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return bool(got == want)
    try:
        return abs(float(str(got).replace(",", "").lstrip("$€£")) - float(want)) < 0.005
    except ValueError:
        return str(got).strip().lower() == str(want).strip().lower()


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def _expected() -> dict[str, Any]:
    try:
        loaded = json.loads((DOCUMENTS / "expected.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _provider(reports: list[RunReport]) -> str:
    for report in reports:
        node = report.nodes.get("extract_invoice_data")
        if node and isinstance(node.output, dict) and node.output.get("provider"):
            return f"{node.output['provider']} ({node.output.get('model')})"
    return "no AI output"


def _rows(database: Path) -> int | None:
    if not database.exists():
        return None
    try:
        with sqlite3.connect(database) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM invoices").fetchone()[0])
    except sqlite3.Error:
        return None
