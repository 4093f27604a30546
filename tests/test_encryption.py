"""Encryption at rest in Temporal, against a real dev server with its SQLite file on disk: with
``TIDEFLOW_ENCRYPTION_KEYS`` the server's files (database, WAL) and the payload store hold none
of a run's distinctive inputs, outputs, event payloads or error messages, while the client,
the report and the codec server return them; keys rotate under a running run; the codec
server's credentials and definition limits; and the codec's bad inputs."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import DataConverter

from activities import WorkerSettings
from activities.encryption import (
    EncryptionCodec,
    EncryptionError,
    EncryptionKeys,
    KeyConfigError,
    new_key,
)
from activities.payload_store import data_converter
from interpreter import load_string
from starter.auth import Authenticator
from starter.auth.tokens import create_token
from starter.client import TideflowClient
from starter.codec_server import RunDefinitions, create_codec_app
from starter.server import DevServer, free_port
from tests.polling import eventually

SECRET = "quokka-zanzibar-4471"
SHOUTED = "QUOKKA-ZANZIBAR-4471-MOSS"
BLOB_WORD = "lemur-marmalade-"
EVENT = "okapi-tangerine-9"
FAILURE = "kestrel-vermilion-52"

SEALED = """
name: Sealed
inputs:
  secret: {type: string, required: true}
  blob: {type: string, required: true}
tasks:
  - id: shout
    type: code.python
    config:
      code: "return {'loud': inputs['secret'].upper() + '-MOSS', 'size': len(inputs['blob'])}"
  - id: gate
    type: wait_for_event
    depends_on: [shout]
    config: {event: sealed.go, timeout: 1h}
outputs:
  loud: ${{ nodes.shout.output.loud }}
  size: ${{ nodes.shout.output.size }}
  echoed: ${{ inputs.secret }}
  heard: ${{ nodes.gate.output.payload }}
"""

BROKEN = """
name: Sealed Broken
inputs:
  secret: {type: string, required: true}
tasks:
  - id: fail
    type: code.python
    config:
      code: "raise ValueError('cannot file ' + inputs['secret'])"
