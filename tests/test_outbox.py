"""The durable start outbox: starts accepted while Temporal is down are kept (in SQLite or
PostgreSQL), survive a SIGKILL of the API, and are delivered in order, exactly once; a
definition's ``concurrency.max_runs`` holds further starts in the outbox."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import create_engine, text

from activities import WorkerSettings
from starter import client as starter_client
from starter.api import create_app
from starter.client import TideflowClient
from starter.outbox import Deliverer, NewEntry, Outbox, StartOutbox
from starter.server import DevServer, free_port
from tests import testing_node_types as probes
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer

ROOT = Path(__file__).resolve().parent.parent


def _yaml(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# --- the table, on SQLite and on PostgreSQL ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh control-plane store: SQLite in a folder, or a new database on the real server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'control.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"outbox_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    from starter.store import close_stores

    close_stores()
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_entries_keep_their_order_their_key_and_what_became_of_them(store_url: str) -> None:
    outbox = Outbox(store_url)
    first, new = outbox.accept("start", {"n": 1}, source="api", definition="a", workflow_id="a-1")
    assert new and first.status == "pending" and first.attempts == 0
    keyed, _ = outbox.accept(
        "start", {"n": 2}, source="api", definition="b", dedupe="start:k", fingerprint="f1"
    )
    again, new_again = outbox.accept(
        "start", {"n": 3}, source="api", definition="b", dedupe="start:k", fingerprint="f2"
    )
    assert (again.id, new_again, again.fingerprint) == (keyed.id, False, "f1")
    event = NewEntry("event", {"name": "e"}, "event", entry_id="ob-event")
    child = NewEntry("start", {"n": 4}, "event", definition="c", parent="ob-event")
    outbox.accept_many([event, child])
    assert [e.request.get("n") for e in outbox.open_entries()] == [1, 2, None, 4]
    assert [c.request for c in outbox.children("ob-event")] == [{"n": 4}]

    outbox.unreachable("cannot reach Temporal")
    assert {e.error for e in outbox.open_entries()} == {"cannot reach Temporal"}
    assert outbox.backlog().pending == 4
    assert outbox.attempt(first.id) == 1
    outbox.delivered(first.id, run_id="r1", result={"new": True})
    outbox.waiting(keyed.id, "waiting for a run slot: 2 of 2 runs open")
    outbox.failed("ob-event", "refused", status=422)
    done = {e.id: e for e in outbox.entries(include_done=True)}
    assert (done[first.id].status, done[first.id].run_id, done[first.id].error) == (
        "delivered",
        "r1",
        None,
    )
    assert done[keyed.id].status == "waiting"
    assert (done["ob-event"].status, done["ob-event"].result) == ("failed", {"status": 422})
    assert [e.id for e in outbox.entries()] == [keyed.id, outbox.children("ob-event")[0].id]
    assert [e.id for e in outbox.delivered_open_runs("a")] == [first.id]
    outbox.closed(first.id)
    assert outbox.delivered_open_runs("a") == []


def test_one_key_accepted_at_once_by_several_writers_is_one_entry(store_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    outbox = Outbox(store_url)

    def accept(n: int) -> tuple[str, bool]:
        entry, new = outbox.accept("start", {"n": n}, source="api", dedupe="start:same")
        return entry.id, new

    with ThreadPoolExecutor(8) as pool:
        accepted = list(pool.map(accept, range(8)))
    assert len({entry_id for entry_id, _ in accepted}) == 1
    assert sum(new for _, new in accepted) == 1


# --- exactly once -------------------------------------------------------------------------------

ONE_NODE = """
name: outbox-once
tasks:
  - id: only
    type: test.echo
    config: {value: 1}
