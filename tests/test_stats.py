"""Run and node metrics on real runs: a worker records every node attempt (outcome, error type,
retries, duration, CPU, memory, AI tokens and cost) in the metrics store and on its Prometheus
endpoint with node and definition labels; ``tideflow stats``, ``GET /stats`` and
:func:`starter.stats.compute_stats` add Temporal's visibility for whole runs."""

from __future__ import annotations

import asyncio
import io
import re
import textwrap
import uuid
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment

import tests.testing_node_types  # noqa: F401  (test.* types)
from activities import WorkerSettings, registry
from activities.settings import AISettings, ModelPrice
from interpreter import load_string
from starter.api import create_app
from starter.cli import main as cli_main
from starter.client import TideflowClient, data_converter
from starter.server import free_port
from starter.stats import Stats, compute_stats, percentile
from tests.polling import eventually
from tests.servers.openai_stub import OpenAIStub

CHECKED = """
name: Stats Check
inputs:
  fail: {type: boolean, default: false}
tasks:
  - id: flaky
    type: test.flaky
    config: {failures: 1, value: 1}
    retry: {max_attempts: 3, initial_interval: 100ms}
  - id: compute
    type: code.python
    depends_on: [flaky]
    config: {code: "return sum(i * i for i in range(100000))"}
  - id: ask
    type: ai.summarize
    depends_on: [flaky]
    config: {text: "Northwind billed 45 EUR for paper."}
  - id: maybe_fail
    type: test.permanent
    depends_on: [compute]
    when: ${{ inputs.fail }}
"""

OTHER = """
name: Stats Other
tasks:
  - {id: only, type: test.echo, config: {value: 1}}
"""

PRICE = ModelPrice(input_per_million=5.0, output_per_million=10.0)
"""100 prompt and 50 completion tokens cost $0.001."""


@dataclass(frozen=True)
class Measured:
    """A worker with a Prometheus endpoint and its own metrics store, and what ran on it."""

    client: TideflowClient
    store_url: str
    metrics_url: str
    home: Path


@pytest_asyncio.fixture(scope="module")
async def measured(
    temporal_env: WorkflowEnvironment,
    openai_stub: OpenAIStub,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Measured]:
    """Four runs of Stats Check (the last one failing) and one of Stats Other."""
    from worker import running_worker

    home = tmp_path_factory.mktemp("stats-home")
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    queue = f"stats-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(
        home=home,
        task_queue=queue,
        store_url=f"sqlite:///{home / 'metrics.db'}",
        ai=AISettings(
            base_url=openai_stub.base_url,
            api_key="test",
            model="priced-model",
            prices={"priced-model": PRICE},
        ),
    )
    temporal = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
    client = TideflowClient(temporal, task_queue=queue)
    openai_stub.reset()
    for _ in range(4):
        openai_stub.reply("Paper for 45 EUR.", prompt_tokens=100, completion_tokens=50)
    checked = load_string(textwrap.dedent(CHECKED), "stats.yaml", registry)
    other = load_string(textwrap.dedent(OTHER), "other.yaml", registry)
    async with running_worker(temporal, settings):
        runs = [await client.start(checked, {"fail": i == 3}) for i in range(4)]
        runs.append(await client.start(other, {}))
        reports = await asyncio.gather(*(run.report() for run in runs))
        assert [r.status for r in reports] == ["completed"] * 3 + ["failed", "completed"]
        yield Measured(
            client, settings.resolved_store_url, f"http://127.0.0.1:{port}/metrics", home
        )


async def _stats(measured: Measured, definition: str | None = "stats-check") -> Stats:
    """The statistics once every attempt is written (workers write about once a second)."""
    stats: Stats = await eventually(
        lambda: compute_stats(
            measured.client.temporal,
            measured.store_url,
            since=timedelta(hours=1),
            definition=definition,
        ),
        lambda s: sum(d.nodes.attempts for d in s.definitions) >= (17 if definition else 18),
        "every attempt recorded",
    )
    return stats


async def test_stats_of_a_definition_count_runs_and_node_attempts(measured: Measured) -> None:
    stats = await _stats(measured)
    [entry] = stats.definitions
    assert entry.definition == "stats-check"
    runs = entry.runs
    assert (runs.started, runs.completed, runs.failed, runs.cancelled, runs.running) == (
        4,
        3,
        1,
        0,
        0,
    )
    assert entry.success_rate == 0.75
    assert entry.duration_p50 is not None and entry.duration_p95 is not None
    assert 0 < entry.duration_p50 <= entry.duration_p95
    nodes = entry.nodes
    # flaky: 4 runs x (a failed first attempt + a retry); compute, ask: 4; maybe_fail: 1.
    assert (nodes.attempts, nodes.completed, nodes.failed, nodes.retries) == (17, 12, 5, 4)
    assert nodes.errors == {"RetryableNodeError": 4, "PermanentNodeError": 1}
    assert nodes.ai_tokens == 600
    assert nodes.cost_usd == pytest.approx(0.004)

    by_type = {t.node_type: t for t in stats.node_types}
    assert set(by_type) == {"test.flaky", "code.python", "ai.summarize", "test.permanent"}
    flaky = by_type["test.flaky"]
    assert (flaky.attempts, flaky.completed, flaky.failed, flaky.retries) == (8, 4, 4, 4)
    assert flaky.success_rate == 0.5
    assert flaky.errors == {"RetryableNodeError": 4}
    code = by_type["code.python"]
    assert (code.attempts, code.completed) == (4, 4)
    # The sandbox's child process summed squares: its CPU counts for the node.
    assert code.cpu_seconds > 0
    assert code.peak_rss_mb is not None and code.peak_rss_mb > 10
    assert code.duration_p50 is not None and code.duration_p95 is not None
    assert 0 < code.duration_p50 <= code.duration_p95
    ai = by_type["ai.summarize"]
    assert (ai.attempts, ai.ai_tokens) == (4, 600) and ai.cost_usd == pytest.approx(0.004)
    assert by_type["test.permanent"].errors == {"PermanentNodeError": 1}

    everything = await _stats(measured, None)
    names = [d.definition for d in everything.definitions]
    assert "stats-check" in names and "stats-other" in names
    other = next(d for d in everything.definitions if d.definition == "stats-other")
    assert (other.runs.started, other.nodes.attempts, other.nodes.completed) == (1, 1, 1)


