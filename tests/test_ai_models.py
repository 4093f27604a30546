"""Which model answers: the worker's model catalogue, ``local:NAME``, ``{prefer, ...}``,
``fallback_model``, a clear error for an unavailable model, budgets checked before a call; and
the local models themselves (the per-task defaults load and answer, residency is bounded)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import WorkerResources, WorkerSettings, registry
from activities._ai_client import LocalModels
from activities._models import TASK_DEFAULTS
from activities.settings import AISettings, CatalogModel
from interpreter import DefinitionError, load_string
from interpreter.node_io import BUDGET_EXCEEDED, BudgetLeft
from tests.nodes import run_node
from tests.servers.openai_stub import OpenAIStub
from tests.servers.tideflow_worker import Tideflow
from tests.test_ai import INVOICE, host, label_reply, remote

SEED_001 = Path(__file__).parent / "seeds" / "001_document_processing.yaml"
SEED_STEP = {"model": "gpt-4", "max_tokens": 1000, "temperature": 0.7}


@pytest.fixture
def stub(openai_stub: OpenAIStub) -> OpenAIStub:
    openai_stub.reset()
    return openai_stub


def catalogue(stub: OpenAIStub, **entries: dict[str, Any]) -> WorkerSettings:
    """A worker without a default endpoint whose catalogue points at the stub."""
    models = {
        name: CatalogModel(base_url=stub.base_url, api_key="k", **entry)
        for name, entry in entries.items()
    }
    return WorkerSettings(ai=AISettings(models=models))


async def test_an_unavailable_model_fails_clearly_instead_of_running_a_local_one() -> None:
    # Seed 001's step, on a worker with neither an endpoint nor a catalogue entry "gpt-4".
    settings = WorkerSettings(ai=AISettings())
    with pytest.raises(ApplicationError) as failed:
        await run_node("ai_processing", {**SEED_STEP, "input": "a letter"}, settings=settings)
    assert failed.value.non_retryable is True
    message = str(failed.value)
    assert "model 'gpt-4' is not available on this worker" in message
    assert "not in the model catalogue (ai.models: empty)" in message
    assert "set fallback_model" in message


async def test_a_catalogue_entry_answers_with_its_model_id_and_price(stub: OpenAIStub) -> None:
    settings = catalogue(
        stub,
        **{"gpt-4": {"model": "gpt-4-0613", "input_per_million": 30, "output_per_million": 60}},
    )
    stub.reply("An invoice from Northwind.", prompt_tokens=1000, completion_tokens=100)
    result = await run_node(
        "ai_processing", {**SEED_STEP, "input": {"text": INVOICE}}, settings=settings
    )
    assert result.output["text"] == "An invoice from Northwind."
    assert result.output["model"] == "gpt-4-0613"
    assert result.output["provider"] == f"openai-compatible:{host(stub)}"
    assert result.output["analysed"] == "input.text"
    [request] = stub.requests
    assert request["model"] == "gpt-4-0613"
    assert INVOICE in request["messages"][0]["content"]
    assert result.usage is not None
    assert result.usage.model == "gpt-4-0613"
    assert result.usage.cost_usd == pytest.approx((1000 * 30 + 100 * 60) / 1e6)


async def test_fallback_model_answers_and_says_so(stub: OpenAIStub) -> None:
    settings = catalogue(stub, cheap={"model": "cheap-1"})
    stub.reply("Fine.")
    result = await run_node(
        "ai.summarize",
        {"text": INVOICE, "model": "gpt-4", "fallback_model": "cheap"},
        settings=settings,
    )
    assert result.output["model"] == "cheap-1"
    assert result.output["fallback_from"] == "gpt-4"


async def test_prefer_takes_the_first_model_that_fits(stub: OpenAIStub) -> None:
    settings = catalogue(
        stub,
        small={"model": "small-1", "context": 4096},
        pricey={"model": "pricey-1", "context": 128000, "output_per_million": 1000},
        right={"model": "right-1", "context": 32000, "output_per_million": 1},
    )
    label_reply(stub, "invoice", 0.9, letter=0.1)
    result = await run_node(
        "ai.classify",
        {
            "text": INVOICE,
            "labels": ["invoice", "letter"],
            "model": {
                "prefer": ["missing", "small", "pricey", "right"],
                "min_context": 16000,
                "max_cost_per_call": 0.01,
            },
        },
        settings=settings,
    )
    assert result.output["model"] == "right-1"
    assert stub.requests[0]["model"] == "right-1"


async def test_prefer_with_nothing_that_fits_names_why_each_was_passed_over(
    stub: OpenAIStub,
) -> None:
    settings = catalogue(stub, small={"model": "small-1", "context": 4096})
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.summarize",
            {"text": INVOICE, "model": {"prefer": ["small", "gpt-4"], "min_context": 8000}},
            settings=settings,
        )
    message = str(failed.value)
    assert "none of small, gpt-4 is available" in message
    assert "small: context 4096 < min_context 8000" in message
    assert "gpt-4: not in the model catalogue" in message
    assert stub.requests == []


def test_an_unknown_local_model_is_a_located_load_error() -> None:
    text = """\
