"""The HTTP API (``tideflow api``) in process, against the real Temporal dev server and a real
Tideflow worker: definitions from a folder, runs started, followed and operated over HTTP,
uploads, events, and the error answers (422, 404, 409, 415, 503)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from openapi_spec_validator import validate as validate_openapi

from activities import WorkerSettings
from starter.api import create_app
from starter.server import free_port
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer

"""Longest a test waits for a run to reach a state (a hang guard, not a timing assertion)."""

HELLO = """
name: API Hello
version: "1.2"
description: greets someone
inputs:
  who: {type: string, required: true}
vars: {greeting: ""}
tasks:
  - id: greet
    type: set
    config:
      greeting: ${{ "hello " + inputs.who }}
outputs:
  greeting: ${{ vars.greeting }}
"""

CALL = """
name: API Call
inputs:
  url: {type: string, required: true}
tasks:
  - id: call
    type: http.request
    config:
      method: POST
      url: ${{ inputs.url }}
      json: {from: tideflow}
outputs:
  status: ${{ nodes.call.output.status_code }}
  answer: ${{ nodes.call.output.json }}
"""

GATE = """
name: API Gate
vars: {note: "", count: 0}
tasks:
  - id: hold
    type: wait
    config: {duration: 1h}
  - id: after
    type: set
    depends_on: [hold]
    config: {note: done}
"""

REVIEW = """
name: API Review
tasks:
  - id: review
    type: approval
    config: {message: please check}
outputs:
  approved: ${{ nodes.review.output.approved }}
  comment: ${{ nodes.review.output.comment }}
"""

UPLOAD = """
name: API Upload
inputs:
  document: {type: string, required: true}
  lang: {type: string, default: en}
triggers:
  - type: document_upload
    filter: {mime_types: [application/pdf]}
vars: {seen: ""}
tasks:
  - id: note
    type: set
    config:
      seen: ${{ inputs.document }}
outputs:
  document: ${{ vars.seen }}
  lang: ${{ inputs.lang }}
"""

LISTENER = """
name: API Listener
inputs:
  event: {type: object, required: true}
  source: {type: string, default: none}
triggers:
  - type: event
    name: api.order.created
    inputs: {source: event-trigger}
outputs:
  order: ${{ inputs.event.order_id }}
  source: ${{ inputs.source }}
tasks:
  - id: noop
    type: set
    config: {}
"""

WAITER = """
name: API Waiter
inputs:
  order: {type: string, required: true}
tasks:
  - id: order
    type: wait_for_event
    config: {event: api.order.created, correlation: "${{ inputs.order }}", timeout: 1h}
outputs:
  payload: ${{ nodes.order.output.payload }}
"""

BROKEN = """
name: API Broken
tasks:
  - id: first
    type: set
    config: {}
  - id: second
    type: no_such_type
    depends_on: [first]
"""


def _yaml(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A definitions folder: the valid definitions above and one broken file."""
    folder = tmp_path_factory.mktemp("definitions")
    files = {
        "hello.yaml": HELLO,
        "call.yaml": CALL,
        "gate.yaml": GATE,
        "review.yaml": REVIEW,
        "upload.yaml": UPLOAD,
        "listener.yaml": LISTENER,
        "waiter.yaml": WAITER,
        "broken.yaml": BROKEN,
    }
    for name, text in files.items():
        (folder / name).write_text(_yaml(text))
    return folder


@pytest.fixture(scope="module")
def api_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The API's TIDEFLOW_HOME (uploads land here)."""
    return tmp_path_factory.mktemp("api-home")


