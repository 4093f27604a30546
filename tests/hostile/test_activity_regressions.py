"""Regressions of issue 8's worker-side defects, one test per defect, each reproducing the
audit's finding as written (they failed on the main branch before the fix):

1. documents.parse read any file the worker could (``source: /etc/shadow``).
2. A secret in a URL leaked into the error, the report, Temporal's history and the worker log.
6. Downloads and node outputs had no size cap.
8. http.request and documents.parse reached loopback (also spelled decimal or IPv6-mapped),
   link-local and cloud metadata addresses, and documents.parse followed redirects anywhere.
10. code.python refused ``date.today()``, ``strftime``, ``strptime`` and f-string date formats.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities import WorkerSettings
from activities.settings import DocumentsSettings
from interpreter.report import RunReport
from tests.nodes import run_node
from tests.servers._quiet_http import QuietHTTPServer
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer

# --- 1. documents.parse is confined to the worker's file roots -------------------------------


def _parse_definition(source: str) -> str:
    return f"""
name: Hostile read
tasks:
  - id: read
    type: documents.parse
    config: {{source: {json.dumps(source)}}}
outputs:
  text: ${{{{ nodes.read.output.text }}}}
"""


async def test_1_documents_parse_reads_only_below_the_file_roots(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    outside = tmp_path / "shadow"
    outside.write_text("root:$6$not-for-you:19000:0:99999:7:::\n")
    uploads = tideflow.home / "uploads" / uuid.uuid4().hex
    uploads.mkdir(parents=True)
    (uploads / "link.txt").symlink_to(outside)
    dotdot = uploads / ".." / ".." / ".." / outside.relative_to(tideflow.home.parent)
    attempts = [str(outside), outside.as_uri(), str(uploads / "link.txt"), str(dotdot)]
    for source in attempts:
        report = await tideflow.run(_parse_definition(source))
        assert report.status == "failed", source
        assert "not-for-you" not in report.model_dump_json()
        assert report.error is not None
        assert "outside the worker's file roots" in report.error
        assert "file_roots" in report.error and "TIDEFLOW_FILE_ROOTS" in report.error
        assert "\n" not in report.error

    # A missing file outside the roots is refused with the same words: no probing for files.
    missing = await tideflow.run(_parse_definition(str(tmp_path / "absent")))
    assert missing.error is not None and report.error is not None
    assert missing.error.replace(str(tmp_path / "absent"), "X") == report.error.replace(
        str(dotdot), "X"
    )

    # Below a root (the uploads folder), documents are read as before.
    (uploads / "ok.txt").write_text("uploaded text")
    fine = await tideflow.run(_parse_definition(str(uploads / "ok.txt")))
    assert fine.status == "completed", fine.error
    assert fine.outputs == {"text": "uploaded text"}


# --- 2. secrets never leave the node that used them ------------------------------------------

SECRET = "sk-hostile-7Qz9w2pXr"


class _Records(logging.Handler):
    """Every log record of the process, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def worker_log() -> Iterator[_Records]:
    """The worker's log records (the worker runs in this process), at INFO and above."""
    records = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.INFO)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.setLevel(level)


def _history_text(history_json: str) -> str:
    """A history's JSON plus the decoded bytes of every base64 value in it (payloads)."""
    parts = [history_json]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) >= 8:
            with contextlib.suppress(binascii.Error, ValueError):
                parts.append(base64.b64decode(value, validate=True).decode("utf-8", "replace"))

    walk(json.loads(history_json))
    return "\n".join(parts)


async def _run_and_history(tideflow: Tideflow, text: str) -> tuple[RunReport, str]:
    handle: WorkflowHandle[Any, RunReport] = await tideflow.start(text)
    report = await tideflow.result(handle)
    history = await tideflow.client.get_workflow_handle(handle.id).fetch_history()
    return report, _history_text(history.to_json())


