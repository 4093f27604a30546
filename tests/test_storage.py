"""storage.write / storage.read against files below the file root and a real S3 API (moto)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities import WorkerSettings
from activities.settings import EXAMPLES_FOLDER
from tests.nodes import run_node
from tests.servers.s3 import S3Server, free_port

BINARY = bytes(range(256)) * 4
DOCUMENT = {"invoice": "INV-7", "total": 12.5, "items": [{"sku": "a", "qty": 2}], "ok": True}


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    """Settings whose file root is ``<tmp>/files``."""
    return WorkerSettings(home=tmp_path)


# --- files ------------------------------------------------------------------------------------


async def test_file_round_trips_json_text_and_bytes(settings: WorkerSettings) -> None:
    root = settings.resolved_file_root
    written = await run_node(
        "storage", {"uri": "file://out/doc.json", "content": DOCUMENT}, settings=settings
    )
    path = root / "out" / "doc.json"
    assert written.output["uri"] == path.as_uri()
    assert json.loads(path.read_bytes()) == DOCUMENT
    assert written.output["size"] == path.stat().st_size
    assert written.output["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert written.output["content_type"] == "application/json"
    read = await run_node(
        "storage.read", {"uri": written.output["uri"], "as": "json"}, settings=settings
    )
    assert read.output["content"] == DOCUMENT
    assert read.output["content_type"] == "application/json"

    text = "Grüße\nzweite Zeile"
    await run_node(
        "storage.write", {"uri": "file://notes/a.txt", "content": text}, settings=settings
    )
    assert (root / "notes" / "a.txt").read_text(encoding="utf-8") == text
    read = await run_node("storage.read", {"uri": "file://notes/a.txt"}, settings=settings)
    assert read.output["content"] == text
    assert read.output["size"] == len(text.encode())

    encoded = base64.b64encode(BINARY).decode()
    written = await run_node(
        "storage.write",
        {
            "uri": f"{(root / 'bin' / 'blob.dat').as_uri()}",
            "content": encoded,
            "encoding": "base64",
        },
        settings=settings,
    )
    assert (root / "bin" / "blob.dat").read_bytes() == BINARY
    assert written.output["content_type"] == "application/octet-stream"
    read = await run_node(
        "storage.read",
        {"uri": "file://bin/blob.dat", "as": "bytes_base64"},
        settings=settings,
    )
    assert base64.b64decode(read.output["content"]) == BINARY
    with pytest.raises(ApplicationError) as failure:
        await run_node("storage.read", {"uri": "file://bin/blob.dat"}, settings=settings)
    assert failure.value.non_retryable
    assert "bytes_base64" in failure.value.message


async def test_text_encoding_of_a_json_value_is_a_config_error(
    settings: WorkerSettings,
) -> None:
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "storage.write",
            {"uri": "file://x.txt", "content": {"a": 1}, "encoding": "text"},
            settings=settings,
        )
    assert failure.value.type == "NodeConfigError"
    # A string may still be stored as JSON (quoted) when asked for.
    await run_node(
        "storage.write",
        {"uri": "file://s.json", "content": "plain", "encoding": "json"},
        settings=settings,
    )
    assert (settings.resolved_file_root / "s.json").read_text() == '"plain"'


async def test_seed_form_with_a_default_key(settings: WorkerSettings) -> None:
    written = await run_node(
        "storage",
        {"storage_type": "file", "content": DOCUMENT},
        settings=settings,
        node_id="result_storage",
    )
    path = settings.resolved_file_root / "test-wf" / "result_storage.json"
    assert written.output["uri"] == path.as_uri()
    assert json.loads(path.read_text()) == DOCUMENT


@pytest.mark.parametrize(
    "uri", ["file://../outside.txt", "file:///etc/passwd", "file://a/../../outside.txt"]
)
async def test_paths_leaving_the_file_root_are_rejected(settings: WorkerSettings, uri: str) -> None:
    for node, config in [
        ("storage.write", {"uri": uri, "content": "x"}),
        ("storage.read", {"uri": uri}),
    ]:
        with pytest.raises(ApplicationError) as failure:
            await run_node(node, config, settings=settings)
        assert failure.value.non_retryable
        assert "file root" in failure.value.message
    assert not (settings.home / "outside.txt").exists()


async def test_symlink_out_of_the_root_is_rejected(
    settings: WorkerSettings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    root = settings.resolved_file_root
    root.mkdir(parents=True)
    (root / "link.txt").symlink_to(secret)
    with pytest.raises(ApplicationError) as failure:
        await run_node("storage.read", {"uri": "file://link.txt"}, settings=settings)
    assert failure.value.non_retryable
    assert "do not read" not in failure.value.message


async def test_missing_file_is_permanent(settings: WorkerSettings) -> None:
    with pytest.raises(ApplicationError) as failure:
        await run_node("storage.read", {"uri": "file://nope.txt"}, settings=settings)
    assert failure.value.non_retryable
    assert "nope.txt" in failure.value.message


async def test_config_mistakes(settings: WorkerSettings) -> None:
    cases = [
        {"uri": "file://a.txt", "bucket": "b", "content": "x"},
        {"uri": "ftp://host/a.txt", "content": "x"},
        {"content": "x"},
        {"uri": "file://a.bin", "content": "not base64!", "encoding": "base64"},
        {"uri": "file://a.txt"},
        {"uri": "s3://only-bucket", "content": "x"},
    ]
    for config in cases:
        with pytest.raises(ApplicationError) as failure:
            await run_node("storage.write", config, settings=settings)
        assert failure.value.type == "NodeConfigError", config
        assert failure.value.non_retryable


# --- S3 ---------------------------------------------------------------------------------------


async def test_s3_round_trips(s3_server: S3Server, settings: WorkerSettings) -> None:
    bucket = s3_server.new_bucket()
    s3 = s3_server.client()

    written = await run_node(
        "storage.write",
        {"uri": f"s3://{bucket}/docs/doc.json", "content": DOCUMENT},
        settings=settings,
    )
    stored = s3.get_object(Bucket=bucket, Key="docs/doc.json")
    body = stored["Body"].read()
    assert json.loads(body) == DOCUMENT
    assert stored["ContentType"] == "application/json"
    assert written.output["uri"] == f"s3://{bucket}/docs/doc.json"
    assert written.output["size"] == len(body)
    assert written.output["etag"] == hashlib.md5(body).hexdigest()
    read = await run_node(
        "storage.read", {"uri": f"s3://{bucket}/docs/doc.json", "as": "json"}, settings=settings
    )
    assert read.output["content"] == DOCUMENT
    assert read.output["content_type"] == "application/json"

    await run_node(
        "storage.write",
        {"uri": f"s3://{bucket}/page.html", "content": "<p>héllo</p>"},
        settings=settings,
    )
    assert s3.get_object(Bucket=bucket, Key="page.html")["ContentType"] == "text/html"
    read = await run_node("storage.read", {"uri": f"s3://{bucket}/page.html"}, settings=settings)
    assert read.output["content"] == "<p>héllo</p>"

    encoded = base64.b64encode(BINARY).decode()
    await run_node(
        "storage.write",
        {
            "uri": f"s3://{bucket}/raw",
            "content": encoded,
            "encoding": "base64",
            "content_type": "application/x-test",
        },
        settings=settings,
    )
    assert s3.get_object(Bucket=bucket, Key="raw")["Body"].read() == BINARY
    read = await run_node(
        "storage.read", {"uri": f"s3://{bucket}/raw", "as": "bytes_base64"}, settings=settings
    )
    assert base64.b64decode(read.output["content"]) == BINARY
    assert read.output["content_type"] == "application/x-test"


async def test_s3_seed_form(s3_server: S3Server, settings: WorkerSettings) -> None:
    bucket = s3_server.new_bucket("processed-documents")
    written = await run_node(
        "storage",
        {"storage_type": "s3", "bucket": bucket, "content": DOCUMENT},
        settings=settings,
        node_id="result_storage",
    )
    assert written.output["uri"] == f"s3://{bucket}/test-wf/result_storage.json"
    read = await run_node(
        "storage.read",
        {
            "storage_type": "s3",
            "bucket": bucket,
            "key": "test-wf/result_storage.json",
            "as": "json",
        },
        settings=settings,
    )
    assert read.output["content"] == DOCUMENT
    explicit = await run_node(
        "storage",
        {"bucket": bucket, "key": "chosen/key.txt", "content": "hi"},
        settings=settings,
    )
    assert explicit.output["uri"] == f"s3://{bucket}/chosen/key.txt"


async def test_s3_missing_key_and_bucket_are_permanent(
    s3_server: S3Server, settings: WorkerSettings
) -> None:
    bucket = s3_server.new_bucket()
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "storage.read", {"uri": f"s3://{bucket}/no/such/key.json"}, settings=settings
        )
    assert failure.value.non_retryable
    assert bucket in failure.value.message
    assert "no/such/key.json" in failure.value.message

    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "storage.write",
            {"uri": "s3://tideflow-no-such-bucket/k.txt", "content": "x"},
            settings=settings,
        )
    assert failure.value.non_retryable
    assert "tideflow-no-such-bucket" in failure.value.message


async def test_s3_unreachable_endpoint_is_retryable(
    s3_server: S3Server, settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "storage.write", {"uri": "s3://some-bucket/k.txt", "content": "x"}, settings=settings
        )
    assert not failure.value.non_retryable
    assert "some-bucket" in failure.value.message


# --- the folders and sizes a worker allows -------------------------------------------------------


async def test_uploads_and_configured_roots_are_usable_by_absolute_uri(tmp_path: Path) -> None:
    extra = tmp_path / "shared"
    settings = WorkerSettings(home=tmp_path / "home", file_roots=[extra])
    upload = tmp_path / "home" / "uploads" / "u1" / "in.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("uploaded")
    read = await run_node("storage.read", {"uri": upload.as_uri()}, settings=settings)
    assert read.output["content"] == "uploaded"
    target = extra / "out" / "copy.txt"
    await run_node(
        "storage.write", {"uri": target.as_uri(), "content": "copied"}, settings=settings
    )
    assert target.read_text() == "copied"


async def test_reads_stop_at_the_download_cap(s3_server: S3Server, tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path, max_download_mb=0.1)
    root = settings.resolved_file_root
    root.mkdir(parents=True)
    (root / "big.bin").write_bytes(BINARY * 200)
    bucket = s3_server.new_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="big.bin", Body=BINARY * 200)
    for uri in ["file://big.bin", f"s3://{bucket}/big.bin"]:
        with pytest.raises(ApplicationError) as failure:
            await run_node("storage.read", {"uri": uri, "as": "bytes_base64"}, settings=settings)
        assert failure.value.non_retryable
        assert failure.value.type == "TooLargeError"
        assert "0.195 MB, over the worker's download limit of 0.1 MB" in failure.value.message


def test_worker_limits_from_the_environment(tmp_path: Path) -> None:
    env = {
        "TIDEFLOW_HOME": str(tmp_path),
        "TIDEFLOW_FILE_ROOTS": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "TIDEFLOW_ALLOW_PRIVATE_NETWORKS": "true",
        "TIDEFLOW_MAX_DOWNLOAD_MB": "12.5",
        "TIDEFLOW_MAX_OUTPUT_MB": "3",
    }
    settings = WorkerSettings.from_env(env)
    assert settings.file_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.allowed_file_roots()[-2:] == [tmp_path / "a", tmp_path / "b"]
    assert settings.allow_private_networks is True
    assert (settings.max_download_bytes, settings.max_output_bytes) == (13107200, 3145728)

    plain = WorkerSettings.from_env({"TIDEFLOW_HOME": str(tmp_path)})
    assert (plain.allow_private_networks, plain.max_download_mb, plain.max_output_mb) == (
        False,
        100,
        64,
    )
    dev = plain.for_development()
    assert dev.allow_private_networks is True
    assert EXAMPLES_FOLDER in dev.file_roots and EXAMPLES_FOLDER.is_dir()
    # What the configuration says explicitly wins over the development defaults.
    refused = WorkerSettings.from_env(
        {"TIDEFLOW_HOME": str(tmp_path), "TIDEFLOW_ALLOW_PRIVATE_NETWORKS": "false"}
    )
    assert refused.for_development().allow_private_networks is False