"""


async def test_a_delivery_retried_after_a_crash_starts_no_second_run(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)

    async def connected() -> TideflowClient:
        return client

    settings = WorkerSettings(home=tmp_path, task_queue=tideflow.task_queue)
    outbox = Outbox.of(settings)
    starts = StartOutbox(outbox, Deliverer(outbox, connected), settings)
    accepted = await starts.start(tideflow.load(ONE_NODE), {}, source="test", wait=10)
    first = accepted.entry
    assert first.status == "delivered" and first.run_id
    report = await starter_client.result(tideflow.client, first.workflow_id or "")
    assert report.status == "completed"
    # The process died after Temporal took the start but before the outbox recorded it.
    outbox._set(first.id, status="pending", run_id=None, delivered_at=None)
    await starts.deliverer.deliver()
    again = outbox.get(first.id)
    assert again is not None
    assert (again.status, again.run_id, again.attempts) == ("delivered", first.run_id, 2)
    runs = [w async for w in tideflow.client.list_workflows(f'WorkflowId="{first.workflow_id}"')]
    assert len(runs) == 1
    assert probes.CALLS[first.workflow_id or ""] == ["only"]


# --- Temporal down, the API killed --------------------------------------------------------------

INTAKE = """
name: Outbox Intake
inputs:
  document: {type: string, required: true}
triggers:
  - type: document_upload
    filter: {mime_types: [application/pdf]}
vars: {seen: ""}
tasks:
  - id: note
    type: set
    config: {seen: "${{ inputs.document }}"}
outputs:
  seen: ${{ vars.seen }}
"""

LISTENER = """
name: Outbox Listener
inputs:
  event: {type: object, required: true}
triggers:
  - type: event
    name: outbox.order.created
vars: {order: 0}
tasks:
  - id: note
    type: set
    config: {order: "${{ inputs.event.order }}"}
outputs:
  order: ${{ vars.order }}
"""


class _Api:
    """``tideflow api`` as a real process."""

    def __init__(self, definitions: Path, home: Path, address: str, queue: str) -> None:
        self.port = free_port()
        self.env = dict(
            os.environ,
            TEMPORAL_ADDRESS=address,
            TIDEFLOW_HOME=str(home),
            TIDEFLOW_TASK_QUEUE=queue,
            PYTHONPATH=str(ROOT),
        )
        self.args = [
            sys.executable,
            "-m",
            "starter.cli",
            "api",
            "--definitions",
            str(definitions),
            "--port",
            str(self.port),
            "--no-triggers",
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    assert self.process.stderr is not None
                    pytest.fail(f"tideflow api exited: {self.process.stderr.read().decode()}")
                try:
                    await http.get(f"{self.url}/definitions", timeout=2)
                except httpx.HTTPError:
                    return False
                return True

            await eventually(up, what="tideflow api answers")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest_asyncio.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A dev server of its own (SQLite on disk), a worker, and ``tideflow api`` processes."""
    from starter.server import ensure_search_attributes
    from worker import running_worker

    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "intake.yaml").write_text(_yaml(INTAKE))
    (definitions / "listener.yaml").write_text(_yaml(LISTENER))
    server = DevServer(data_dir=tmp_path / "server", port=free_port(), headless=True)
    server.start()
    queue = f"outbox-{uuid.uuid4().hex[:6]}"
    apis: list[_Api] = []
    try:
        temporal = await starter_client.connect(server.address)
        await ensure_search_attributes(temporal)
        settings = WorkerSettings(home=tmp_path / "worker", task_queue=queue)
        async with running_worker(temporal, settings):

            def api() -> _Api:
                apis.append(_Api(definitions, tmp_path / "api-home", server.address, queue))
                return apis[-1]

            yield {"server": server, "temporal": temporal, "api": api}
    finally:
        for process in apis:
            process.kill()
        server.stop()