async def test_2_secret_values_are_redacted_from_errors_outputs_history_and_logs(
    tideflow: Tideflow,
    webhook_server: WebhookServer,
    worker_log: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIDEFLOW_SECRET_HOSTILE_KEY", SECRET)
    # http.request: the key in the query string, and a server repeating it in its answer.
    webhook_server.respond("/api", status=404, text=f"no such key: {SECRET}")
    failed, failed_history = await _run_and_history(
        tideflow,
        f"""
name: Secret in a URL
tasks:
  - id: call
    type: http.request
    config: {{url: "{webhook_server.url("/api")}?k=${{{{ secrets.HOSTILE_KEY }}}}"}}
""",
    )
    # documents.parse: the key in the path.
    webhook_server.respond(f"/files/{SECRET}/report.pdf", status=404)
    parse_failed, parse_history = await _run_and_history(
        tideflow,
        f"""
name: Secret in a document URL
tasks:
  - id: fetch
    type: documents.parse
    config: {{source: "{webhook_server.url("/files")}/${{{{ secrets.HOSTILE_KEY }}}}/report.pdf"}}
""",
    )
    # A successful call whose answer echoes the key: the output is redacted too.
    webhook_server.respond("/echo", json={"your_key": SECRET})
    echoed, echoed_history = await _run_and_history(
        tideflow,
        f"""
name: Secret echoed
tasks:
  - id: call
    type: http.request
    config:
      url: "{webhook_server.url("/echo")}"
      headers: {{Authorization: "Bearer ${{{{ secrets.HOSTILE_KEY }}}}"}}
outputs:
  answer: ${{{{ nodes.call.output.json }}}}
""",
    )

    # The secret did reach the servers: it was used, not dropped.
    assert webhook_server.requests_to("/api")[0].query == {"k": [SECRET]}
    assert webhook_server.requests_to("/echo")[0].headers["authorization"] == f"Bearer {SECRET}"
    assert failed.status == "failed" and parse_failed.status == "failed"
    assert failed.error is not None and "[secret HOSTILE_KEY]" in failed.error
    assert parse_failed.error is not None and "[secret HOSTILE_KEY]" in parse_failed.error
    assert echoed.status == "completed", echoed.error
    assert echoed.outputs == {"answer": {"your_key": "[secret HOSTILE_KEY]"}}
    for report in (failed, parse_failed, echoed):
        assert SECRET not in report.model_dump_json()
    for history in (failed_history, parse_history, echoed_history):
        assert SECRET not in history
    assert worker_log.lines, "the worker logged nothing: the capture is broken"
    leaked = [line for line in worker_log.lines if SECRET in line]
    assert not leaked, leaked[0]


async def test_2_heartbeat_details_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from temporalio.testing import ActivityEnvironment

    from activities import NodeContext, Registry, WorkerResources, node_type
    from interpreter.node_io import NodeInput
    from tests.testing_node_types import EchoConfig

    monkeypatch.setenv("TIDEFLOW_SECRET_HOSTILE_KEY", SECRET)
    types = Registry()

    @node_type("hostile.progress", EchoConfig, registry_=types)
    def progress(config: EchoConfig, ctx: NodeContext) -> Any:
        ctx.heartbeat({"working on": config.value})
        return "done"

    seen: list[Any] = []
    environment = ActivityEnvironment()
    environment.on_heartbeat = lambda *details: seen.append(details)
    resources = WorkerResources(WorkerSettings())
    (activity,) = types.activities(resources)
    node = NodeInput(node_id="p", config={"value": "key ${{ secrets.HOSTILE_KEY }}"})
    result = await environment.run(activity, node)
    assert result.output == "done"
    assert seen == [({"working on": "key [secret HOSTILE_KEY]"},)]


# --- 6. downloads and outputs are capped -----------------------------------------------------


@pytest.fixture
def endless_server() -> Iterator[str]:
    """A URL whose body never ends (no Content-Length, chunks until the client hangs up)."""

    class Endless(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(16384):  # 1 GiB at most, should a client never stop
                self.wfile.write(chunk)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/endless.txt"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_6_downloads_and_outputs_stop_at_the_worker_caps(
    endless_server: str, tmp_path: Path
) -> None:
    settings = WorkerSettings(
        home=tmp_path,
        allow_private_networks=True,
        max_download_mb=1,
        max_output_mb=1,
    )
    for node, config in [
        ("http.request", {"url": endless_server}),
        ("documents.parse", {"source": endless_server}),
    ]:
        with pytest.raises(ApplicationError) as caught:
            # Streamed and cut at the cap: an endless body fails fast instead of filling memory.
            await asyncio.wait_for(run_node(node, config, settings=settings), timeout=60)
        assert caught.value.non_retryable, node
        assert "download limit of 1 MB" in caught.value.message
        assert "max_download_mb" in caught.value.message

    files = settings.resolved_file_root
    files.mkdir(parents=True)
    (files / "big.txt").write_bytes(b"y" * (2 * 1024 * 1024))
    for node, config in [
        ("storage.read", {"uri": "file://big.txt"}),
        ("documents.parse", {"source": str(files / "big.txt")}),
    ]:
        with pytest.raises(ApplicationError) as caught:
            await run_node(node, config, settings=settings)
        assert "2 MB, over the worker's download limit of 1 MB" in caught.value.message

    with pytest.raises(ApplicationError) as caught:
        await run_node("code.python", {"code": "return 'z' * 3_000_000"}, settings=settings)
    assert caught.value.non_retryable
    assert "over the worker's limit of 1 MB for a node's output" in caught.value.message
    assert "max_output_mb" in caught.value.message


# --- 8. no SSRF: private, link-local and metadata addresses -----------------------------------


async def test_8_nodes_cannot_reach_loopback_link_local_or_metadata_addresses(
    webhook_server: WebhookServer,
) -> None:
    port = webhook_server.port
    default = WorkerSettings()  # a production worker: private networks not allowed
    for url in [
        f"http://127.0.0.1:{port}/a",
        f"http://2130706433:{port}/b",  # 127.0.0.1 as one decimal number
        f"http://[::ffff:127.0.0.1]:{port}/c",  # IPv4-mapped IPv6
        f"http://localhost:{port}/d",
    ]:
        for node, config in [("http.request", {"url": url}), ("documents.parse", {"source": url})]:
            with pytest.raises(ApplicationError) as caught:
                await run_node(node, config, settings=default)
            assert caught.value.non_retryable, url
            assert "loopback address" in caught.value.message
            assert "allow_private_networks" in caught.value.message
    assert webhook_server.requests == []  # not one request went out

    # Link-local and cloud metadata stay refused even where private networks are allowed.
    allowed = WorkerSettings(
        allow_private_networks=True, documents=DocumentsSettings(fetch_timeout_seconds=3)
    )
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fe80::1]/",
    ]:
        with pytest.raises(ApplicationError) as caught:
            await run_node("http.request", {"url": url, "timeout": 3}, settings=allowed)
        assert caught.value.non_retryable, url
        assert "may never reach" in caught.value.message

    # documents.parse follows redirects, but checks every hop's address again.
    webhook_server.respond(
        "/moved.pdf", status=302, headers={"Location": "http://169.254.169.254/latest/user-data"}
    )
    with pytest.raises(ApplicationError) as caught:
        await run_node(
            "documents.parse", {"source": webhook_server.url("/moved.pdf")}, settings=allowed
        )
    assert caught.value.non_retryable
    assert "169.254.169.254 is a cloud metadata address" in caught.value.message


