"""The live run page of ``tideflow api`` (``/ui/runs/{id}``), loaded in headless Chromium while
the run still runs: the graph drawn as SVG, each node with its live status, the script's
refresh from ``/ui/runs/{id}/live``, every asset served by the API itself (no other host is
reachable), a screenshot; and the JSON behind it (live view, a node's input, output, error)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from activities import WorkerSettings
from interpreter.report import BudgetReport, RunUsage
from starter.api import create_app
from starter.client import RunHandle, TideflowClient
from starter.run_graph import GraphNode, layout
from starter.run_page import render_run
from starter.run_view import NodeLive, RunGraph, RunLive
from starter.server import free_port
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE_CHECK = """
name: Page Check
version: "2"
tasks:
  - {id: fetch, type: test.echo, config: {value: 1}}
  - id: flaky
    type: test.flaky
    depends_on: [fetch]
    config: {failures: 1, value: 2}
    retry: {max_attempts: 3, initial_interval: 100ms}
    on_error: {fallback: rescue}
  - {id: unused, type: test.echo, depends_on: [fetch], when: false}
  - {id: review, type: approval, depends_on: [flaky], config: {message: check the totals}}
  - {id: publish, type: test.echo, depends_on: [review, unused], join: any}
  - {id: rescue, type: test.echo, config: {value: rescued}}
"""


class _Served:
    """The API app served by uvicorn on a free local port, in a thread of its own."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> _Served:
        self.thread.start()
        await eventually(lambda: self.server.started, what="uvicorn started")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 30)


@pytest_asyncio.fixture(scope="module")
async def served(
    tideflow: Tideflow, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, TideflowClient]]:
    """The API on the session's server and worker, over HTTP (Chromium needs a real port)."""
    home = tmp_path_factory.mktemp("page-home")
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)
    settings = WorkerSettings(home=home, task_queue=tideflow.task_queue)
    app = create_app(home, client=client, settings=settings, triggers=False)
    async with _Served(app) as server:
        yield server.url, client


async def _waiting_run(client: TideflowClient, tideflow: Tideflow) -> RunHandle:
    run = client.get_run((await tideflow.start(textwrap.dedent(PAGE_CHECK))).id)
    await eventually(
        lambda: run.state(), lambda s: s.nodes.get("review") == "waiting", "review waits"
    )
    return run