"""


@dataclass
class Sealed:
    """A dev server with its files, keys, settings."""

    server: DevServer
    settings: WorkerSettings
    k1: str
    k2: str

    def keys(self, text: str) -> EncryptionCodec:
        return EncryptionCodec(EncryptionKeys.parse(text))

    async def client(self, keys: str) -> Client:
        return await Client.connect(
            self.server.address,
            data_converter=data_converter(self.settings, codec=self.keys(keys)),
        )

    def stored_bytes(self) -> bytes:
        """Every file the server and the payload store wrote."""
        files = [p for p in self.server.data_dir.rglob("*") if p.is_file()]
        files += [p for p in (self.settings.home / "payloads").rglob("*") if p.is_file()]
        return b"".join(p.read_bytes() for p in files)


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[Sealed]:
    server = DevServer(data_dir=tmp_path / "server", port=free_port(), headless=True)
    server.start()
    settings = WorkerSettings(
        home=tmp_path / "home",
        task_queue=f"sealed-{uuid.uuid4().hex[:6]}",
        payload_threshold=2048,  # the blob input goes to the payload store
    )
    try:
        yield Sealed(server, settings, f"k1:{new_key()}", f"k2:{new_key()}")
    finally:
        server.stop()


@pytest_asyncio.fixture
async def worker_k1(sealed: Sealed) -> AsyncIterator[Client]:
    from worker import running_worker

    client = await sealed.client(sealed.k1)
    async with running_worker(client, sealed.settings):
        yield client


def _definition(text: str) -> Any:
    from activities import registry

    return load_string(text, "<sealed>", catalog=registry)


async def _waiting_for_event(tideflow: TideflowClient, workflow_id: str) -> None:
    async def waiting() -> dict[str, str]:
        try:
            return (await tideflow.get_run(workflow_id).state(timeout=5)).waiting
        except Exception:
            return {}

    await eventually(waiting, lambda w: w == {"gate": "event:sealed.go"}, "waiting for the event")


async def test_nothing_distinctive_is_stored_in_plain_text(
    sealed: Sealed, worker_k1: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tideflow = TideflowClient(worker_k1, task_queue=sealed.settings.task_queue, audit=False)
    inputs = {"secret": SECRET, "blob": BLOB_WORD * 400}
    run = await tideflow.start(_definition(SEALED), inputs)
    await _waiting_for_event(tideflow, run.id)
    await run.emit("sealed.go", {"word": EVENT})
    report = await run.report()
    assert report.status == "completed", report.error
    assert report.outputs == {
        "loud": SHOUTED,
        "size": len(inputs["blob"]),
        "echoed": SECRET,
        "heard": {"word": EVENT},
    }
    broken = await tideflow.start(_definition(BROKEN), {"secret": FAILURE})
    failed = await broken.report()
    assert failed.status == "failed" and FAILURE in (failed.error or "")

    stored = sealed.stored_bytes()
    assert len(stored) > 100_000
    for marker in (SECRET, SHOUTED, BLOB_WORD * 3, EVENT, FAILURE):
        assert marker.encode() not in stored, f"{marker} is stored in plain text"
    # Search attributes and the runs' titles stay readable (and show the search would work).
    assert b"sealed" in stored and b"Sealed Broken" in stored
    assert run.id.encode() in stored
    # The payload store holds the blob, encrypted.
    blobs = list((sealed.settings.home / "payloads").rglob("*/*/*"))
    assert blobs and all(b"binary/encrypted" in blob.read_bytes() for blob in blobs)

    # The history's payloads are ciphertext bound to their run; the codec server decodes them.
    raw = Client(worker_k1.service_client, namespace="default")  # no codec: what is stored
    history = await raw.get_workflow_handle(run.id).fetch_history()
    [stored_result] = [
        payload
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        for payload in event.activity_task_completed_event_attributes.result.payloads
    ]
    assert stored_result.metadata["encoding"] == b"binary/encrypted"
    assert stored_result.metadata["encryption-key-id"] == b"k1"
    assert stored_result.metadata["tideflow-workflow-id"] == run.id.encode()
    # The input went to the payload store: history keeps a reference to an encrypted blob.
    started = history.events[0].workflow_execution_started_event_attributes
    assert b"binary/encrypted" not in started.input.payloads[0].SerializeToString()

    store = f"sqlite:///{tmp_path / 'codec.db'}"
    viewer = create_token("viewer", ["viewer"], store_url=store)
    mine = create_token("mine", ["viewer"], definitions=["sealed*"], store_url=store)
    theirs = create_token("theirs", ["admin"], definitions=["payroll-*"], store_url=store)
    monkeypatch.setenv("TEMPORAL_ADDRESS", sealed.server.address)
    app = create_codec_app(
        sealed.keys(sealed.k1),
        authenticator=Authenticator(store_url=store, environ={}),
        definitions=RunDefinitions(),
    )
    body = {"payloads": [MessageToDict(stored_result)]}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec.test") as http:
        nobody = await http.post("/decode", json=body)
        assert nobody.status_code == 401
        assert "authentication required" in nobody.json()["detail"]
        assert SHOUTED not in nobody.text

        for token in (viewer, mine):
            decoded = await http.post(
                "/decode", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert decoded.status_code == 200, decoded.text
            [payload] = decoded.json()["payloads"]
            assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
            assert SHOUTED in base64.b64decode(payload["data"]).decode()

        refused = await http.post(
            "/decode", json=body, headers={"Authorization": f"Bearer {theirs}"}
        )
        assert refused.status_code == 403
        assert f"not of run {run.id!r}" in refused.json()["detail"]
        assert SHOUTED not in refused.text

        # Encode, then decode: the round trip the Web UI makes when it sends a signal.
        plain = DataConverter.default.payload_converter.to_payloads([{"hello": "ui"}])[0]
        encoded = await http.post(
            "/encode",
            json={"payloads": [MessageToDict(plain)]},
            headers={"Authorization": f"Bearer {viewer}"},
        )
        assert encoded.status_code == 200
        back = await http.post(
            "/decode", json=encoded.json(), headers={"Authorization": f"Bearer {viewer}"}
        )
        assert back.json()["payloads"][0] == MessageToDict(plain)

        malformed = await http.post(
            "/decode", content=b"[1, 2]", headers={"Authorization": f"Bearer {viewer}"}
        )
        assert malformed.status_code == 400 and "payloads" in malformed.json()["detail"]

        preflight = await http.options(
            "/decode",
            headers={
                "Origin": "http://localhost:8233",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"
        stranger = await http.options(
            "/decode",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in stranger.headers


async def test_a_run_started_under_the_old_key_finishes_under_the_new_list(
    sealed: Sealed, tmp_path: Path
) -> None:
    from worker import running_worker

    old = await sealed.client(sealed.k1)
    first = TideflowClient(old, task_queue=sealed.settings.task_queue, audit=False)
    async with running_worker(old, sealed.settings):
        run = await first.start(_definition(SEALED), {"secret": SECRET, "blob": "short"})
        await _waiting_for_event(first, run.id)

    # Rotation: every process now encrypts with k2 and still reads k1.
    rotated = await sealed.client(f"{sealed.k2},{sealed.k1}")
    second = TideflowClient(rotated, task_queue=sealed.settings.task_queue, audit=False)
    async with running_worker(rotated, sealed.settings):
        await second.get_run(run.id).emit("sealed.go", EVENT)
        report = await second.get_run(run.id).report()
    assert report.status == "completed", report.error
    assert (report.outputs["echoed"], report.outputs["heard"]) == (SECRET, EVENT)

    raw = Client(rotated.service_client, namespace="default")
    history = await raw.get_workflow_handle(run.id).fetch_history()
    key_ids = {
        p.metadata["encryption-key-id"].decode()
        for event in history.events
        for p in _payloads(event)
        if p.metadata.get("encoding") == b"binary/encrypted"
    }
    assert key_ids == {"k1", "k2"}

    # With only the new key, the old run's input names the key it needs.
    started = history.events[0].workflow_execution_started_event_attributes
    with pytest.raises(EncryptionError, match="key id 'k1', which is not among the keys"):
        await sealed.keys(sealed.k2).decode(list(started.input.payloads))
    app = create_codec_app(
        sealed.keys(sealed.k2),
        authenticator=Authenticator(store_url=f"sqlite:///{tmp_path / 'c.db'}", environ={}),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec.test") as http:
        body = {"payloads": [MessageToDict(p) for p in started.input.payloads]}
        answer = await http.post("/decode", json=body)  # no token exists: local, loopback
        assert answer.status_code == 422
        assert "key id 'k1'" in answer.json()["detail"] and SECRET not in answer.text


def _payloads(event: Any) -> list[Payload]:
    """Every payload an event carries (inputs, results, signals, updates)."""
    found: list[Payload] = []

    def walk(message: Any) -> None:
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if isinstance(value, Message):
                items = [value]
            elif hasattr(value, "values"):  # a map field
                items = list(value.values())
            else:  # a repeated field
                items = list(value)
            for item in items:
                if isinstance(item, Payload):
                    found.append(item)
                elif hasattr(item, "ListFields"):
                    walk(item)

    walk(event)
    return found


# --- the codec and its keys ---------------------------------------------------------------------


def test_keys_are_parsed_with_clear_errors() -> None:
    good = new_key()
    keys = EncryptionKeys.parse(f" new:{good} , old:{new_key()}")
    assert list(keys.keys) == ["new", "old"] and keys.current == "new"
    cases = {
        "": "is empty",
        "k1": "entry 1: write it as ID:BASE64KEY",
        f"k1:{good},k1:{good}": "'k1' is listed twice",
        "k1:not base64!": "not valid base64",
        f"k1:{base64.b64encode(b'short').decode()}": "is 5 bytes; AES-256 keys are 32 bytes",
        f"bad id:{good}": "letters, digits",
    }
    for text, message in cases.items():
        with pytest.raises(KeyConfigError, match=message) as raised:
            EncryptionKeys.parse(text)
        assert good not in str(raised.value)  # never the key material


async def test_the_codec_authenticates_key_and_run_and_passes_plain_payloads() -> None:
    from temporalio.converter import WorkflowSerializationContext

    codec = EncryptionCodec(EncryptionKeys.parse(f"k1:{new_key()}"))
    plain = DataConverter.default.payload_converter.to_payloads(["hello"])[0]
    bound = codec.with_context(WorkflowSerializationContext(namespace="n", workflow_id="run-1"))
    [sealed] = await bound.encode([plain])
    assert b"hello" not in sealed.SerializeToString()
    assert await codec.decode([sealed]) == [plain]
    assert await codec.decode([plain]) == [plain]  # not encrypted: passed through
    assert await codec.encode([sealed]) == [sealed]  # never encrypted twice

    moved = Payload()
    moved.CopyFrom(sealed)
    moved.metadata["tideflow-workflow-id"] = b"another-run"
    with pytest.raises(EncryptionError, match="does not decrypt with that key"):
        await codec.decode([moved])
    other = EncryptionCodec(EncryptionKeys.parse(f"k1:{new_key()}"))
    with pytest.raises(EncryptionError, match="does not decrypt with that key"):
        await other.decode([sealed])


def _cli(*args: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stderr

    from starter.cli import main

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def test_the_cli_refuses_bad_keys_and_a_codec_server_without_keys_or_auth(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TIDEFLOW_ENCRYPTION_KEYS", raising=False)
    code, err = _cli("codec-server")
    assert code == 2 and "TIDEFLOW_ENCRYPTION_KEYS is not set" in err
    monkeypatch.setenv("TIDEFLOW_ENCRYPTION_KEYS", f"k1:{new_key()}")
    code, err = _cli("codec-server", "--host", "0.0.0.0")
    assert code == 2 and "refusing to listen on 0.0.0.0 without authentication" in err
    monkeypatch.setenv("TIDEFLOW_ENCRYPTION_KEYS", "k1:c2hvcnQ=")
    code, err = _cli("codec-server")
    assert code == 2 and "is 5 bytes; AES-256 keys are 32 bytes" in err
    code, err = _cli("list")
    assert (code, err.strip()) == (
        2,
        "TIDEFLOW_ENCRYPTION_KEYS entry 1 ('k1'): the key is 5 bytes; AES-256 keys are 32 bytes "
        "(make one with: tideflow encryption-key)",
    )
