"""The worker configuration: seed 003's ``workflow_engine`` block loads as written and drives the
worker (slots, the default retry of runs, the metrics export, extensions); what does not fit is
one located line per problem; node pools get Temporal's task-queue rate limit; a run's priority
orders its tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, RateLimitSource, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings
from activities.settings import SettingsError
from interpreter.plan import plans
from starter.client import TideflowClient, run_input
from starter.server import free_port
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow

ROOT = Path(__file__).resolve().parent.parent

SEED_003 = """\
workflow_engine:
  type: "sequential"
  max_concurrent_workflows: 20
  state_persistence: true
  error_handling:
    retry_attempts: 3
    backoff_strategy: "exponential"
  monitoring:
    enabled: true
    metrics: ["latency", "throughput", "failures"]
  extensions:
    - name: "custom_logger"
      enabled: true
"""


def _settings(tmp_path: Path, text: str, **env: str) -> WorkerSettings:
    config = tmp_path / "worker.yaml"
    config.write_text(text)
    return WorkerSettings.from_env(
        {"TIDEFLOW_CONFIG": str(config), "TIDEFLOW_HOME": str(tmp_path), **env}
    )


def _problems(tmp_path: Path, text: str, **env: str) -> list[str]:
    with pytest.raises(SettingsError) as error:
        _settings(tmp_path, text, **env)
    return str(error.value).splitlines()


def test_seed_003s_engine_configuration_loads_as_written(tmp_path: Path) -> None:
    settings = _settings(tmp_path, SEED_003)
    assert settings.max_concurrent_workflow_tasks == 20
    assert settings.default_retry is not None
    assert (settings.default_retry.max_attempts, settings.default_retry.backoff) == (
        4,
        "exponential",
    )
    assert settings.monitoring.enabled
    assert settings.monitoring.metrics == ["latency", "throughput", "failures"]
    assert [(e.name, e.enabled) for e in settings.extensions] == [("custom_logger", True)]
    assert settings.extensions[0].where == f"{tmp_path / 'worker.yaml'}:12:13"
    assert settings.config_file == tmp_path / "worker.yaml"


def test_what_does_not_fit_is_one_located_line_per_problem(tmp_path: Path) -> None:
    file = tmp_path / "worker.yaml"
    seed = SEED_003.replace("max_concurrent_workflows", "max_concurent_workflows")
    seed = seed.replace("state_persistence: true", "state_persistence: false")
    seed = seed.replace('"exponential"', '"linear"').replace('"failures"', '"errors"')
    seed = seed.replace("      enabled: true\n", "      enable: true\n")
    assert _problems(tmp_path, seed) == [
        f"{file}:3:3: unknown setting 'max_concurent_workflows' in workflow_engine "
        "(did you mean 'max_concurrent_workflows'?)",
        f"{file}:4:22: workflow_engine.state_persistence: false is not possible: Temporal "
        "persists the state of every run (remove the setting or write true)",
        f"{file}:7:23: workflow_engine.error_handling.backoff_strategy: Input should be "
        "'exponential', 'fixed' or 'constant'",
        f"{file}:10:40: workflow_engine.monitoring.metrics[2]: Input should be 'latency', "
        "'throughput', 'failures', 'slots' or 'polls'",
        f"{file}:13:7: unknown setting 'enable' in workflow_engine.extensions[0] "
        "(did you mean 'enabled'?)",
    ]
    native = "task_queue: q\nmax_concurent_activities: 3\npools:\n  gpu: {rate_limit: fast}\n"
    assert _problems(tmp_path, native) == [
        f"{file}:2:1: unknown setting 'max_concurent_activities' "
        "(did you mean 'max_concurrent_activities'?)",
        f"{file}:4:21: pools.gpu.rate_limit: 'fast' is not a rate (write 10/s, 600/m or 3600/h)",
    ]
    # The seed form and the native form may not both set one thing.
    both = SEED_003 + "max_concurrent_workflow_tasks: 5\n"
    assert _problems(tmp_path, both) == [
        f"{file}:3:3: workflow_engine.max_concurrent_workflows sets "
        f"max_concurrent_workflow_tasks, which {file}:14:1 sets too: keep one"
    ]
    assert _problems(tmp_path, "max_download_mb: 1\n", TIDEFLOW_MAX_DOWNLOAD_MB="lots") == [
        "TIDEFLOW_MAX_DOWNLOAD_MB: max_download_mb: Input should be a valid number, unable to "
        "parse string as a number"
    ]
    assert _problems(tmp_path, "workflow_engine: [1]\n") == [
        f"{file}:1:18: workflow_engine must be a mapping"
    ]


def test_the_worker_command_says_what_does_not_fit_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(SEED_003.replace("type:", "typ:"))
    done = subprocess.run(
        [sys.executable, "-m", "starter.cli", "worker"],
        cwd=ROOT,
        env=dict(os.environ, TIDEFLOW_CONFIG=str(config), PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{config}:2:3: unknown setting 'typ' in workflow_engine (did you mean 'type'?)"
    ]


# --- the default retry reaches runs ---------------------------------------------------------------

FLAKY = """
name: engine-retry
tasks:
  - id: shaky
    type: test.flaky
    config: {failures: 3, value: ok}
