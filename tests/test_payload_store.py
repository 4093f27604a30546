"""The payload store through a real Temporal dev server: a big value leaves history as a
reference, lands in the store (a folder, or S3 on moto) and comes back intact."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities import WorkerSettings
from activities.payload_store import FileStorageDriver, data_converter, storage_driver
from tests.servers.s3 import S3Server
from tests.servers.temporal import temporal_cli_path

MIB = 1024 * 1024
REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"


def big_text(size: int, seed: str = "tideflow") -> str:
    """``size`` characters of text that no compression or repetition could fake."""
    count = size // 64 + 1  # a sha256 hex digest is 64 characters
    return "".join(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in range(count))[:size]


@activity.defn
async def make_text(size: int) -> str:
    """An activity whose result is big."""
    return big_text(size)


@activity.defn
async def measure(text: str) -> int:
    """An activity whose input is big."""
    return len(text)


@workflow.defn(sandboxed=False)
class BigValues:
    """Passes big values through every hop: client → workflow → activity → workflow → client."""

    @workflow.run
    async def run(self, document: str) -> dict[str, Any]:
        made = await workflow.execute_activity(
            make_text, MIB, start_to_close_timeout=timedelta(seconds=60)
        )
        length = await workflow.execute_activity(
            measure, made, start_to_close_timeout=timedelta(seconds=60)
        )
        return {"made": made, "length": length, "document_length": len(document), "tiny": "ok"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of our own (the session fixture needs the starter, not written yet)."""
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli_path())
    try:
        yield env
    finally:
        await env.shutdown()


async def _run(env: WorkflowEnvironment, settings: WorkerSettings) -> WorkflowHandle[Any, Any]:
    """Run BigValues with a 512 KiB input through a client and worker using the payload store."""
    config = env.client.config()
    config["data_converter"] = data_converter(settings)
    client = Client(**config)
    queue = f"payloads-{uuid.uuid4().hex[:8]}"
    document = big_text(512 * 1024, seed="input")
    async with Worker(
        client,
        task_queue=queue,
        workflows=[BigValues],
        activities=[make_text, measure],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            BigValues.run, document, id=f"big-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        result = await handle.result()
    assert result == {
        "made": big_text(MIB),
        "length": MIB,
        "document_length": 512 * 1024,
        "tiny": "ok",
    }
    return handle


def _history_payloads(event: Any) -> list[Payload]:
    """Every payload an event carries (inputs and results)."""
    found = []
    for attributes in (
        event.workflow_execution_started_event_attributes.input,
        event.activity_task_scheduled_event_attributes.input,
        event.activity_task_completed_event_attributes.result,
        event.workflow_execution_completed_event_attributes.result,
    ):
        found.extend(attributes.payloads)
    return found


async def _assert_history_holds_references(handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    payloads = [p for event in history.events for p in _history_payloads(event)]
    references = [p for p in payloads if p.metadata.get("messageType") == REFERENCE_TYPE]
    # The workflow input, make_text's result, measure's input and the workflow result are big;
    # measure's small int result and size argument stay inline.
    assert len(references) == 4
    assert all(p.ByteSize() < 1024 for p in references)
    inline = [p for p in payloads if p not in references]
    assert inline and all(p.ByteSize() < 1024 for p in inline)
    assert History(events=history.events).ByteSize() < 64 * 1024


def _stored_values(blobs: list[bytes]) -> list[Any]:
    return [json.loads(Payload.FromString(blob).data) for blob in blobs]


async def test_file_store_round_trip(temporal: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path)
    handle = await _run(temporal, settings)
    await _assert_history_holds_references(handle)
    store = tmp_path / "payloads"
    blobs = [p.read_bytes() for p in store.rglob("*") if p.is_file()]
    names = {p.name for p in store.rglob("*") if p.is_file()}
    assert names == {hashlib.sha256(blob).hexdigest() for blob in blobs}
    values = _stored_values(blobs)
    assert big_text(MIB) in values  # make_text's result (also measure's input: same blob)
    assert big_text(512 * 1024, seed="input") in values
    assert any(isinstance(v, dict) and v.get("made") == big_text(MIB) for v in values)


async def test_s3_store_round_trip(temporal: WorkflowEnvironment, s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("payloads")
    settings = WorkerSettings(payload_store=f"s3://{bucket}/tideflow/payloads")
    handle = await _run(temporal, settings)
    await _assert_history_holds_references(handle)
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(key.startswith("tideflow/payloads/v0/") for key in keys)
    blobs = [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    values = _stored_values(blobs)
    assert big_text(MIB) in values
    assert big_text(512 * 1024, seed="input") in values


async def test_small_values_stay_inline(temporal: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path, payload_threshold=4 * MIB)
    handle = await _run(temporal, settings)
    history = await handle.fetch_history()
    payloads = [p for event in history.events for p in _history_payloads(event)]
    assert not any(p.metadata.get("messageType") == REFERENCE_TYPE for p in payloads)
    assert not (tmp_path / "payloads").exists()


async def test_file_driver_detects_a_corrupted_blob(tmp_path: Path) -> None:
    driver = storage_driver((tmp_path / "store").as_uri())
    assert isinstance(driver, FileStorageDriver)
    converter = data_converter(WorkerSettings(home=tmp_path, payload_store=driver.root.as_uri()))
    [encoded] = await converter.encode([big_text(400 * 1024)])
    assert encoded.metadata.get("messageType") == REFERENCE_TYPE
    assert await converter.decode([encoded], [str]) == [big_text(400 * 1024)]
    [blob] = [p for p in driver.root.rglob("*") if p.is_file()]
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(Exception, match="corrupted"):
        await converter.decode([encoded], [str])
    blob.unlink()
    with pytest.raises(Exception, match="missing from the payload store"):
        await converter.decode([encoded], [str])


def test_store_uris() -> None:
    with pytest.raises(ValueError, match="file:///folder or s3://bucket/prefix"):
        storage_driver("gs://bucket")
    with pytest.raises(ValueError, match="needs a bucket"):
        storage_driver("s3:///prefix")
    assert storage_driver("file:///tmp/a%20b").root == Path("/tmp/a b")  # type: ignore[attr-defined]


async def test_s3_client_failures_are_one_line_store_errors(s3_server: S3Server) -> None:
    from activities.payload_store import Boto3S3Client, PayloadStoreError

    bucket = s3_server.new_bucket("payloads")
    client = Boto3S3Client(prefix="tf")
    await client.put_object(bucket=bucket, key="k1", data=b"blob")
    assert await client.get_object(bucket=bucket, key="k1") == b"blob"
    assert await client.object_exists(bucket=bucket, key="k1")
    assert not await client.object_exists(bucket=bucket, key="k2")
    with pytest.raises(PayloadStoreError) as missing:
        await client.get_object(bucket=bucket, key="k2")
    assert str(missing.value) == f"payload s3://{bucket}/tf/k2: no such object (NoSuchKey)"
    with pytest.raises(PayloadStoreError) as no_bucket:
        await client.put_object(bucket="tideflow-no-such-bucket", key="k", data=b"x")
    assert str(no_bucket.value) == (
        "payload s3://tideflow-no-such-bucket/tf/k: no such bucket (NoSuchBucket)"
    )