async def test_starts_accepted_while_temporal_is_down_survive_a_killed_api(
    deployment: dict[str, Any],
) -> None:
    server: DevServer = deployment["server"]
    api = deployment["api"]()
    await api.start()
    server.stop()  # Temporal is down from here on

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        uploaded = await http.post(
            "/definitions/outbox-intake/documents",
            files={"file": ("scan.pdf", b"%PDF-1.4 scan", "application/pdf")},
        )
        emitted = await http.post("/events/outbox.order.created", json={"payload": {"order": 7}})
        assert uploaded.status_code == 202, uploaded.text
        assert emitted.status_code == 202, emitted.text
        upload = uploaded.json()
        assert upload["status"] == "pending" and Path(upload["document"]).is_file()
        pending = emitted.json()["pending"]
        assert [p["kind"] for p in pending] == ["event", "start"]
        assert pending[1]["definition"] == "outbox-listener"
        listed = (await http.get("/outbox")).json()
        assert [e["id"] for e in listed] == [upload["pending"], *(p["pending"] for p in pending)]

    api.kill()  # SIGKILL between accepting and delivering
    server.start()  # the same SQLite file and port
    restarted = deployment["api"]()
    await restarted.start()

    temporal = deployment["temporal"]

    async def runs_of(slug: str) -> list[Any]:
        query = f'TideflowDefinition="{slug}"'
        return [w async for w in temporal.list_workflows(query)]

    intake = await eventually(lambda: runs_of("outbox-intake"), what="the upload's run")
    listener = await eventually(lambda: runs_of("outbox-listener"), what="the event's run")
    assert [w.id for w in intake] == [upload["workflow_id"]]
    assert [w.id for w in listener] == [pending[1]["workflow_id"]]
    report = await starter_client.result(temporal, upload["workflow_id"])
    assert report.outputs == {"seen": upload["document"]}
    listened = await starter_client.result(temporal, pending[1]["workflow_id"])
    assert listened.outputs == {"order": 7}

    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as http:
        entries = (await http.get("/outbox", params={"all": "true"})).json()
        assert [e["status"] for e in entries] == ["delivered"] * 3
        assert (await http.get("/outbox")).json() == []
        health = (await http.get("/health")).json()
        assert health["outbox"]["pending"] == 0
    # Exactly one run each, also once every delivery is done.
    assert len(await runs_of("outbox-intake")) == len(await runs_of("outbox-listener")) == 1


# --- concurrency limits -------------------------------------------------------------------------

LIMITED = """
name: Outbox Limited
concurrency: {max_runs: 2}
tasks:
  - id: work
    type: test.sleep
    config: {seconds: 1.0, group: GROUP}
"""


async def test_a_definition_with_max_runs_2_started_five_times_runs_two_at_once(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    group = f"limited-{uuid.uuid4().hex[:6]}"
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "limited.yaml").write_text(_yaml(LIMITED.replace("GROUP", group)))
    settings = WorkerSettings(home=tmp_path, task_queue=tideflow.task_queue)
    app = create_app(definitions, client=tideflow.client, settings=settings, triggers=False)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://tideflow.test") as http,
    ):
        answers = [await http.post("/definitions/outbox-limited/runs", json={}) for _ in range(5)]
        assert {a.status_code for a in answers} <= {201, 202}
        held = [a.json() for a in answers if a.status_code == 202]
        assert held, "every start was delivered at once: the limit held nothing back"
        entry = (await http.get(held[-1]["status_url"])).json()
        assert entry["status"] == "waiting"
        assert entry["error"] == "waiting for a run slot: 2 of 2 runs open"
        ids = [a.json()["workflow_id"] for a in answers]

        async def all_completed() -> bool:
            for workflow_id in ids:
                described = await tideflow.client.get_workflow_handle(workflow_id).describe()
                if described.status is None or described.status.name != "COMPLETED":
                    return False
            return True

        async def completed() -> bool:
            try:
                return await all_completed()
            except Exception:  # not delivered yet
                return False

        await eventually(completed, what="the five runs completed", timeout=90)
    assert probes.MAX_IN_FLIGHT[("group", group)] == 2
    assert probes.IN_FLIGHT[("group", group)] == 0


# --- the backlog's alert ---------------------------------------------------------------------

SIMPLE = """
name: Outbox Simple
tasks:
  - id: only
    type: set
    config: {}
"""


