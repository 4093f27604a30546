"""Nothing is lost when a worker or the server dies mid-run.

Each test runs its own embedded server (``tideflow server``'s DevServer, SQLite on disk) and
workers as separate processes (``python worker.py``), then kills them with SIGKILL at the worst
moment and checks the run still ends with every node done exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from interpreter import load_string
from starter import client as tideflow
from starter.server import DevServer, free_port
from tests.polling import eventually
from tests.servers.webhook import WebhookServer

ROOT = Path(__file__).resolve().parent.parent
TASK_QUEUE = "durability"


class Workers:
    """Worker processes started with ``python worker.py``."""

    def __init__(self, address: str, home: Path) -> None:
        self.address = address
        self.home = home
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> subprocess.Popen[str]:
        env = dict(
            os.environ,
            TEMPORAL_ADDRESS=self.address,
            TIDEFLOW_HOME=str(self.home),
            TIDEFLOW_TASK_QUEUE=TASK_QUEUE,
            TIDEFLOW_ALLOW_PRIVATE_NETWORKS="true",  # the webhook server is on 127.0.0.1
            PYTHONUNBUFFERED="1",
        )
        process = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        for line in process.stdout:
            if "worker polling" in line:
                break
            if time.monotonic() > deadline:
                break
        else:
            pytest.fail(f"worker exited with {process.wait()} before polling")
        return process

    def kill(self, process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    dev = DevServer(data_dir=tmp_path / "server", port=free_port(), headless=True)
    dev.start()
    yield dev
    dev.stop()


@pytest.fixture
def workers(server: DevServer, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(server.address, tmp_path / "home")
    yield pool
    pool.stop_all()


@pytest_asyncio.fixture
async def temporal(server: DevServer) -> AsyncIterator[Client]:
    from starter.server import ensure_search_attributes

    client = await tideflow.connect(server.address)
    await ensure_search_attributes(client)
    yield client


SLOW_NODE = """
name: durable
inputs:
  slow_url: {type: string}
  after_url: {type: string}
tasks:
  - id: slow
    type: http.request
    heartbeat_timeout: 2s
    retry: {max_attempts: 5, initial_interval: 100ms}
    config: {method: POST, url: "${{ inputs.slow_url }}", json: {step: slow}}
  - id: after
    type: http.request
    depends_on: [slow]
    config: {method: POST, url: "${{ inputs.after_url }}", json: {step: after}}
"""


async def test_a_worker_killed_mid_node_loses_nothing(
    temporal: Client, workers: Workers, webhook_server: WebhookServer
) -> None:
    webhook_server.respond("/slow", status=200, json={"try": 1}, delay=30)  # never answered in time
    first = workers.start()
    definition = load_string(SLOW_NODE, "durable.yaml")
    inputs = {"slow_url": webhook_server.url("/slow"), "after_url": webhook_server.url("/after")}
    handle = await tideflow.start(temporal, definition, inputs, task_queue=TASK_QUEUE)

    await eventually(lambda: webhook_server.requests_to("/slow"))
    workers.kill(first)  # the node is mid-request on a worker that is gone
    workers.start()

    report = await asyncio.wait_for(tideflow.result(temporal, handle.id), 60)
    assert report.status == "completed"
    assert report.nodes["slow"].attempts == 2  # the heartbeat timeout noticed the dead worker
    assert len(webhook_server.requests_to("/slow")) == 2
    assert len(webhook_server.requests_to("/after")) == 1


WAITING = """
name: durable-timer
vars: {count: 0}
tasks:
  - id: before
    type: set
    config: {count: 1}
  - id: pause_here
    type: wait
    depends_on: [before]
    config: {duration: 3s}
  - id: after
    type: http.request
    depends_on: [pause_here]
    config: {method: POST, url: "${{ inputs.url }}", json: {count: "${{ vars.count }}"}}
"""


async def test_the_server_killed_mid_run_loses_nothing(
    server: DevServer, workers: Workers, webhook_server: WebhookServer
) -> None:
    from starter.server import ensure_search_attributes

    workers.start()
    temporal = await tideflow.connect(server.address)
    await ensure_search_attributes(temporal)
    definition = load_string(WAITING, "timer.yaml")
    handle = await tideflow.start(
        temporal, definition, {"url": webhook_server.url("/after")}, task_queue=TASK_QUEUE
    )
    await eventually(lambda: _status_is(temporal, handle.id, "pause_here", "waiting"), timeout=20)
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)  # the server dies while the timer runs
    server.process.wait()
    server.process = None
    server.start()  # same SQLite file, same port: the worker reconnects by itself

    temporal = await tideflow.connect(server.address)
    report = await asyncio.wait_for(tideflow.result(temporal, handle.id), 60)
    assert report.status == "completed"
    assert [r.json() for r in webhook_server.requests_to("/after")] == [{"count": 1}]


async def _status_is(temporal: Client, workflow_id: str, node: str, status: str) -> bool:
    try:
        state = await tideflow.status(temporal, workflow_id)
    except Exception:
        return False
    return state.nodes.get(node) == status


PAUSABLE = """
name: durable-pause
inputs:
  url: {type: string}
tasks:
  - id: first
    type: http.request
    config: {method: POST, url: "${{ inputs.url }}", json: {step: first}}
  - id: second
    type: http.request
    depends_on: [first]
    config: {method: POST, url: "${{ inputs.url }}", json: {step: second}}
"""


async def test_a_paused_run_survives_a_worker_restart_and_resumes_where_it_stopped(
    temporal: Client, workers: Workers, webhook_server: WebhookServer
) -> None:
    webhook_server.respond("/step", status=200, json={"ok": True}, delay=1.5)
    first = workers.start()
    definition = load_string(PAUSABLE, "pause.yaml")
    handle = await tideflow.start(
        temporal, definition, {"url": webhook_server.url("/step")}, task_queue=TASK_QUEUE
    )
    await eventually(lambda: webhook_server.requests_to("/step"))
    await tideflow.pause(temporal, handle.id)  # while `first` runs: it finishes, nothing starts
    await eventually(lambda: _status_is(temporal, handle.id, "first", "completed"))
    state = await tideflow.status(temporal, handle.id)
    assert state.status == "paused" and state.nodes["second"] == "ready"

    workers.kill(first)
    workers.start()
    await asyncio.sleep(1.0)  # a paused run starts nothing, on any worker
    assert len(webhook_server.requests_to("/step")) == 1
    assert (await tideflow.status(temporal, handle.id)).paused

    await tideflow.resume(temporal, handle.id)
    report = await asyncio.wait_for(tideflow.result(temporal, handle.id), 30)
    assert report.status == "completed"
    assert [r.json()["step"] for r in webhook_server.requests_to("/step")] == ["first", "second"]
    assert report.nodes["first"].attempts == 1 and report.nodes["second"].attempts == 1