"""


async def test_the_configured_retry_is_compiled_into_runs_that_set_none(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    seed = _settings(tmp_path, SEED_003)
    plan = plans.get(run_input(tideflow.load(FLAKY), default_retry=seed.default_retry).plan or {})
    retry = plan.nodes["shaky"].retry
    assert (retry.max_attempts, retry.backoff_coefficient) == (4, 2.0)  # exponential
    own = FLAKY.replace("tasks:", "error_handling: {retry: {max_attempts: 2}}\ntasks:")
    plan = plans.get(run_input(tideflow.load(own), default_retry=seed.default_retry).plan or {})
    assert plan.nodes["shaky"].retry.max_attempts == 2  # the definition's own wins

    # The same with a quick backoff, run for real: three failures, then the fourth attempt.
    fast = _settings(
        tmp_path, "default_retry: {max_attempts: 4, initial_interval: 10ms, backoff: fixed}\n"
    )
    client = TideflowClient(
        tideflow.client, task_queue=tideflow.task_queue, default_retry=fast.default_retry
    )
    report = await client.run(tideflow.load(FLAKY))
    assert report.status == "completed"
    assert report.nodes["shaky"].attempts == 4
    plain = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)
    assert (await plain.run(tideflow.load(FLAKY))).status == "failed"  # 3 attempts by default


# --- slots and the metrics export -----------------------------------------------------------------


async def test_a_worker_on_seed_003s_configuration_exports_its_metrics_and_slots(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    config = tmp_path / "worker.yaml"
    # The seed's block as written, without the extension (installed in test_extension_hooks).
    config.write_text(SEED_003.split("  extensions:")[0])
    address = f"127.0.0.1:{free_port()}"
    queue = f"engine-{uuid.uuid4().hex[:6]}"
    env = dict(
        os.environ,
        TIDEFLOW_CONFIG=str(config),
        TIDEFLOW_HOME=str(tmp_path),
        TIDEFLOW_TASK_QUEUE=queue,
        TIDEFLOW_METRICS_ADDRESS=address,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        PYTHONPATH=str(ROOT),
    )
    worker = subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with httpx.AsyncClient() as http:

            async def metrics() -> str:
                if worker.poll() is not None:
                    assert worker.stderr is not None
                    pytest.fail(f"the worker exited: {worker.stderr.read()}")
                try:
                    response = await http.get(f"http://{address}/metrics", timeout=2)
                except httpx.HTTPError:
                    return ""
                return response.text

            def slots_shown(text: str) -> bool:
                return any(_is_workflow_slots(line) for line in text.splitlines())

            text = await eventually(metrics, slots_shown, "the worker's slots metric")
    finally:
        worker.terminate()
        worker.wait(30)
    slots = [line for line in text.splitlines() if _is_workflow_slots(line)]
    assert float(slots[0].rsplit(" ", 1)[1]) == 20  # max_concurrent_workflows
    assert "temporal_num_pollers" in text and "temporal_request" in text


def _is_workflow_slots(line: str) -> bool:
    return line.startswith("temporal_worker_task_slots_available") and (
        'worker_type="WorkflowWorker"' in line
    )


# --- node pools: Temporal's task-queue rate limit -------------------------------------------------


async def test_a_node_pool_gets_its_rate_limit_on_the_task_queue(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    from worker import running_worker

    queue, pool = f"engine-{uuid.uuid4().hex[:6]}", f"pool-{uuid.uuid4().hex[:6]}"
    settings = _settings(
        tmp_path,
        f"task_queue: {queue}\npools:\n  {pool}: {{rate_limit: 180/m}}\n"
        f"  {queue}: {{rate_limit: 25/s}}\n",
    )
    assert settings.pools[pool].rate_limit == 3.0
    client = temporal_env.client

    async def effective(name: str) -> Any:
        try:
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=name),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                    report_config=True,
                )
            )
        except RPCError:  # a busy server may cancel the call ("operation was canceled"): ask again
            return None
        return described.effective_rate_limit

    def from_worker(limit: Any) -> bool:
        return limit is not None and bool(
            limit.rate_limit_source == RateLimitSource.RATE_LIMIT_SOURCE_WORKER
        )

    async with running_worker(client, settings):
        pool_limit = await eventually(lambda: effective(pool), from_worker, "the pool's limit")
        queue_limit = await eventually(lambda: effective(queue), from_worker, "the queue's")
    assert pool_limit.requests_per_second == pytest.approx(3.0)
    assert queue_limit.requests_per_second == pytest.approx(25.0)


# --- priorities -----------------------------------------------------------------------------------

PRIORITISED = """
name: engine-priority
priority: 4
tasks:
  - id: mark
    type: test.echo
    config: {value: 1}