# --- 10. code.python dates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("t = datetime.date.today()\nreturn (datetime.date.today() - t).days in (0, 1)", True),
        ("return datetime.date(2024, 3, 9).strftime('%d.%m.%Y')", "09.03.2024"),
        ("return datetime.datetime.strptime('2024-03-09 17:30', '%Y-%m-%d %H:%M')", None),
        ("d = datetime.date(2024, 3, 9)\nreturn f'{d:%A %d %B %Y}'", "Saturday 09 March 2024"),
        ("from datetime import date\nreturn date(2024, 3, 9).timetuple().tm_yday", 69),
    ],
)
async def test_10_code_python_dates_work(code: str, expected: Any) -> None:
    result = await run_node("code.python", {"code": code})
    if expected is None:
        assert result.output == "2024-03-09T17:30:00"
    else:
        assert result.output == expected


async def test_8_inline_definitions_stay_off_private_networks_even_when_they_are_open(
    webhook_server: Any,
) -> None:
    # An operator opened private networks for their own definitions; a definition posted
    # inline to the HTTP API (origin "inline") still cannot reach them.
    settings = WorkerSettings(allow_private_networks=True)
    url = webhook_server.url("/inline")
    trusted = await run_node("http.request", {"url": url}, settings=settings)
    assert trusted.output["status_code"] == 200
    with pytest.raises(ApplicationError) as caught:
        await run_node("http.request", {"url": url}, settings=settings, origin="inline")
    assert "allow_private_networks_for_inline" in caught.value.message
    opened = WorkerSettings(allow_private_networks_for_inline=True)
    inline = await run_node("http.request", {"url": url}, settings=opened, origin="inline")
    assert inline.output["status_code"] == 200
