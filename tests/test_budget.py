"""AI spend budgets, operator side, end to end: a run whose model calls (our OpenAI-compatible
stub, priced in the worker settings) spend past its budget stops in ``needs_attention`` with
reason ``budget``; ``tideflow status`` and the report show spend against budget; ``tideflow
budget ID --add-usd`` (and ``POST /runs/{id}/budget``) raises it and the run goes on."""

from __future__ import annotations

import asyncio
import io
import textwrap
import uuid
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings, registry
from activities.settings import AISettings, ModelPrice
from interpreter import load_string
from starter.api import create_app
from starter.cli import main as cli_main
from starter.client import RunHandle, TideflowClient
from tests.polling import eventually
from tests.servers.openai_stub import OpenAIStub

BUDGETED = """
name: Budgeted summaries
budget: {cost_usd: 0.01}
tasks:
  - id: first
    type: ai.summarize
    config: {text: "Northwind billed 45 EUR for printer paper in March 2024."}
  - id: second
    type: ai.summarize
    depends_on: [first]
    config: {text: "${{ nodes.first.output.summary }}"}
"""

PRICE = ModelPrice(input_per_million=5.0, output_per_million=10.0)
"""1,000 prompt and 1,000 completion tokens cost $0.015: past the run's $0.01."""


@pytest_asyncio.fixture
async def priced(
    temporal_env: WorkflowEnvironment, openai_stub: OpenAIStub, tmp_path: Path
) -> AsyncIterator[TideflowClient]:
    """A worker whose AI nodes call the stub, with a price for its model."""
    from worker import running_worker

    openai_stub.reset()
    queue = f"budget-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(
        home=tmp_path,
        task_queue=queue,
        ai=AISettings(
            base_url=openai_stub.base_url,
            api_key="test",
            model="stub-model",
            prices={"stub-model": PRICE},
        ),
    )
    async with running_worker(temporal_env.client, settings):
        yield TideflowClient(temporal_env.client, task_queue=queue)


async def _stopped_by_the_budget(client: TideflowClient, stub: OpenAIStub) -> RunHandle:
    stub.reply("Northwind billed 45 EUR.", prompt_tokens=1000, completion_tokens=1000)
    stub.reply("45 EUR to Northwind.", prompt_tokens=20, completion_tokens=10)
    definition = load_string(textwrap.dedent(BUDGETED), "budget.yaml", registry)
    run = await client.start(definition, {})
    state = await eventually(
        lambda: run.state(), lambda s: s.status == "needs_attention", "the budget stop"
    )
    assert state.attention == {"second": "budget"}
    assert state.nodes == {"first": "completed", "second": "needs_attention"}
    assert state.budget is not None
    assert state.budget.cost_usd == 0.01
    assert state.budget.spent_usd == pytest.approx(0.015)
    assert state.budget.spent_tokens == 2000
    assert stub.pending == 1  # the second node never called the model
    return run


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(argv)
    return code, out.getvalue(), err.getvalue()


async def test_the_budget_stops_a_run_and_tideflow_budget_resumes_it(
    priced: TideflowClient,
    openai_stub: OpenAIStub,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = await _stopped_by_the_budget(priced, openai_stub)
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)

    code, out, err = await asyncio.to_thread(_cli, ["status", run.id])
    assert code == 0, err
    assert "stopped by the budget" in out
    assert "budget: $0.0150 of $0.0100 spent (over), 2,000 tokens" in out

    code, out, err = await asyncio.to_thread(
        _cli, ["budget", run.id, "--add-usd", "0.05", "--by", "ana"]
    )
    assert code == 0, err
    assert out.splitlines()[0] == f"raised the budget of {run.id} by $0.05"

    report = await run.report()
    assert report.status == "completed", report.error
    assert report.nodes["second"].output["summary"] == "45 EUR to Northwind."
    assert report.budget is not None
    assert report.budget.cost_usd == pytest.approx(0.06)
    assert report.budget.spent_usd == pytest.approx(0.015 + 0.0002)
    history = [t for t in (await run.state()).history if t.status == "budget raised"]
    assert [t.detail for t in history] == ["+0 tokens, +$0.05 by ana"]

    code, _, err = await asyncio.to_thread(_cli, ["budget", run.id, "--add-usd", "1"])
    assert code == 1
    assert err.strip() == f"budget: run {run.id} has already ended (completed)"
    code, _, err = await asyncio.to_thread(_cli, ["budget", run.id])
    assert (code, err.strip()) == (2, "budget: give --add-usd X and/or --add-tokens N")


async def test_the_http_api_raises_a_budget(
    priced: TideflowClient, openai_stub: OpenAIStub, tmp_path: Path
) -> None:
    run = await _stopped_by_the_budget(priced, openai_stub)
    app = create_app(
        tmp_path, client=priced, settings=WorkerSettings(home=tmp_path), triggers=False
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tideflow.test") as http:
        refused = await http.post(f"/runs/{run.id}/budget", json={"add_usd": -1})
        assert refused.status_code == 422
        answer = await http.post(
            f"/runs/{run.id}/budget", json={"add_tokens": 5000, "add_usd": 0.05, "by": "bo"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["workflow_id"] == run.id
        assert answer.json()["message"].startswith("budget raised; 2000 tokens")
        report = await run.report()
        assert report.status == "completed"
        again = await http.post(f"/runs/{run.id}/budget", json={"add_usd": 1})
        assert again.status_code == 409
        assert "already ended" in again.json()["detail"]
