"""Resource isolation: a node's ``resource_limits`` applied by code.python (CPU, memory, output)
and by every node (``max_output_kb``) within the worker's ceilings, and workers restricted to
some node types and task queues so untrusted code runs only on a pool set apart for it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings
from activities.code import CodePythonConfig, _Limits
from activities.settings import CodeSettings
from starter import client as tideflow_client
from tests.servers.tideflow_worker import Tideflow


def _code(code: str, limits: str) -> str:
    return f"""
name: Limited
tasks:
  - id: work
    type: code.python
    resource_limits: {limits}
    config:
      code: "{code}"
"""


async def _error(tideflow: Tideflow, text: str) -> str:
    report = await tideflow.run(text)
    assert report.status == "failed"
    node = report.nodes["work"]
    assert node.attempts == 1  # a limit is not retried
    return node.error or ""


async def test_code_limits_from_the_nodes_resource_limits(tideflow: Tideflow) -> None:
    cpu = await _error(tideflow, _code("while True: pass", "{cpu_seconds: 1}"))
    assert "exceeded its time limit of 1 s (CPU time)" in cpu
    memory = await _error(tideflow, _code("return len([0] * 10**8)", "{memory_mb: 96}"))
    assert "exceeded its memory limit of 96 MB" in memory
    output = await _error(tideflow, _code("return 'x' * 5000", "{output_kb: 2}"))
    assert "over its output limit of 2 KiB (resource_limits.output_kb)" in output
    # Within its limits the same node runs.
    report = await tideflow.run(_code("return 'x' * 500", "{output_kb: 2, cpu_seconds: 2}"))
    assert report.status == "completed"
    assert report.nodes["work"].output == "x" * 500


async def test_max_output_kb_holds_for_every_node(tideflow: Tideflow) -> None:
    big = await _error(tideflow, _code("return 'y' * 4000", "{max_output_kb: 1}"))
    assert "over the node's resource_limits.max_output_kb of 1 KiB" in big
    folder = tideflow.home / "files"
    folder.mkdir(parents=True, exist_ok=True)
    document = folder / f"long-{uuid.uuid4().hex[:6]}.txt"
    document.write_text("word " * 2000)
    report = await tideflow.run(
        f"""
name: Parse Limited
tasks:
  - id: work
    type: documents.parse
    resource_limits: {{max_output_kb: 2}}
    config: {{source: "{document}"}}
"""
    )
    assert report.status == "failed"
    assert "max_output_kb of 2 KiB" in (report.nodes["work"].error or "")


def _ctx(code: CodeSettings, limits: dict[str, Any] | None) -> Any:
    return SimpleNamespace(settings=WorkerSettings(code=code), limits=limits)


def test_limits_stay_within_the_workers_ceilings() -> None:
    config = CodePythonConfig(code="return 1")
    defaults = _Limits.of(config, _ctx(CodeSettings(), None))
    assert (defaults.cpu, defaults.memory_mb, defaults.wall, defaults.output_bytes) == (
        10,
        512,
        30.0,
        None,
    )
    asked = {"cpu_seconds": 120, "memory_mb": 4096, "wall_seconds": 600, "output_kb": 8}
    capped = _Limits.of(config, _ctx(CodeSettings(), asked))
    assert (capped.cpu, capped.memory_mb, capped.wall) == (10, 512, 30.0)
    assert capped.output_bytes == 8 * 1024
    assert capped.notes["wall"] == " (asked 600; the worker's ceiling)"
    raised = CodeSettings(max_cpu_seconds=60, max_memory_mb=2048, max_wall_seconds=120)
    allowed = _Limits.of(config, _ctx(raised, asked))
    assert (allowed.cpu, allowed.memory_mb, allowed.wall, allowed.notes) == (
        60,
        2048,
        120.0,
        {
            "cpu": " (asked 120; the worker's ceiling)",
            "memory": " (asked 4096; the worker's ceiling)",
            "wall": " (asked 600; the worker's ceiling)",
        },
    )
    lower = _Limits.of(config, _ctx(raised, {"cpu_seconds": 2, "memory_mb": 64}))
    assert (lower.cpu, lower.memory_mb, lower.notes) == (2, 64, {})


def test_node_types_and_queues_from_the_environment() -> None:
    settings = WorkerSettings.from_env(
        {
            "TIDEFLOW_TASK_QUEUE": "untrusted",
            "TIDEFLOW_NODE_TYPES": "code.*, ai.*",
            "TIDEFLOW_EXCLUDE_NODE_TYPES": "ai.extract",
            "TIDEFLOW_TASK_QUEUES": "spare",
            "TIDEFLOW_WORKFLOWS": "false",
            "TIDEFLOW_HOME": "/tmp/tideflow-unused",
        }
    )
    assert settings.served_queues == ["untrusted", "spare"] and settings.workflows is False
    assert settings.serves("code.python") and settings.serves("ai.classify")
    assert not settings.serves("ai.extract") and not settings.serves("http.request")


# --- an untrusted-code pool ----------------------------------------------------------------------


@dataclass
class Pools:
    """A main worker that never runs code, and a pool that runs nothing but code."""

    main: str
    pool: str
    env: WorkflowEnvironment

    async def run(self, text: str) -> Any:
        from activities import registry
        from interpreter import load_string

        definition = load_string(text.replace("POOL", self.pool), "<pools>", catalog=registry)
        return await tideflow_client.run(self.env.client, definition, task_queue=self.main)


@pytest_asyncio.fixture
async def pools(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Pools]:
    from worker import running_worker

    suffix = uuid.uuid4().hex[:6]
    main = WorkerSettings(
        home=tmp_path / "main", task_queue=f"main-{suffix}", exclude_node_types=["code.python"]
    )
    pool = WorkerSettings(
        home=tmp_path / "pool",
        task_queue=f"untrusted-{suffix}",
        node_types=["code.*"],
        workflows=False,
        code=CodeSettings(cpu_seconds=2, memory_mb=128, wall_seconds=10),
    )
    async with (
        running_worker(temporal_env.client, main),
        running_worker(temporal_env.client, pool),
    ):
        yield Pools(main.task_queue, pool.task_queue, temporal_env)


async def test_untrusted_code_runs_only_on_its_pool(pools: Pools) -> None:
    on_pool = await pools.run(
        """
name: Pooled
vars: {seen: ""}
tasks:
  - id: greet
    type: set
    config: {seen: main}
  - id: compute
    type: code.python
    task_queue: POOL
    depends_on: [greet]
    config: {code: "return sum(range(10))"}
outputs:
  total: ${{ nodes.compute.output }}
"""
    )
    assert on_pool.status == "completed", on_pool.error
    assert on_pool.outputs == {"total": 45}

    misrouted = await pools.run(
        """
name: Misrouted
tasks:
  - id: compute
    type: code.python
    config: {code: "return 1"}
"""
    )
    assert misrouted.status == "failed"
    error = misrouted.nodes["compute"].error or ""
    assert f"does not run code.python nodes on task queue {pools.main!r}" in error
    assert misrouted.nodes["compute"].attempts == 1

    wrong_pool = await pools.run(
        """
name: Wrong Pool
tasks:
  - id: fetch
    type: http.request
    task_queue: POOL
    config: {url: "http://127.0.0.1:9/"}
"""
    )
    assert wrong_pool.status == "failed"
    assert f"does not run http.request nodes on task queue {pools.pool!r}" in (
        wrong_pool.nodes["fetch"].error or ""
    )