@pytest_asyncio.fixture(scope="module")
async def api(
    tideflow: Tideflow, definitions: Path, api_home: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The API app (lifespan included) on the session's server and worker, called in process."""
    settings = WorkerSettings(home=api_home, task_queue=tideflow.task_queue)
    app = create_app(definitions, client=tideflow.client, settings=settings, triggers=False)
    async with _serving(app) as http:
        yield http


class _serving:
    """Run an app's lifespan and give an HTTP client that calls it in process."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._lifespan: Any = None
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        self._http = httpx.AsyncClient(transport=transport, base_url="http://tideflow.test")
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        await self._http.aclose()
        await self._lifespan.__aexit__(*exc)


async def _state(api: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    response = await api.get(f"/runs/{workflow_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _wait_status(api: httpx.AsyncClient, workflow_id: str, status: str) -> dict[str, Any]:
    state: dict[str, Any] = await eventually(
        lambda: _state(api, workflow_id), lambda s: s["status"] == status, f"{workflow_id} status"
    )
    return state


async def _report(api: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    response = await api.get(f"/runs/{workflow_id}/report", params={"wait": "true"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- definitions ------------------------------------------------------------------------------


async def test_definitions_are_listed_with_the_problems_of_invalid_files(
    api: httpx.AsyncClient, definitions: Path
) -> None:
    response = await api.get("/definitions")
    assert response.status_code == 200
    listed = {d["slug"]: d for d in response.json()}
    assert {"api-hello", "api-call", "api-upload", "api-broken"} <= set(listed)
    hello = listed["api-hello"]
    assert (hello["name"], hello["version"], hello["valid"]) == ("API Hello", "1.2", True)
    assert hello["problems"] == []
    assert listed["api-upload"]["triggers"][0]["type"] == "document_upload"

    broken = listed["api-broken"]
    assert broken["valid"] is False
    problem = broken["problems"][0]
    # `type: no_such_type` is on line 7 of broken.yaml.
    assert problem["file"] == str(definitions / "broken.yaml")
    assert problem["line"] == 7
    assert problem["column"] > 1
    assert "no_such_type" in problem["message"]
    assert problem["text"].startswith(f"{definitions / 'broken.yaml'}:7:")


async def test_a_definition_with_its_json_and_mermaid_graph(api: httpx.AsyncClient) -> None:
    response = await api.get("/definitions/api-gate")
    assert response.status_code == 200
    body = response.json()
    assert [t["id"] for t in body["definition"]["tasks"]] == ["hold", "after"]
    assert body["mermaid"].startswith("flowchart TD")
    assert "n_hold --> n_after" in body["mermaid"]

    missing = await api.get("/definitions/no-such-definition")
    assert missing.status_code == 404
    assert "no-such-definition" in missing.json()["detail"]


async def test_starting_an_invalid_definition_lists_its_problems(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-broken/runs", json={"inputs": {}})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "invalid definition"
    assert ":7:" in body["problems"][0]["text"]


async def test_openapi_schema_is_valid(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate_openapi(schema)
    assert "/definitions/{slug}/documents" in schema["paths"]
    assert "/events/{name}" in schema["paths"]


# --- runs ---------------------------------------------------------------------------------------


async def test_start_a_run_and_get_its_report(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-hello/runs", json={"inputs": {"who": "Ada"}})
    assert response.status_code == 201, response.text
    started = response.json()
    assert started["workflow_id"].startswith("api-hello-")
    assert started["definition"] == "api-hello"
    assert started["web_ui"].endswith(
        f"/workflows/{started['workflow_id']}/{started['run_id']}/history"
    )

    report = await _report(api, started["workflow_id"])
    assert report["status"] == "completed"
    assert report["outputs"] == {"greeting": "hello Ada"}
    assert report["definition"] == {"name": "API Hello", "version": "1.2"}
    assert report["nodes"]["greet"]["status"] == "completed"

    # Without wait, a run that has ended answers its final report too.
    again = await api.get(f"/runs/{started['workflow_id']}/report")
    assert again.json()["outputs"] == {"greeting": "hello Ada"}


async def test_a_run_calls_a_local_http_server(
    api: httpx.AsyncClient, webhook_server: WebhookServer
) -> None:
    webhook_server.respond("/orders", status=201, json={"ok": True})
    url = webhook_server.url("/orders")
    response = await api.post("/definitions/api-call/runs", json={"inputs": {"url": url}})
    assert response.status_code == 201, response.text
    report = await _report(api, response.json()["workflow_id"])
    assert report["status"] == "completed", report
    assert report["outputs"] == {"status": 201, "answer": {"ok": True}}
    assert webhook_server.requests[0].json() == {"from": "tideflow"}


async def test_given_workflow_id_is_used_and_a_duplicate_is_refused(
    api: httpx.AsyncClient,
) -> None:
    workflow_id = f"api-gate-{uuid.uuid4().hex[:8]}"
    first = await api.post("/definitions/api-gate/runs", json={"workflow_id": workflow_id})
    assert first.status_code == 201
    assert first.json()["workflow_id"] == workflow_id
    second = await api.post("/definitions/api-gate/runs", json={"workflow_id": workflow_id})
    assert second.status_code == 409
    assert workflow_id in second.json()["detail"]
    assert (await api.post(f"/runs/{workflow_id}/cancel")).status_code == 200


async def test_bad_inputs_answer_422_naming_each_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-hello/runs", json={"inputs": {"whom": 3}})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "invalid inputs"
    by_field = {p["field"]: p["message"] for p in body["problems"]}
    assert by_field["who"] == "required"
    assert "not declared" in by_field["whom"]

    wrong_type = await api.post("/definitions/api-hello/runs", json={"inputs": {"who": 3}})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["problems"][0]["field"] == "who"

    # A malformed request body is a 422 of the same shape, naming the field.
    malformed = await api.post("/definitions/api-hello/runs", json={"inputs": "who=Ada"})
    assert malformed.status_code == 422
    assert malformed.json()["problems"][0]["field"] == "body.inputs"


async def test_inline_definition_as_yaml_text_or_json_object(api: httpx.AsyncClient) -> None:
    text = _yaml(HELLO).replace("API Hello", "API Inline")
    response = await api.post("/runs", json={"definition": text, "inputs": {"who": "Grace"}})
    assert response.status_code == 201, response.text
    assert response.json()["definition"] == "api-inline"
    report = await _report(api, response.json()["workflow_id"])
    assert report["outputs"] == {"greeting": "hello Grace"}

    as_json = {
        "name": "API Inline JSON",
        "vars": {"x": 0},
        "tasks": [{"id": "s", "type": "set", "config": {"x": 7}}],
        "outputs": {"x": "${{ vars.x }}"},
    }
    response = await api.post("/runs", json={"definition": as_json})
    assert response.status_code == 201, response.text
    assert (await _report(api, response.json()["workflow_id"]))["outputs"] == {"x": 7}

    bad = await api.post(
        "/runs", json={"definition": "name: Bad\ntasks:\n  - id: a\n    type: nope\n"}
    )
    assert bad.status_code == 422

    assert bad.json()["problems"][0]["text"].startswith("<request>:4:")


async def test_list_runs_filters_by_definition(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-hello/runs", json={"inputs": {"who": "Lin"}})
    workflow_id = response.json()["workflow_id"]
    await _report(api, workflow_id)

    async def listed() -> list[dict[str, Any]]:
        answer = await api.get("/runs", params={"definition": "api-hello", "limit": 100})
        assert answer.status_code == 200
        runs: list[dict[str, Any]] = answer.json()
        return runs

    runs = await eventually(
        listed,
        lambda runs: any(
            r["workflow_id"] == workflow_id and r["status"] == "completed" for r in runs
        ),
        "the run in GET /runs",
    )
    assert {r["definition"] for r in runs} == {"api-hello"}

    for status in ("sleepy", ""):  # an empty filter is refused too, not read as "any"
        bad = await api.get("/runs", params={"status": status})
        assert bad.status_code == 422
        assert bad.json()["problems"][0]["field"] == "status"


async def test_unknown_run_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/runs/no-such-run")).status_code == 404
    assert (await api.get("/runs/no-such-run/report")).status_code == 404
    assert (await api.post("/runs/no-such-run/pause")).status_code == 404


# --- control ------------------------------------------------------------------------------------


async def test_pause_resume_set_vars_and_cancel(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-gate/runs", json={})
    workflow_id = response.json()["workflow_id"]
    state = await _wait_status(api, workflow_id, "waiting")
    assert state["waiting"] == {"hold": "timer"}

    assert (await api.post(f"/runs/{workflow_id}/pause")).json() == {
        "workflow_id": workflow_id,
        "action": "pause",
    }
    paused = await _wait_status(api, workflow_id, "paused")
    assert paused["paused"] is True
    listed = await eventually(
        lambda: api.get("/runs", params={"definition": "api-gate", "status": "paused"}),
        lambda r: any(run["workflow_id"] == workflow_id for run in r.json()),
        "the paused run in GET /runs?status=paused",
    )
    assert listed.status_code == 200

    assert (await api.post(f"/runs/{workflow_id}/resume")).status_code == 200
    resumed = await _wait_status(api, workflow_id, "waiting")
    assert resumed["paused"] is False

    answer = await api.post(f"/runs/{workflow_id}/vars", json={"values": {"count": 3}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] is True
    assert (await _state(api, workflow_id))["vars"]["count"] == 3

    cancelled = await api.post(f"/runs/{workflow_id}/cancel")
    assert cancelled.status_code == 200
    report = await _report(api, workflow_id)
    assert report["status"] == "cancelled"

    # The run has ended: nothing is left to cancel, pause or skip.
    assert (await api.post(f"/runs/{workflow_id}/cancel")).status_code == 409
    assert (await api.post(f"/runs/{workflow_id}/pause")).status_code == 409
    late = await api.post(f"/runs/{workflow_id}/skip", json={"node": "after"})
    assert late.status_code == 409


async def test_refused_updates_answer_409_with_the_reason(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-gate/runs", json={})
    workflow_id = response.json()["workflow_id"]
    await _wait_status(api, workflow_id, "waiting")

    unknown = await api.post(f"/runs/{workflow_id}/skip", json={"node": "nope"})
    assert unknown.status_code == 409
    assert "nope" in unknown.json()["detail"]

    wrong_type = await api.post(f"/runs/{workflow_id}/vars", json={"values": {"count": "x"}})
    assert wrong_type.status_code == 409
    assert "count" in wrong_type.json()["detail"]

    not_approval = await api.post(f"/runs/{workflow_id}/approve", json={"node": "hold"})
    assert not_approval.status_code == 409
    assert "not an approval node" in not_approval.json()["detail"]

    not_waiting = await api.post(f"/runs/{workflow_id}/retry", json={"node": "after"})
    assert not_waiting.status_code == 409

    # Skipping the pending node is accepted; the run goes on waiting for its timer.
    skipped = await api.post(f"/runs/{workflow_id}/skip", json={"node": "after", "output": {}})
    assert skipped.status_code == 200, skipped.text
    assert (skipped.json()["accepted"], skipped.json()["node"]) == (True, "after")
    assert (await api.post(f"/runs/{workflow_id}/cancel")).status_code == 200


async def test_approve_through_the_api(api: httpx.AsyncClient) -> None:
    response = await api.post("/definitions/api-review/runs", json={})
    workflow_id = response.json()["workflow_id"]
    state = await _wait_status(api, workflow_id, "waiting")
    assert state["waiting"] == {"review": "approval"}
    so_far = await api.get(f"/runs/{workflow_id}/report")
    assert so_far.json()["nodes"]["review"]["status"] == "waiting"

    answer = await api.post(
        f"/runs/{workflow_id}/approve",
        json={"node": "review", "approved": True, "comment": "fine", "by": "ops"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "approved"
    report = await _report(api, workflow_id)
    assert report["outputs"] == {"approved": True, "comment": "fine"}


# --- documents ----------------------------------------------------------------------------------


async def test_upload_a_document_starts_a_run_with_its_path(
    api: httpx.AsyncClient, api_home: Path
) -> None:
    content = b"%PDF-1.4 not really a pdf\n"
    response = await api.post(
        "/definitions/api-upload/documents",
        files={"file": ("../../Invoice 7.pdf", content, "application/octet-stream")},
        data={"inputs": '{"lang": "fr"}'},
    )
    assert response.status_code == 201, response.text
    started = response.json()
    saved = Path(started["document"])
    # Saved under <home>/uploads/<uuid>/<name>, the folder part of the name dropped.
    assert saved.name == "Invoice 7.pdf"
    assert saved.parent.parent == (api_home / "uploads").resolve()
    assert saved.read_bytes() == content

    report = await _report(api, started["workflow_id"])
    assert report["status"] == "completed"
    assert report["outputs"] == {"document": str(saved), "lang": "fr"}


async def test_upload_filtered_out_by_mime_type_is_415(
    api: httpx.AsyncClient, api_home: Path
) -> None:
    before = set((api_home / "uploads").glob("*")) if (api_home / "uploads").exists() else set()
    response = await api.post(
        "/definitions/api-upload/documents", files={"file": ("notes.txt", b"hi", "text/plain")}
    )
    assert response.status_code == 415
    assert "application/pdf" in response.json()["detail"]
    after = set((api_home / "uploads").glob("*")) if (api_home / "uploads").exists() else set()
    assert after == before  # nothing kept

    no_trigger = await api.post(
        "/definitions/api-hello/documents", files={"file": ("a.pdf", b"%PDF", "application/pdf")}
    )
    assert no_trigger.status_code == 422
    assert "document_upload" in no_trigger.json()["detail"]

    bad_inputs = await api.post(
        "/definitions/api-upload/documents",
        files={"file": ("a.pdf", b"%PDF", "application/pdf")},
        data={"inputs": '{"lang": 5}'},
    )
    assert bad_inputs.status_code == 422
    assert bad_inputs.json()["problems"][0]["field"] == "lang"


# --- events -------------------------------------------------------------------------------------


async def test_events_start_listening_definitions_and_reach_waiting_runs(
    api: httpx.AsyncClient,
) -> None:
    order = f"o-{uuid.uuid4().hex[:6]}"
    waiter = await api.post("/definitions/api-waiter/runs", json={"inputs": {"order": order}})
    assert waiter.status_code == 201, waiter.text
    waiter_id = waiter.json()["workflow_id"]
    await _wait_status(api, waiter_id, "waiting")

    response = await api.post(
        "/events/api.order.created",
        json={"payload": {"order_id": order}, "correlation": order},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert waiter_id in body["delivered"]
    assert [s["definition"] for s in body["started"]] == ["api-listener"]

    started_report = await _report(api, body["started"][0]["workflow_id"])
    assert started_report["outputs"] == {"order": order, "source": "event-trigger"}
    waiter_report = await _report(api, waiter_id)
    assert waiter_report["outputs"] == {"payload": {"order_id": order}}

    # With a key, the same event starts each listening definition once.
    key = uuid.uuid4().hex
    first = await api.post(
        "/events/api.order.created", json={"payload": {"order_id": 1}, "key": key}
    )
    second = await api.post(
        "/events/api.order.created", json={"payload": {"order_id": 1}, "key": key}
    )
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert len(first.json()["started"]) == 1
    assert second.json()["started"] == []
    assert second.json()["already_started"] == [first.json()["started"][0]["workflow_id"]]

    # A payload the listening definition's inputs refuse is reported, not started.
    refused = await api.post("/events/api.order.created", json={"payload": [1, 2]})
    assert refused.status_code == 200, refused.text
    assert refused.json()["started"] == []
    assert refused.json()["refused"][0]["definition"] == "api-listener"
    assert "event" in refused.json()["refused"][0]["problems"][0]


# --- Temporal unreachable -----------------------------------------------------------------------


async def test_temporal_unreachable_keeps_starts_in_the_outbox_and_health_is_503(
    definitions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    app = create_app(definitions, settings=WorkerSettings(home=tmp_path), triggers=False)
    async with _serving(app) as http:
        response = await http.post("/definitions/api-hello/runs", json={"inputs": {"who": "x"}})
        assert response.status_code == 202, response.text
        pending = response.json()
        assert pending["status"] == "pending"
        assert pending["reason"].startswith("cannot reach Temporal at 127.0.0.1:")
        assert pending["workflow_id"].startswith("api-hello-")
        entry = await http.get(pending["status_url"])
        assert entry.json()["status"] == "pending"
        # Bad inputs are still refused at once: nothing is kept for them.
        bad = await http.post("/definitions/api-hello/runs", json={"inputs": {"who": 3}})
        assert bad.status_code == 422
        # Reads that need Temporal cannot be kept: they answer 503.
        assert (await http.get("/runs")).status_code == 503
        health = await http.get("/health")
        assert health.status_code == 503
        assert health.json()["temporal"].startswith("unreachable")
        assert health.json()["outbox"]["pending"] == 1
        # What needs no Temporal still answers.
        assert (await http.get("/definitions")).status_code == 200


async def test_health(api: httpx.AsyncClient, tideflow: Tideflow) -> None:
    response = await api.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["temporal"] == "ok"
    assert body["invalid_definitions"] == 1
    # tideflow doctor's checks, in short.
    checks = body["checks"]
    assert checks["search attributes"] == checks[f"worker {tideflow.task_queue}"] == "ok"
    assert checks["payload store"] == checks["outbox"] == "ok"
    assert body["outbox"]["ok"] is True


# --- /docs offline ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _UvicornThread:
    """An app served by uvicorn on a free local port, in a thread of its own."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> _UvicornThread:
        self.thread.start()
        await eventually(lambda: self.server.started, what="uvicorn started")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 30)


