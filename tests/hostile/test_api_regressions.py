"""The HTTP API under hostile input (issue 8), against the real dev server and a real worker.

One regression test per defect of the audit the API had, each failing on the main before the
fix: 4 (a posted definition was parsed on the event loop: a heavy one froze every request),
7 (a request body of any size was read whole), 9 (three starts with one ``Idempotency-Key``
started three runs). Around them, the bounds that keep those fixed: a parse past its time or
that kills its worker is a 422 and costs the API nothing, uploads keep their own limit, and a
definition is bounded in nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from activities import WorkerSettings
from interpreter.loader import Problem
from starter.api import create_app
from tests.servers.tideflow_worker import Tideflow

HELLO = """
name: Hostile Hello
inputs:
  who: {type: string, default: world}
  document: {type: string, default: ""}
triggers:
  - type: document_upload
    filter: {mime_types: [application/pdf]}
vars: {greeting: ""}
tasks:
  - id: greet
    type: set
    config:
      greeting: ${{ "hello " + inputs.who }}
outputs:
  greeting: ${{ vars.greeting }}
"""

LISTENER = """
name: Hostile Listener
inputs:
  event: {type: object, required: true}
triggers:
  - type: event
    name: hostile.order.created
tasks:
  - id: noop
    type: set
    config: {}
"""

INLINE = """
name: Hostile Inline
inputs:
  who: {type: string, required: true}
vars: {greeting: ""}
tasks:
  - id: greet
    type: set
    config:
      greeting: ${{ "hi " + inputs.who }}
outputs:
  greeting: ${{ vars.greeting }}
"""

HANG = "# hang-the-parser\n"
CRASH = "# crash-the-parser\n"


def faulty_parse(source: Any, file: str, max_nodes: int) -> tuple[Any, list[Problem]]:
    """A parse function for the API's parse workers that hangs or crashes its process on a
    marker, and parses as the API does otherwise (runs in the worker, imported by name)."""
    if isinstance(source, str) and source.startswith(HANG):
        time.sleep(3600)
    if isinstance(source, str) and source.startswith(CRASH):
        os.kill(os.getpid(), signal.SIGSEGV)
    from starter.api.parsing import parse_definition

    return parse_definition(source, file, max_nodes)


def _yaml(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-definitions")
    (folder / "hello.yaml").write_text(_yaml(HELLO))
    (folder / "listener.yaml").write_text(_yaml(LISTENER))
    return folder


class _Serving:
    """Run an app's lifespan and give an HTTP client that calls it in process."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._lifespan: Any = None
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        self._http = httpx.AsyncClient(
            transport=transport, base_url="http://tideflow.test", timeout=120
        )
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        await self._http.aclose()
        await self._lifespan.__aexit__(*exc)


def _app(tideflow: Tideflow, definitions: Path, home: Path, **options: Any) -> FastAPI:
    settings = WorkerSettings(home=home, task_queue=tideflow.task_queue)
    return create_app(
        definitions, client=tideflow.client, settings=settings, triggers=False, **options
    )


@pytest.fixture(scope="module")
def api_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-api-home")