"""


@pytest_asyncio.fixture
async def one_partition() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server whose task queues have one partition: Temporal orders tasks by priority
    within a partition, and a queue's tasks spread over four by default."""
    from starter.client import data_converter
    from starter.server import SEARCH_ATTRIBUTES
    from tests.servers.temporal import temporal_cli_path

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=data_converter(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "matching.numTaskqueueReadPartitions=1",
            "--dynamic-config-value",
            "matching.numTaskqueueWritePartitions=1",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_runs_waiting_for_a_worker_start_in_priority_order(
    one_partition: WorkflowEnvironment, tmp_path: Path
) -> None:
    from worker import running_worker

    temporal_env = one_partition
    queue = f"engine-{uuid.uuid4().hex[:6]}"
    settings = WorkerSettings(
        home=tmp_path,
        task_queue=queue,
        max_concurrent_workflow_tasks=1,
        max_concurrent_activities=1,
    )
    client = TideflowClient(temporal_env.client, task_queue=queue)
    definition = client_load(PRIORITISED)
    # Started while no worker polls: they wait on the queue, then run by priority.
    low = await client.start(definition)  # the definition's priority, 4
    high = await client.start(definition, priority=1)
    middle = await client.start(definition, priority=2)
    described = await high.describe()
    assert described.raw_description.workflow_execution_info.priority.priority_key == 1

    async def backlog() -> dict[int, int]:
        stats = await temporal_env.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=temporal_env.client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                report_stats=True,
            )
        )
        counts = {k: v.approximate_backlog_count for k, v in stats.stats_by_priority_key.items()}
        return {key: count for key, count in counts.items() if count}

    # Temporal adds a run's first task to its queue a moment after the start returns: all three
    # must wait there before a worker comes, or the first to arrive would be the first served.
    await eventually(backlog, lambda b: b == {1: 1, 2: 1, 4: 1}, "the three tasks queued")
    async with running_worker(temporal_env.client, settings):
        for run in (low, high, middle):
            assert (await run.report()).status == "completed"
    # The worker (one workflow task slot) took their first workflow tasks by priority; the
    # server's clock says when (their nodes' activities may be dispatched eagerly, in any order).
    started = {run.id: await _first_task_started(run) for run in (low, high, middle)}
    names = {high.id: "high", middle.id: "middle", low.id: "low"}
    seen = {names[k]: v for k, v in started.items()}
    assert sorted(started, key=started.__getitem__) == [high.id, middle.id, low.id], seen


async def _first_task_started(run: Any) -> float:
    history = await run.temporal.fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            return float(event.event_time.ToDatetime().timestamp())
    raise AssertionError(f"{run.id}: no workflow task started")


def client_load(text: str) -> Any:
    from activities import registry
    from interpreter import load_string

    return load_string(text, "<test>", catalog=registry)


# --- the workflow runner --------------------------------------------------------------------------

NO_SANDBOX = """
name: engine-no-sandbox
inputs: {n: {type: integer, default: 3}}
tasks:
  - id: first
    type: test.echo
    config: {value: "${{ inputs.n * 2 }}"}
  - id: each
    type: test.echo
    depends_on: [first]
    foreach: "${{ [1, 2, 3] }}"
    config: {value: "${{ item + nodes.first.output.value }}"}
  - id: never
    type: test.echo
    depends_on: [first]
    when: "${{ nodes.first.output.value > 100 }}"
    config: {value: no}
"""


async def test_production_workers_run_the_workflow_outside_the_sandbox_and_tests_inside(
    tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from temporalio.worker import UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from worker import running_worker, workflow_runner

    assert WorkerSettings().workflow_sandbox is False
    # The suite forces the sandbox (tests/conftest.py), whatever the settings say ...
    assert isinstance(workflow_runner(False), SandboxedWorkflowRunner)
    # ... and a production worker runs without it, with the same outcome.
    monkeypatch.delenv("TIDEFLOW_WORKFLOW_SANDBOX")
    queue = f"no-sandbox-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(home=tmp_path, task_queue=queue)
    async with running_worker(tideflow.client, settings) as worker:
        assert isinstance(worker.config()["workflow_runner"], UnsandboxedWorkflowRunner)
        client = TideflowClient(tideflow.client, task_queue=queue)
        report = await client.run(tideflow.load(NO_SANDBOX))
    assert report.status == "completed", report.error
    assert report.nodes["first"].output["value"] == 6
    assert [item["value"] for item in report.nodes["each"].output] == [7, 8, 9]
    assert report.nodes["never"].status == "skipped"
