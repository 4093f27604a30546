"""``tideflow eval``: scoring a tiny labelled set with known answers, through the real engine
(the session's dev server) with the AI nodes answered by our OpenAI-compatible stub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from interpreter.report import NodeReport, RunReport
from starter.evaluation import Case, CaseResult, CasesError, load_cases, same, score
from tests.servers.openai_stub import OpenAIStub
from tests.test_ai import label_reply

ROOT = Path(__file__).resolve().parent.parent

DEFINITION = """\
name: Tiny
version: "1"
inputs:
  text: {type: string, required: true}
tasks:
  - id: classify
    type: ai.classify
    config: {text: "${{ inputs.text }}", labels: [invoice, letter]}
  - id: extract
    type: ai.extract
    depends_on: [classify]
    config: {text: "${{ inputs.text }}", entities: [total_amount, date]}
outputs:
  label: ${{ nodes.classify.output.label }}
"""

CASES = [
    {
        "inputs": {"text": "Invoice A, total 10"},
        "expected": {"label": "invoice", "total_amount": 10, "date": "2024-01-05"},
    },
    {
        "id": "b",
        "inputs": {"text": "Invoice B, total 20"},
        "expected": {"label": "invoice", "total_amount": 20, "date": "2024-02-01"},
    },
    {
        "id": "c",
        "inputs": {"text": "Dear C"},
        "expected": {"label": "letter", "total_amount": None},
    },
]


def script(stub: OpenAIStub) -> None:
    """The model's answers, case by case (classify, then extract)."""
    stub.reset()
    label_reply(stub, "invoice", 0.9, letter=0.1)
    stub.reply(json_content={"total_amount": 10.004, "date": "2024-01-05"})
    label_reply(stub, "letter", 0.7, invoice=0.3)  # wrong
    stub.reply(json_content={"total_amount": 20, "date": "2024-02-01"})
    label_reply(stub, "letter", 0.8, invoice=0.2)
    stub.reply(json_content={"total_amount": None, "date": None})


