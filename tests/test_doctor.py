"""``tideflow doctor`` against real servers: a healthy deployment exits 0; a namespace without
Tideflow's search attributes, a task queue no worker polls and a database that does not answer
each fail with their fix, and exit 1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, RegisterNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings
from starter.doctor import Report, diagnose, subject_of
from starter.server import free_port
from starter.triggers import new_catalog
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow

ROOT = Path(__file__).resolve().parent.parent

DEFINITION = """
name: Doctor Check
version: "2.1"
tasks:
  - id: first
    type: set
    config: {}
  - id: heavy
    type: set
    task_queue: POOL
    depends_on: [first]
    config: {}
"""


async def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``tideflow doctor`` in a process of its own (the test's event loop keeps running: the
    session's worker polls in this process)."""
    return await asyncio.to_thread(_run_doctor, env, *args)


def _run_doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starter.cli", "doctor", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _diagnose(env: dict[str, str], folder: Path) -> Report:
    """The same checks in this process (the table ``doctor`` prints without ``--json``)."""
    variables = {k: v for k, v in env.items() if k.startswith("TIDEFLOW_")}
    settings = WorkerSettings.from_env({**os.environ, **variables})
    subject = subject_of(
        settings,
        new_catalog(folder),
        address=env["TEMPORAL_ADDRESS"],
        namespace=env.get("TEMPORAL_NAMESPACE"),
    )
    return await diagnose(subject, clock=False)


def _definitions(tmp_path: Path, pool: str) -> Path:
    folder = tmp_path / "definitions"
    folder.mkdir()
    text = textwrap.dedent(DEFINITION).replace("POOL", pool)
    (folder / "doctor.yaml").write_text(text)
    return folder


async def test_a_healthy_deployment_passes_every_check(
    tideflow: Tideflow, postgres_url: str, tmp_path: Path
) -> None:
    # The session worker polls its queue; the definition's node pool is that queue too.
    folder = _definitions(tmp_path, tideflow.task_queue)
    env = {
        "TEMPORAL_ADDRESS": tideflow.address,
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_DATABASE_WAREHOUSE": postgres_url,
    }
    done = await _doctor(env, "--definitions", str(folder), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is True
    assert {c["status"] for c in checks.values()} <= {"ok", "skip"}, checks
    worker = checks[f"worker {tideflow.task_queue}"]
    assert "used by doctor-check 2.1" in worker["detail"]
    assert checks["database warehouse"]["status"] == "ok"
    assert checks["clock"]["status"] == "ok"
    assert checks["model"] == {
        "name": "model",
        "status": "skip",
        "detail": "no definition has AI nodes",
        "fix": None,
    }

    table = (await _diagnose(env, folder)).table()
    assert table.splitlines()[-1] == "healthy"


async def test_each_problem_is_named_with_its_fix(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = temporal_env.client
    # A namespace of its own: Tideflow's search attributes were never registered there.
    namespace = f"doctor-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400 * 3)
        )
    )

    async def usable() -> bool:
        try:
            await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace=namespace, task_queue=TaskQueue(name="x"))
            )
        except Exception:
            return False
        return True

    await eventually(usable, what=f"namespace {namespace}")
    queue, pool = f"idle-{uuid.uuid4().hex[:6]}", f"gpu-{uuid.uuid4().hex[:6]}"
    env = {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": namespace,
        "TIDEFLOW_TASK_QUEUE": queue,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_DATABASE_ORDERS": f"postgresql+psycopg://app:s3cret@127.0.0.1:{free_port()}/o",
    }
    folder = _definitions(tmp_path, pool)
    done = await _doctor(env, "--definitions", str(folder), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    checks: dict[str, dict[str, Any]] = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    failed = {name for name, check in checks.items() if check["status"] == "fail"}
    assert failed == {"search attributes", f"worker {queue}", f"worker {pool}", "database orders"}

    attributes = checks["search attributes"]
    assert attributes["detail"].startswith(
        f"missing in {namespace!r}: TideflowDefinition, TideflowVersion, TideflowStatus"
    )
    assert (
        f"temporal operator search-attribute create --namespace {namespace} "
        "--name TideflowStatus --type Keyword"
    ) in attributes["fix"]
    runs = checks[f"worker {queue}"]
    assert runs["detail"] == "no worker polls this runs queue (used by doctor-check 2.1)"
    assert runs["fix"] == f"start a worker: `TIDEFLOW_TASK_QUEUE={queue} tideflow worker`"
    nodes = checks[f"worker {pool}"]
    assert nodes["detail"] == "no worker polls this node pool queue (used by doctor-check 2.1)"
    assert f"`pools: {{{pool}: {{}}}}`" in nodes["fix"]
    database = checks["database orders"]
    assert database["detail"].startswith("postgresql+psycopg://app:***@127.0.0.1:")
    assert database["fix"].startswith("check TIDEFLOW_DATABASE_ORDERS (databases.orders)")
    assert checks["namespace"]["detail"] == f"{namespace}, retention 3 day(s)"

    # The table: every failure followed by its fix.
    lines = (await _diagnose(env, folder)).table().splitlines()
    for name in ("search attributes", f"worker {queue}", f"worker {pool}", "database orders"):
        row = next(i for i, line in enumerate(lines) if line.startswith(f"{name} "))
        assert " FAIL " in lines[row]
        assert lines[row + 1].strip().startswith("fix: ")
    assert lines[-1] == "4 problem(s)"


async def test_an_unreachable_server_fails_the_temporal_check_and_skips_what_needs_it(
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = await _doctor({"TEMPORAL_ADDRESS": address, "TIDEFLOW_HOME": str(tmp_path)}, "--json")
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["temporal"]["detail"] == (
        f"cannot reach Temporal at {address}: nothing is listening there"
    )
    assert "tideflow server" in checks["temporal"]["fix"]
    assert checks["workers"]["status"] == checks["clock"]["status"] == "skip"
    assert checks["store"]["status"] == checks["payload store"]["status"] == "ok"


async def test_the_encryption_check_round_trips_the_configured_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from activities.encryption import KEYS_VARIABLE, new_key
    from starter.doctor import _encryption

    settings = WorkerSettings()
    monkeypatch.delenv(KEYS_VARIABLE, raising=False)
    (off,) = await _encryption(settings)
    assert (off.status, off.detail) == (
        "skip",
        f"payloads are not encrypted ({KEYS_VARIABLE} unset)",
    )
    key = new_key()
    monkeypatch.setenv(KEYS_VARIABLE, f"k2:{key},k1:{new_key()}")
    (on,) = await _encryption(settings)
    assert on.status == "ok" and "2 key(s); new payloads use key 'k2'" in on.detail
    assert key not in on.detail
    monkeypatch.setenv(KEYS_VARIABLE, f"k1:{key[:20]}")
    (bad,) = await _encryption(settings)
    assert bad.status == "fail" and "entry 1 ('k1')" in bad.detail
    assert key[:20] not in bad.detail