name: models
version: "1"
tasks:
  - id: ask
    type: ai.prompt
    config:
      prompt: hello
      model: local:qwen9-giant
  - id: sum
    type: ai.summarize
    config:
      text: hello
      model: {prefer: [local:smollm2, local:nope]}
"""
    with pytest.raises(DefinitionError) as failed:
        load_string(text, "models.yaml", catalog=registry)
    problems = [str(p) for p in failed.value.problems]
    assert problems[0].startswith("models.yaml:8:")
    assert "unknown local model 'qwen9-giant'" in problems[0]
    assert "local:qwen2.5-coder-1.5b" in problems[0]
    assert problems[1].startswith("models.yaml:13:")
    assert "unknown local model 'nope'" in problems[1]


async def test_a_call_over_the_token_budget_is_refused_before_it_is_made(
    stub: OpenAIStub,
) -> None:
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.summarize",
            {"text": INVOICE, "max_tokens": 200},
            settings=remote(stub),
            budget=BudgetLeft(tokens=150),
        )
    assert failed.value.type == BUDGET_EXCEEDED
    assert failed.value.non_retryable is True
    found = re.search(
        r"may use (\d+) tokens \((\d+) of prompt \+ 200 of answer\) but the budget has 150 left",
        str(failed.value),
    )
    assert found is not None, str(failed.value)
    assert int(found.group(1)) == int(found.group(2)) + 200 > 150
    assert stub.requests == []


async def test_a_call_over_the_cost_budget_is_refused_and_one_within_runs(
    stub: OpenAIStub,
) -> None:
    settings = catalogue(stub, paid={"input_per_million": 1000, "output_per_million": 1000})
    config = {"text": INVOICE, "max_tokens": 200, "model": "paid"}
    with pytest.raises(ApplicationError) as failed:
        await run_node("ai.summarize", config, settings=settings, budget=BudgetLeft(cost_usd=0.1))
    assert failed.value.type == BUDGET_EXCEEDED
    assert re.search(r"may cost \$0\.2\d{3} but the budget has \$0\.1000 left", str(failed.value))
    stub.reply("Northwind billed 45 EUR.", prompt_tokens=40, completion_tokens=10)
    result = await run_node(
        "ai.summarize", config, settings=settings, budget=BudgetLeft(cost_usd=1.0)
    )
    assert result.usage is not None
    assert result.usage.cost_usd == pytest.approx(0.05)


# --- the local models -------------------------------------------------------------------------


def _installed(local: str) -> bool:
    from activities._local_model import KNOWN_MODELS

    return all(importlib.util.find_spec(p) for p in KNOWN_MODELS[local].packages)


async def test_local_models_stay_within_the_resident_limit(tmp_path: Path) -> None:
    from activities._local_model import model_file

    _, path = model_file("smollm2", tmp_path)
    settings = WorkerSettings(home=tmp_path, ai=AISettings(max_local_models=1))
    pool = LocalModels(settings)
    try:
        async with pool.use("smollm2") as first:
            assert pool.resident == ["smollm2"]
        async with pool.use(str(path)) as second:
            # The idle model was unloaded to make room for the other one.
            assert pool.resident == [str(path)]
            assert first.local is not None and second.local is not None
            assert first.local._server is None  # closed
        async with pool.use(str(path)) as again:
            assert again is second  # kept warm
    finally:
        await pool.aclose()


DEFAULT_LOCAL_MODELS = sorted({m.removeprefix("local:") for m in TASK_DEFAULTS.values()})


@pytest.mark.parametrize("local", DEFAULT_LOCAL_MODELS)
async def test_each_default_local_model_loads_and_answers(local: str, tmp_path: Path) -> None:
    if not _installed(local):
        pytest.fail(f"default local model {local} is not installed (python3 bootstrap.py test)")
    resources = WorkerResources(WorkerSettings(home=tmp_path))
    task = next(t for t, m in TASK_DEFAULTS.items() if m == f"local:{local}")
    try:
        configs: dict[str, dict[str, Any]] = {
            "extract": {"text": "Invoice number: INV-7. Total: 45.00 EUR", "entities": ["total"]},
            "classify": {"text": "Total due: 45.00 EUR by 1 May", "labels": ["invoice", "poem"]},
            "summarize": {"text": "The shop opens at nine. It closes at five.", "max_words": 12},
            "prompt": {"prompt": "Say OK.", "max_tokens": 5},
        }
        config = configs[task]
        result = await run_node(f"ai.{task}", config, resources=resources)
    finally:
        await resources.aclose()
    assert result.output["provider"].startswith("local:")
    assert local.removesuffix("-instruct") in result.output["model"]
    assert result.usage is not None and result.usage.completion_tokens > 0


async def test_seed_001_says_gpt_4_is_unavailable_instead_of_running_a_local_model(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    document = tmp_path / "letter.md"
    document.write_text("The rent rises to 950 EUR from 1 July 2024.\n")
    report = await tideflow.run(
        SEED_001.read_text(),
        {"document_url": str(document), "document_type": "letter"},
    )
    assert report.status == "failed"
    node = report.nodes["ai_analysis"]
    assert node.status == "failed"
    assert node.attempts == 1  # not retried: another attempt cannot fix it
    assert "model 'gpt-4' is not available on this worker" in (node.error or "")
    assert report.nodes["result_storage"].status in ("pending", "skipped", "cancelled")


def test_the_printed_report_names_the_models_that_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from interpreter.report import DefinitionRef, NodeReport, RunReport, RunUsage
    from starter.progress import print_report

    report = RunReport(
        workflow_id="w-1",
        run_id="r",
        definition=DefinitionRef(name="triage", version="1"),
        status="completed",
        usage=RunUsage(ai_tokens=30, prompt_tokens=20, completion_tokens=10),
        nodes={
            "a": NodeReport(status="completed", usage={"model": "gpt-4-0613", "total_tokens": 15}),
            "b": NodeReport(status="completed", usage={"model": "qwen2.5-coder-1.5b-instruct"}),
        },
    )
    print_report(report)
    assert "AI tokens: 30 · answered by gpt-4-0613, qwen2.5-coder-1.5b-instruct" in (
        capsys.readouterr().out
    )


def test_the_doctor_checks_each_tasks_default_local_model(tmp_path: Path) -> None:
    from starter.doctor import _local_model

    healthy = _local_model(WorkerSettings(home=tmp_path))
    assert healthy.status == "ok"
    assert healthy.detail == "local models " + ", ".join(DEFAULT_LOCAL_MODELS)
    missing = tmp_path / "missing.gguf"
    broken = _local_model(
        WorkerSettings(home=tmp_path, ai=AISettings(task_models={"classify": f"local:{missing}"}))
    )
    assert broken.status == "fail"
    assert broken.detail is not None and str(missing) in broken.detail
    one = _local_model(WorkerSettings(home=tmp_path, ai=AISettings(local_model="smollm2")))
    assert (one.status, one.detail) == ("ok", "local model smollm2")