def _chromium(url: str, *extra: str) -> str:
    """Load ``url`` in headless Chromium with every host but 127.0.0.1 unresolvable (a CDN
    asset would fail as it does offline); the DOM after its scripts ran."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _node_elements(dom: str) -> dict[str, str]:
    """The status of each node box of the SVG, as the browser has it."""
    found = {}
    for tag in re.findall(r"<g [^>]*data-node=[^>]*>", dom):
        node = re.search(r'data-node="([^"]+)"', tag)
        status = re.search(r'data-status="([^"]+)"', tag)
        classes = re.search(r'class="([^"]+)"', tag)
        assert node and status and classes
        assert f"status-{status[1]}" in classes[1].split()  # coloured by its status
        found[node[1]] = status[1]
    return found


@pytest.mark.skipif(CHROMIUM is None, reason="apt-get install -y chromium")
async def test_the_run_page_shows_a_running_run_live_in_chromium(
    served: tuple[str, TideflowClient], tideflow: Tideflow, tmp_path: Path
) -> None:
    url, client = served
    run = await _waiting_run(client, tideflow)
    page = f"{url}/ui/runs/{run.id}"
    async with httpx.AsyncClient() as http:
        html = (await http.get(page)).text
        # No CDN, no other host: every asset is the API's own.
        assert "https://" not in html.replace('href="http://localhost', "")
        for asset in re.findall(r"(?:src|href)='(/ui/assets/[^']+)'", html):
            assert (await http.get(url + asset)).status_code == 200, asset

    shot = tmp_path / "run-page.png"
    dom = await asyncio.to_thread(
        _chromium, page, "--dump-dom", f"--screenshot={shot}", "--window-size=1280,640"
    )
    assert _node_elements(dom) == {
        "fetch": "completed",
        "flaky": "completed",
        "unused": "skipped",
        "review": "waiting",
        "publish": "pending",
        "rescue": "pending",
    }
    assert re.search(r'<body[^>]*data-polls="[1-9]', dom), "the script refreshed the page"
    assert re.search(r'<body[^>]*data-ended="false"', dom)
    assert re.search(r'id="run-status"[^>]*>waiting<', dom)
    flaky = re.search(r'data-node="flaky".*?</g>', dom, re.S)
    assert flaky and "completed · attempt 2" in flaky[0]
    assert "waiting (approval)" in dom
    assert f'href="/ui/runs/{run.id}/nodes/flaky"' in dom
    assert "Temporal Web UI" in dom and f"/workflows/{run.id}/" in dom
    assert dom.count('class="edge"') == 5  # handlers have none
    rescue = re.search(r'<g class="([^"]+)" data-node="rescue"', dom)
    assert rescue and "handler" in rescue[1].split()  # drawn apart, dashed

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

    await run.approve("review")
    assert (await run.report()).status == "completed"
    async with httpx.AsyncClient() as http:
        html = (await http.get(page)).text.replace("'", '"')
    assert _node_elements(html)["publish"] == "completed"
    assert set(_node_elements(html).values()) == {"completed", "skipped", "pending"}
    assert re.search(r'<body[^>]*data-ended="true"', html)


async def test_the_live_view_and_a_nodes_input_output_and_error(
    served: tuple[str, TideflowClient], tideflow: Tideflow
) -> None:
    url, client = served
    run = await _waiting_run(client, tideflow)
    async with httpx.AsyncClient(base_url=url) as http:
        live = (await http.get(f"/ui/runs/{run.id}/live")).json()
        assert live["status"] == "waiting" and live["ended"] is False
        assert live["definition"] == "Page Check" and live["version"] == "2"
        nodes = live["nodes"]
        assert nodes["flaky"]["status"] == "completed" and nodes["flaky"]["attempts"] == 2
        assert nodes["flaky"]["duration_seconds"] > 0
        assert nodes["review"]["waiting"] == "approval"
        assert nodes["publish"]["status"] == "pending"

        flaky = (await http.get(f"/runs/{run.id}/nodes/flaky")).json()
        assert flaky["type"] == "test.flaky"
        assert flaky["input"] == {"failures": 1, "value": 2}  # what its activity got
        assert flaky["output"]["value"] == 2 and flaky["output"]["attempt"] == 2
        review = (await http.get(f"/runs/{run.id}/nodes/review")).json()
        assert review["input"] == {"message": "check the totals"}  # run by the workflow
        assert (await http.get(f"/runs/{run.id}/nodes/nowhere")).status_code == 404
        page = (await http.get(f"/ui/runs/{run.id}/nodes/flaky")).text
        assert "<h2 id='input'>input</h2>" in page and "&quot;failures&quot;: 1" in page

        listing = (await http.get("/ui/runs")).text
        assert f"href='/ui/runs/{run.id}'" in listing
        assert (await http.get("/ui/runs/no-such-run")).status_code == 404
        assert (await http.get("/ui/assets/../../etc/passwd")).status_code == 404
    await run.cancel()


def test_the_page_shows_tokens_cost_and_spend_against_budget() -> None:
    graph = RunGraph(
        name="Spend",
        nodes=[
            {"id": "ask", "type": "ai.prompt", "name": None, "depends_on": [], "handler": False},
            {"id": "more", "type": "ai.prompt", "depends_on": ["ask"], "handler": False},
        ],
    )
    live = RunLive(
        workflow_id="spend-1",
        run_id="r1",
        status="needs_attention",
        ended=False,
        web_ui="http://localhost:8233/x",
        updated_at="2026-01-01T00:00:00Z",
        usage=RunUsage(ai_tokens=2000, cost_usd=0.015),
        budget=BudgetReport(cost_usd=0.01, spent_usd=0.015, spent_tokens=2000),
        nodes={
            "ask": NodeLive(
                status="completed", attempts=1, duration_seconds=1.25, tokens=2000, cost_usd=0.015
            ),
            "more": NodeLive(status="needs_attention", attention="budget"),
        },
    )
    drawing = layout(
        [GraphNode(n["id"], n["type"], depends_on=tuple(n["depends_on"])) for n in graph.nodes]
    )
    html = render_run(live, graph, drawing)
    assert "1.2s · 2,000 tok · $0.0150" in html
    assert "needs attention (budget)" in html
    assert "<span class='over'>budget: $0.0150 of $0.0100</span>" in html
    assert "AI: 2,000 tokens · $0.0150" in html
    hostile = live.model_copy(update={"error": "<script>alert(1)</script>"})
    assert "<script>alert" not in render_run(hostile, graph, drawing)