def eval_command(
    temporal_env: WorkflowEnvironment, stub: OpenAIStub, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tiny.yaml").write_text(DEFINITION)
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        OPENAI_BASE_URL=stub.base_url,
        OPENAI_API_KEY="test",
        TIDEFLOW_HOME=str(tmp_path / "home"),
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "starter.cli",
            "eval",
            str(tmp_path / "tiny.yaml"),
            "--cases",
            str(tmp_path / "cases.jsonl"),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_eval_scores_a_tiny_set_exactly(
    temporal_env: WorkflowEnvironment, openai_stub: OpenAIStub, tmp_path: Path
) -> None:
    script(openai_stub)
    done = eval_command(temporal_env, openai_stub, tmp_path, "--json", "--min-accuracy", "90")
    assert done.returncode == 1, done.stderr
    assert "eval: accuracy 87.5% is below --min-accuracy 90.0%" in done.stderr
    scores = json.loads(done.stdout)
    latency = scores.pop("latency_seconds")
    assert 0 < latency["p50"] <= latency["p95"]
    assert scores == {
        "definition": str(tmp_path / "tiny.yaml"),
        "cases_path": str(tmp_path / "cases.jsonl"),
        "cases": 3,
        "completed": 3,
        "accuracy": 0.875,
        "fields": {
            "label": {"right": 2, "total": 3, "accuracy": 0.6667},
            "total_amount": {"right": 3, "total": 3, "accuracy": 1.0},
            "date": {"right": 2, "total": 2, "accuracy": 1.0},
        },
        "labels": {
            "label": {
                "invoice": {"right": 1, "total": 2, "accuracy": 0.5},
                "letter": {"right": 1, "total": 1, "accuracy": 1.0},
            }
        },
        "confusion": {"label": {"invoice": {"invoice": 1, "letter": 1}, "letter": {"letter": 1}}},
        "checks": {"fields needing review": {"right": 0, "total": 3, "accuracy": 0.0}},
        "tokens_per_case": 30.0,
        "cost_per_case_usd": None,
        "models": ["gpt-4o-mini"],
        "failures": [],
    }
    assert openai_stub.pending == 0


def test_eval_prints_the_table_per_field_and_label(
    temporal_env: WorkflowEnvironment, openai_stub: OpenAIStub, tmp_path: Path
) -> None:
    script(openai_stub)
    done = eval_command(temporal_env, openai_stub, tmp_path, "--min-accuracy", "0.8")
    assert done.returncode == 0, done.stderr
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    table = lines[lines.index(next(line for line in lines if line.startswith("┏"))) :]
    assert table[:12] == [
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━┓",
        "┃ field                   ┃ right ┃ accuracy ┃",
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━┩",
        "│ label                   │   2/3 │    66.7% │",
        "│   label = invoice       │   1/2 │    50.0% │",
        "│   label = letter        │   1/1 │   100.0% │",
        "│ total_amount            │   3/3 │   100.0% │",
        "│ date                    │   2/2 │   100.0% │",
        "│ (fields needing review) │   0/3 │     0.0% │",
        "├─────────────────────────┼───────┼──────────┤",
        "│ all fields              │       │    87.5% │",
        "└─────────────────────────┴───────┴──────────┘",
    ]
    assert "┃ expected ┃ invoice ┃ letter ┃" in done.stdout
    assert "│ invoice  │       1 │      1 │" in done.stdout
    assert "│ letter   │       · │      1 │" in done.stdout
    assert "tokens per case: 30 · cost per case: —" in done.stdout
    assert "models: gpt-4o-mini" in done.stdout
    assert "[2/3] b: completed in" in done.stderr


def test_cases_from_a_folder_and_bad_cases(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "expected.json").write_text(json.dumps({"a.pdf": {"total": 1}}))
    [case] = load_cases(tmp_path, "invoice")
    assert case == Case("a.pdf", {"invoice": str((tmp_path / "a.pdf").resolve())}, {"total": 1})
    (tmp_path / "expected.json").write_text(json.dumps({"b.pdf": {"total": 1}}))
    with pytest.raises(CasesError, match=r"'b\.pdf' is not a file"):
        load_cases(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": {}, "expected": {"a": 1}}\n{"inputs": {}}\n')
    with pytest.raises(CasesError, match=r"bad.jsonl:2: a case is \{inputs, expected\}"):
        load_cases(bad)


@pytest.mark.parametrize(
    ("expected", "got", "right"),
    [
        (566.44, "566.44 USD", True),
        (566.44, 566.45, True),
        (566.44, 567.5, False),
        ("2024-03-14", "March 14, 2024", True),
        ("2024-03-14", "2024-03-15", False),
        ("Acme Corporation", " acme  corporation.", True),
        (["b", "a"], ["A", "b"], True),
        (["a"], ["a", "b"], False),
        (
            [{"q": 2, "d": "x"}, {"q": 1, "d": "y"}],
            [{"q": 1, "d": "Y"}, {"q": 2.0, "d": "x"}],
            True,
        ),
        ([{"q": 2}], [{"q": 3}], False),
        ({"$complete": True, "$max_words": 5}, "One two. Three four five.", True),
        ({"$complete": True}, "One two, three", False),
        ({"$max_words": 3}, "One two three four.", False),
        ({"$mentions": ["Lyon", "45 million"]}, "A 45 million euro site in lyon.", True),
        ({"$mentions": ["300"]}, "A site in Lyon.", False),
        (None, None, True),
    ],
)
def test_values_compare_by_kind(expected: Any, got: Any, right: bool) -> None:
    assert same(expected, got) is right


def test_a_failed_run_counts_every_expectation_as_wrong() -> None:
    failed = RunReport(
        workflow_id="w",
        run_id="r",
        definition={"name": "x"},  # type: ignore[arg-type]
        status="failed",
        error="node 'extract' failed: boom",
        nodes={"extract": NodeReport(status="failed", error="boom")},
    )
    scores = score([CaseResult(Case("one", {}, {"total": 1, "label": "a"}), failed, 1.5)])
    assert [(f.name, f.right, f.total) for f in scores.fields] == [("total", 0, 1), ("label", 0, 1)]
    assert scores.failures == ["one: node 'extract' failed: boom"]
    assert scores.confusion == {"label": {"a": {"(none)": 1}}}
    assert (scores.latency_p50, scores.latency_p95) == (1.5, 1.5)