def _dom(url: str) -> str:
    """The DOM of ``url`` after its scripts ran in headless Chromium, with every host but the
    local one unresolvable (a CDN asset would fail to load, as it does offline)."""
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
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=8000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="apt-get install -y chromium")
async def test_docs_render_offline_from_local_assets(
    definitions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # not needed for docs
    app = create_app(definitions, settings=WorkerSettings(home=tmp_path), triggers=False)
    async with _UvicornThread(app) as served, httpx.AsyncClient(base_url=served.url) as http:
        for page in ("/docs", "/redoc"):
            html = (await http.get(page)).text
            # No CDN (cdn.jsdelivr, unpkg) nor any other host: every asset is the API's own.
            assert "https://" not in html and "http://" not in html, html
            for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
                answer = await http.get(asset)
                assert answer.status_code == 200, asset

        dom = await asyncio.to_thread(_dom, f"{served.url}/docs")
        # Swagger UI drew the operations list from /openapi.json.
        assert 'id="operations-runs-start_inline_runs_post"' in dom, dom[-3000:]
        assert "/definitions/{slug}/documents" in dom
        redoc = await asyncio.to_thread(_dom, f"{served.url}/redoc")
        assert "Start a run of a definition given in the request" in redoc, redoc[-3000:]


async def test_an_inline_definition_cannot_reach_private_networks_the_folder_s_may(
    api: httpx.AsyncClient, webhook_server: WebhookServer
) -> None:
    # The worker allows private networks (its operator's definitions call internal services);
    # a definition posted to the API was written by whoever reached it: its run has origin
    # "inline" and stays off them unless allow_private_networks_for_inline says otherwise.
    inline = {
        "name": "API Inline Egress",
        "tasks": [
            {"id": "probe", "type": "http.request", "config": {"url": webhook_server.url("/x")}}
        ],
    }
    response = await api.post("/runs", json={"definition": inline})
    assert response.status_code == 201, response.text
    report = await _report(api, response.json()["workflow_id"])
    assert report["status"] == "failed"
    assert "allow_private_networks_for_inline" in report["nodes"]["probe"]["error"]
    assert webhook_server.requests == []
