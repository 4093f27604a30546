"""A plan a worker cannot load fails its run and leaves the worker serving (issue 8, defect 3).

A definition started from any Temporal client reaches the worker without passing Tideflow's
starter. An expression of 30,000 terms made the CEL parser overflow its stack inside the
workflow task: the worker process died with SIGSEGV, and the next worker to pick the task up
died in turn. Here a real worker process and the real ``temporal`` CLI: the poisoned run must
fail with a readable error naming the limit, and the same worker must then complete a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from interpreter.limits import MAX_EXPRESSION_CHARS
from starter import client as tideflow_client
from tests.hostile._language import REPO
from tests.servers.temporal import temporal_cli_path


@pytest.fixture
def worker_process(temporal_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[Any]:
    """``python worker.py`` polling a queue of its own on the session's dev server."""
    queue = f"hostile-{uuid.uuid4().hex[:8]}"
    log = (tmp_path / "worker.log").open("w")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TIDEFLOW_TASK_QUEUE": queue,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
    }
    process = subprocess.Popen(
        [sys.executable, "worker.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    process.queue = queue  # type: ignore[attr-defined]
    process.log = tmp_path / "worker.log"  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


async def _start_with_the_cli(
    client: Client, queue: str, run_input: dict[str, Any], tmp_path: Path
) -> str:
    """``temporal workflow start --input-file``, as any Temporal client could."""
    workflow_id = f"hostile-{uuid.uuid4().hex[:8]}"
    input_file = tmp_path / f"{workflow_id}.json"
    input_file.write_text(json.dumps(run_input))
    process = await asyncio.create_subprocess_exec(
        temporal_cli_path(),
        "workflow",
        "start",
        "--type",
        "TideflowWorkflow",
        "--task-queue",
        queue,
        "--workflow-id",
        workflow_id,
        "--input-file",
        str(input_file),
        "--address",
        client.service_client.config.target_host,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return workflow_id


async def _outcome(client: Client, workflow_id: str, worker: Any) -> Any:
    """The run's result or failure; fails the test at once if the worker process dies."""
    result = asyncio.ensure_future(client.get_workflow_handle(workflow_id).result())
    try:
        while not result.done():
            if worker.poll() is not None:
                log = Path(worker.log).read_text()[-2000:]
                pytest.fail(f"the worker died with exit code {worker.returncode}:\n{log}")
            await asyncio.wait([result], timeout=0.5)
        return result.result()
    except WorkflowFailureError as e:
        return e
    finally:
        result.cancel()


async def test_a_poisoned_definition_fails_its_run_and_the_worker_serves_on(
    temporal_env: WorkflowEnvironment, worker_process: Any, tmp_path: Path
) -> None:
    client = temporal_env.client
    poison = {
        "definition": {
            "name": "poison",
            "tasks": [
                {
                    "id": "boom",
                    "type": "wait",
                    "config": {"duration": "1s"},
                    "when": "${{ " + "+".join(["1"] * 30_000) + " }}",
                }
            ],
        },
        "inputs": {},
    }
    poisoned = await _start_with_the_cli(client, worker_process.queue, poison, tmp_path)
    failure = await _outcome(client, poisoned, worker_process)
    assert isinstance(failure, WorkflowFailureError), failure
    message = str(failure.cause)
    assert "invalid definition" in message
    assert f"expression too long: 60,001 characters (at most {MAX_EXPRESSION_CHARS:,})" in message
    assert "Traceback" not in message

    healthy = {
        "definition": {
            "name": "healthy",
            "vars": {"greeting": ""},
            "tasks": [{"id": "hello", "type": "set", "config": {"greeting": "still serving"}}],
            "outputs": {"greeting": "${{ vars.greeting }}"},
        },
        "inputs": {},
    }
    served = await _start_with_the_cli(client, worker_process.queue, healthy, tmp_path)
    await _outcome(client, served, worker_process)
    report = await tideflow_client.result(client, served)
    assert report.status == "completed", report.error
    assert report.outputs == {"greeting": "still serving"}
    assert worker_process.poll() is None, "the worker is still running"


async def test_a_poisoned_or_malformed_plan_fails_its_run_and_the_worker_serves_on(
    temporal_env: WorkflowEnvironment, worker_process: Any, tmp_path: Path
) -> None:
    # The same through the plan format the starter writes (format 2), where the workflow does
    # not validate: an expression over the limits, and plans that are not plans at all.
    client = temporal_env.client
    long_when = "${{ " + "+".join(["1"] * 30_000) + " }}"
    cases = {
        "expression too long: 60,001 characters": {
            "format": 2,
            "name": "poison",
            "nodes": [
                {"id": "boom", "type": "wait", "config": {"duration": "1s"}, "when": long_when}
            ],
        },
        "the plan's graph has a cycle through a, b": {
            "format": 2,
            "name": "cycle",
            "nodes": [
                {"id": "a", "type": "set", "depends_on": ["b"]},
                {"id": "b", "type": "set", "depends_on": ["a"]},
            ],
        },
        "plan format 99 is not one this worker reads": {"format": 99, "nodes": []},
        "names unknown node 'ghost'": {
            "format": 2,
            "name": "ghost",
            "nodes": [{"id": "a", "type": "set", "depends_on": ["ghost"]}],
        },
    }
    for expected, plan in cases.items():
        workflow_id = await _start_with_the_cli(
            client, worker_process.queue, {"plan": plan, "inputs": {}}, tmp_path
        )
        failure = await _outcome(client, workflow_id, worker_process)
        assert isinstance(failure, WorkflowFailureError), failure
        message = str(failure.cause)
        assert message.startswith("InvalidPlan: invalid plan: "), message
        assert expected in message, message
    assert worker_process.poll() is None, "the worker is still running"