@pytest_asyncio.fixture(scope="module")
async def api(
    tideflow: Tideflow, definitions: Path, api_home: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its default limits on the session's server and worker."""
    app = _app(tideflow, definitions, api_home)
    async with _Serving(app) as http:
        yield http


def _big_definition(nodes: int) -> str:
    """A definition that takes a while to validate (and is refused: its last node's type does
    not exist, so nothing starts)."""
    lines = ["name: Heavy", "vars: {x: 0}", "tasks:"]
    lines += [f"  - {{id: n{i}, type: set, config: {{x: {i}}}}}" for i in range(nodes)]
    lines.append("  - {id: last, type: no_such_type}")
    return "\n".join(lines) + "\n"


# --- defect 4: a posted definition is parsed off the event loop ---------------------------------


async def test_the_api_answers_while_a_heavy_definition_is_parsed(
    api: httpx.AsyncClient,
) -> None:
    body = json.dumps({"definition": _big_definition(5000)}).encode()
    consumed = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        yield body
        consumed.set()  # the API has read the whole body: it parses next

    heavy = asyncio.create_task(
        api.post("/runs", content=stream(), headers={"content-type": "application/json"})
    )
    await consumed.wait()
    health = await api.get("/health")
    assert health.status_code == 200, health.text
    # Ordering, not time: /health was answered while the definition was still being parsed
    # (on the event loop, the parse held every other request until it ended).
    assert not heavy.done()

    response = await heavy
    assert response.status_code == 422, response.text
    problem = response.json()["problems"][0]
    assert "no_such_type" in problem["message"]
    assert problem["line"] == 5004


@pytest_asyncio.fixture(scope="module")
async def strict_api(
    tideflow: Tideflow, definitions: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a 2 s parse timeout, one parse worker, and a parse function that hangs or
    crashes its worker on a marker."""
    from starter.api import ApiLimits, ParseLimits
    from starter.api.parsing import DefinitionParser

    limits = ApiLimits(parse=ParseLimits(timeout_seconds=2, workers=1))
    app = _app(tideflow, definitions, tmp_path_factory.mktemp("strict-home"), limits=limits)
    app.state.tideflow.parser = DefinitionParser(
        limits.parse, parse=f"{__name__}:{faulty_parse.__name__}"
    )
    async with _Serving(app) as http:
        yield http


async def test_a_parse_past_its_timeout_or_a_dying_parser_is_a_422_and_costs_one_worker(
    strict_api: httpx.AsyncClient,
) -> None:
    hung = await strict_api.post("/runs", json={"definition": HANG + _yaml(INLINE)})
    assert hung.status_code == 422, hung.text
    assert hung.json()["problems"][0]["text"] == (
        "<request>:1:1: the definition took too long to parse (more than 2 s)"
    )

    crashed = await strict_api.post("/runs", json={"definition": CRASH + _yaml(INLINE)})
    assert crashed.status_code == 422, crashed.text
    assert "the parser process died (signal 11)" in crashed.json()["problems"][0]["message"]

    # The killed workers were replaced: the next definition parses and runs.
    fine = await strict_api.post(
        "/runs", json={"definition": _yaml(INLINE), "inputs": {"who": "Ada"}}
    )
    assert fine.status_code == 201, fine.text
    report = await strict_api.get(
        f"/runs/{fine.json()['workflow_id']}/report", params={"wait": "true"}
    )
    assert report.json()["outputs"] == {"greeting": "hi Ada"}


async def test_a_yaml_bomb_is_refused_and_the_api_goes_on(strict_api: httpx.AsyncClient) -> None:
    # 9^7 strings from 400 bytes: refused (by a loader bound, the parse timeout or the worker's
    # memory limit), never answered with the API frozen or dead.
    levels = ["a: &a [" + ", ".join(['"xxxxxxxxxx"'] * 9) + "]"]
    for previous, name in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    bomb = "\n".join(levels) + "\nname: bomb\ntasks: []\n"
    response = await strict_api.post("/runs", json={"definition": bomb})
    assert response.status_code == 422, response.text
    assert response.json()["problems"]

    for recursive in ("a: &a [*a]\n", "[" * 500 + "]" * 500):
        answer = await strict_api.post("/runs", json={"definition": recursive})
        assert answer.status_code == 422, answer.text
        assert answer.json()["problems"][0]["text"].startswith("<request>:")
    assert (await strict_api.get("/health")).status_code == 200


# --- defect 7: request bodies and definitions are bounded ---------------------------------------


class _Chunks:
    """A request body of ``count`` chunks of 1 MiB, counting how many the API pulled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0
        self._chunk = b" " * (1024 * 1024)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"definition": "'
        for _ in range(self.count):
            self.pulled += 1
            yield self._chunk


async def test_a_200_mb_body_is_refused_before_it_is_read(api: httpx.AsyncClient) -> None:
    declared = _Chunks(200)
    response = await api.post(
        "/runs",
        content=declared,
        headers={"content-type": "application/json", "content-length": str(200 * 1024 * 1024)},
    )
    assert response.status_code == 413, response.text[:300]
    assert response.json()["detail"].startswith("the request body is larger than 2097152 bytes")
    assert declared.pulled == 0  # refused on its Content-Length

    streamed = _Chunks(200)  # no Content-Length: counted as it arrives
    response = await api.post(
        "/runs", content=streamed, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text[:300]
    assert streamed.pulled <= 3


async def test_uploads_keep_their_own_larger_limit(
    tideflow: Tideflow, definitions: Path, tmp_path: Path
) -> None:
    app = _app(tideflow, definitions, tmp_path, max_upload_bytes=4 * 1024 * 1024)
    async with _Serving(app) as http:
        three_mb = b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024)
        accepted = await http.post(
            "/definitions/hostile-hello/documents",
            files={"file": ("big.pdf", three_mb, "application/pdf")},
        )
        assert accepted.status_code == 201, accepted.text
        assert Path(accepted.json()["document"]).stat().st_size == len(three_mb)

        too_big = b"%PDF-1.4\n" + b"0" * (4 * 1024 * 1024)
        refused = await http.post(
            "/definitions/hostile-hello/documents",
            files={"file": ("bigger.pdf", too_big, "application/pdf")},
        )
        assert refused.status_code == 413, refused.text
        assert "larger than 4194304 bytes" in refused.json()["detail"]
        # A JSON request to the same app keeps the JSON limit.
        json_body = await http.post(
            "/definitions/hostile-hello/runs", json={"inputs": {"who": "x" * (3 * 1024 * 1024)}}
        )
        assert json_body.status_code == 413


async def test_a_definition_is_bounded_in_nodes_before_it_is_validated(
    tideflow: Tideflow, definitions: Path, tmp_path: Path
) -> None:
    from starter.api import ApiLimits, ParseLimits

    limits = ApiLimits(parse=ParseLimits(max_nodes=20))
    async with _Serving(_app(tideflow, definitions, tmp_path, limits=limits)) as http:
        response = await http.post("/runs", json={"definition": _big_definition(20)})
        assert response.status_code == 422, response.text
        problem = response.json()["problems"][0]
        assert problem["text"] == (
            "<request>:3:1: the definition has 21 nodes: at most 20 are accepted"
        )
        as_json = {"name": "J", "tasks": [{"id": f"n{i}", "type": "set"} for i in range(21)]}
        response = await http.post("/runs", json={"definition": as_json})
        assert response.status_code == 422
        assert "21 nodes" in response.json()["problems"][0]["message"]


# --- defect 9: a start with an Idempotency-Key is idempotent ------------------------------------


async def test_a_retried_start_with_the_same_key_returns_the_first_run(
    api: httpx.AsyncClient, tideflow: Tideflow
) -> None:
    key = f"order-{uuid.uuid4()}"
    body = {"definition": _yaml(INLINE), "inputs": {"who": "Lin"}}
    answers = [await api.post("/runs", json=body, headers={"Idempotency-Key": key}) for _ in "123"]
    assert [a.status_code for a in answers] == [201, 200, 200], [a.text for a in answers]
    first = answers[0].json()
    assert all(a.json() == first for a in answers)

    # One run: the id's only execution is the first one, and it ran once.
    handle = tideflow.client.get_workflow_handle(first["workflow_id"])
    assert (await handle.describe()).run_id == first["run_id"]
    # And one start in the lineage (the worker adds the run id when it runs it).
    from sqlalchemy import select

    from starter.lineage import runs_table
    from starter.store import open_store

    with open_store(None).connect() as connection:
        rows = connection.execute(
            select(runs_table.c.run_id).where(runs_table.c.workflow_id == first["workflow_id"])
        ).all()
    assert [row.run_id for row in rows if row.run_id is None] == [None]
    report = await api.get(f"/runs/{first['workflow_id']}/report", params={"wait": "true"})
    assert report.json()["outputs"] == {"greeting": "hi Lin"}

    # Still the first run once it has ended (the retention window, not the run's life).
    again = await api.post("/runs", json=body, headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()["run_id"]) == (200, first["run_id"])

    other = await api.post(
        "/runs",
        json={**body, "inputs": {"who": "Someone else"}},
        headers={"Idempotency-Key": key},
    )
    assert other.status_code == 409, other.text
    assert key in other.json()["detail"]


async def test_every_start_endpoint_honours_the_key(api: httpx.AsyncClient, api_home: Path) -> None:
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await api.post("/definitions/hostile-hello/runs", json={"inputs": {}}, headers=key)
    second = await api.post("/definitions/hostile-hello/runs", json={"inputs": {}}, headers=key)
    assert (first.status_code, second.status_code) == (201, 200), second.text
    assert second.json()["workflow_id"] == first.json()["workflow_id"]
    changed = await api.post(
        "/definitions/hostile-hello/runs", json={"inputs": {"who": "x"}}, headers=key
    )
    assert changed.status_code == 409

    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    document = {"file": ("a.pdf", b"%PDF-1.4 one", "application/pdf")}
    uploaded = await api.post("/definitions/hostile-hello/documents", files=document, headers=key)
    saved = set((api_home / "uploads").iterdir())
    retried = await api.post("/definitions/hostile-hello/documents", files=document, headers=key)
    assert (uploaded.status_code, retried.status_code) == (201, 200), retried.text
    assert retried.json() == uploaded.json()
    assert Path(uploaded.json()["document"]).read_bytes() == b"%PDF-1.4 one"
    assert set((api_home / "uploads").iterdir()) == saved  # the retry's copy is not kept
    other_document = {"file": ("a.pdf", b"%PDF-1.4 two", "application/pdf")}
    conflict = await api.post(
        "/definitions/hostile-hello/documents", files=other_document, headers=key
    )
    assert conflict.status_code == 409
    assert key["Idempotency-Key"] in conflict.json()["detail"]

    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    event = {"payload": {"order": 1}}
    emitted = await api.post("/events/hostile.order.created", json=event, headers=key)
    repeated = await api.post("/events/hostile.order.created", json=event, headers=key)
    assert emitted.status_code == repeated.status_code == 200, repeated.text
    assert [s["definition"] for s in emitted.json()["started"]] == ["hostile-listener"]
    assert repeated.json()["started"] == []
    assert repeated.json()["already_started"] == [emitted.json()["started"][0]["workflow_id"]]