async def test_the_prometheus_endpoint_labels_node_attempts(measured: Measured) -> None:
    await _stats(measured)  # every attempt has been recorded (and counted)
    async with httpx.AsyncClient() as http:
        text = (await http.get(measured.metrics_url)).text

    def value(name: str, **labels: str) -> float:
        found = 0.0
        for line in text.splitlines():
            metric, _, number = line.rpartition(" ")
            if not metric.startswith(name + "{"):
                continue
            pairs = dict(re.findall(r'(\w+)="([^"]*)"', metric))
            if all(pairs.get(k) == v for k, v in labels.items()):
                found += float(number)
        return found

    labels = {"definition": "stats-check", "node": "flaky"}
    assert value("tideflow_node_attempts", outcome="failed", **labels) == 4
    assert value("tideflow_node_attempts", outcome="completed", **labels) == 4
    assert value("tideflow_node_attempts", activity_type="test.flaky", **labels) == 8
    assert value("tideflow_node_retries", **labels) == 4
    assert value("tideflow_node_duration_seconds_count", **labels) == 8
    ask = {"definition": "stats-check", "node": "ask"}
    assert value("tideflow_ai_tokens", kind="prompt", **ask) == 400
    assert value("tideflow_ai_tokens", kind="completion", **ask) == 200
    assert value("tideflow_ai_cost_usd_sum", **ask) == pytest.approx(0.004)
    assert value("tideflow_node_peak_rss_bytes", node="compute") > 10 * 2**20
    # Whole runs, counted by the workflow (not while replaying).
    assert value("tideflow_runs_started", definition="stats-check") >= 2
    assert value("tideflow_runs_ended", definition="stats-other", status="completed") == 1
    assert value("tideflow_node_cpu_seconds_sum", node="compute") > 0


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(argv)
    return code, out.getvalue(), err.getvalue()


async def test_tideflow_stats_prints_the_tables(
    measured: Measured, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _stats(measured)
    target = measured.client.temporal.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", target)
    monkeypatch.setenv("TIDEFLOW_STORE_URL", measured.store_url)
    code, out, err = await asyncio.to_thread(
        _cli, ["stats", "--definition", "stats-check", "--since", "1h"]
    )
    assert code == 0, err
    assert "runs started in the last 1h, definition stats-check" in out
    row = next(line for line in out.splitlines() if "stats-check" in line and "│" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:7] == ["stats-check", "4", "3", "1", "0", "0", "75%"]
    assert "RetryableNodeError: 4, PermanentNodeError: 1" in row
    flaky = next(line for line in out.splitlines() if "test.flaky" in line)
    assert [c.strip() for c in flaky.split("│")[1:7]] == ["test.flaky", "8", "4", "4", "4", "50%"]

    code, out, err = await asyncio.to_thread(_cli, ["stats", "--since", "1h", "--json"])
    assert code == 0, err
    parsed = Stats.model_validate_json(out)
    assert {d.definition for d in parsed.definitions} >= {"stats-check", "stats-other"}

    code, _, err = await asyncio.to_thread(_cli, ["stats", "--since", "soon"])
    assert code == 2
    assert err.startswith("stats: --since 'soon' is not a duration")


async def test_get_stats(measured: Measured) -> None:
    await _stats(measured)
    settings = WorkerSettings(home=measured.home, store_url=measured.store_url)
    app = create_app(measured.home, client=measured.client, settings=settings, triggers=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tideflow.test") as http:
        answer = await http.get("/stats", params={"definition": "stats-check", "since": "1h"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        [entry] = body["definitions"]
        assert entry["runs"] == {
            "started": 4,
            "completed": 3,
            "failed": 1,
            "cancelled": 0,
            "running": 0,
        }
        assert entry["nodes"]["errors"] == {"RetryableNodeError": 4, "PermanentNodeError": 1}
        bad = await http.get("/stats", params={"since": "forever"})
        assert bad.status_code == 422
        assert bad.json()["problems"][0]["field"] == "query.since"
        bad = await http.get("/stats", params={"definition": 'x" OR 1=1'})
        assert bad.status_code == 422


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None