async def test_a_backlog_past_its_bounds_alerts_once_through_the_notify_family(
    webhook_server: WebhookServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "simple.yaml").write_text(_yaml(SIMPLE))
    alert = {"type": "notify.webhook", "config": {"url": webhook_server.url("/alert")}}
    settings = WorkerSettings.model_validate(
        {
            "home": str(tmp_path / "home"),
            "allow_private_networks": True,  # the webhook listens on 127.0.0.1
            "outbox": {"max_pending": 1, "wait_seconds": 0, "alert": alert},
        }
    )
    app = create_app(definitions, settings=settings, triggers=False)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://tideflow.test") as http,
    ):
        for _ in range(3):
            answer = await http.post("/definitions/outbox-simple/runs", json={})
            assert answer.status_code == 202, answer.text
        await eventually(lambda: webhook_server.requests_to("/alert"), what="the alert")
        health = await http.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["outbox"]["pending"] == 3 and body["outbox"]["alerting"] is True
        outbox_check = body["checks"]["outbox"]
        assert outbox_check.startswith("fail: 3 start(s) waiting, oldest ")
        assert outbox_check.endswith(" s: more than 1 waiting")
    sent = webhook_server.requests_to("/alert")
    assert len(sent) == 1  # once when the backlog crossed its bound, not on every pass
    payload = sent[0].json()
    assert payload["alert"] == "outbox_backlog" and payload["pending"] >= 2
    assert payload["message"].startswith("Tideflow start outbox: ")


# --- tideflow start --queue and tideflow outbox ---------------------------------------------


async def test_start_queue_keeps_a_start_until_the_outbox_delivers_it(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    definition = tmp_path / "simple.yaml"
    definition.write_text(_yaml(SIMPLE))
    env = {
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # down, for now
    }
    queued = await _cli(env, "start", "--queue", str(definition))
    assert queued.returncode == 0, queued.stderr
    workflow_id = queued.stdout.strip()
    assert workflow_id.startswith("outbox-simple-")
    assert "queued in the outbox as ob-" in queued.stderr
    listed = await _cli(env, "outbox", "--json")
    entries = json.loads(listed.stdout)
    assert [(e["workflow_id"], e["status"], e["source"]) for e in entries] == [
        (workflow_id, "pending", "cli")
    ]
    assert entries[0]["error"].startswith("cannot reach Temporal at 127.0.0.1:")

    delivered = await _cli({**env, "TEMPORAL_ADDRESS": tideflow.address}, "outbox", "--deliver")
    assert delivered.returncode == 0, delivered.stderr
    assert "outbox: 1 delivered" in delivered.stderr
    assert delivered.stdout.strip() == "the outbox is empty: nothing waits for Temporal"
    report = await starter_client.result(tideflow.client, workflow_id)
    assert report.status == "completed"


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``tideflow`` command line in a process of its own (this loop keeps running: the
    session's worker polls in this process)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starter.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- watched folders through the outbox -----------------------------------------------------

WATCHED = """
name: Outbox Watched
inputs:
  document: {type: string, required: true}
triggers:
  - type: document_upload
    path: inbox
    filter: {mime_types: [application/pdf]}
tasks:
  - id: only
    type: set
    config: {}
"""


async def test_a_watched_file_starts_its_run_through_the_outbox_once(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    from starter.triggers import TriggerRunner, new_catalog

    folder = tmp_path / "definitions"
    (folder / "inbox").mkdir(parents=True)
    (folder / "watched.yaml").write_text(_yaml(WATCHED))
    document = folder / "inbox" / "scan.pdf"
    document.write_bytes(b"%PDF-1.4\n")
    os.utime(document, (time.time() - 3600, time.time() - 3600))
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)

    async def connected() -> TideflowClient:
        return client

    settings = WorkerSettings(home=tmp_path / "home", task_queue=tideflow.task_queue)
    outbox = Outbox.of(settings)
    starts = StartOutbox(outbox, Deliverer(outbox, connected), settings)
    runner = TriggerRunner(
        new_catalog(folder), connected, settings=settings, start=starts.start_once, ledger=False
    )
    first = await runner.poll_once()
    assert [(r.definition, r.new) for r in first.started] == [("outbox-watched", True)]
    (entry,) = outbox.entries()
    assert (entry.source, entry.workflow_id) == ("trigger", first.started[0].workflow_id)
    await starts.deliverer.deliver()
    report = await starter_client.result(tideflow.client, first.started[0].workflow_id)
    assert report.status == "completed"
    # Without a ledger, the outbox itself knows the file: no second entry, no second run.
    again = await TriggerRunner(
        new_catalog(folder), connected, settings=settings, start=starts.start_once, ledger=False
    ).poll_once()
    assert [(r.workflow_id, r.new) for r in again.started] == [(entry.workflow_id, False)]
    assert [e.id for e in outbox.entries(include_done=True)] == [entry.id]
