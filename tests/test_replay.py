"""Replay every recorded history (tests/histories/format*/, written by tests/record_histories.py
under each released plan format) against today's TideflowWorkflow: a change that would make a
run in flight nondeterministic fails here. Histories are never deleted; each format's folder
holds what that format's code recorded."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from interpreter.workflow import TideflowWorkflow
from starter.client import data_converter
from tests.record_histories import EXAMPLES, HISTORIES, INDEX, workflow_id_of
from worker import workflow_runner

FILES = sorted(p for p in HISTORIES.glob("format*/*.json") if p.name != INDEX)


def _recorded(folder: str) -> set[str]:
    return {p.name.split(".")[0] for p in (HISTORIES / folder).glob("*.json") if p.name != INDEX}


def test_every_example_has_a_recorded_history_in_the_current_format() -> None:
    wanted = {name for name, example in EXAMPLES.items() if 2 in example.formats}
    assert wanted <= _recorded("format2")


def test_the_first_formats_histories_stay() -> None:
    # Recorded by the first released engine (plan format 1): kept forever.
    assert {
        "sequential",
        "diamond_when",
        "errors_continue_fallback",
        "wait_timer",
        "foreach",
        "saga_failure",
    } <= _recorded("format1")


def _replayer() -> Replayer:
    return Replayer(
        workflows=[TideflowWorkflow],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )


@pytest.mark.parametrize("path", FILES, ids=[f"{path.parent.name}/{path.stem}" for path in FILES])
async def test_replay(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(workflow_id_of(path), data)
    assert history.events, f"{path.name} holds no events"
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def _changed(path: Path, change: Any) -> WorkflowHistory:
    data = json.loads(path.read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    payload: dict[str, Any] = started["input"]["payloads"][0]
    run_input = json.loads(base64.b64decode(payload["data"]))
    change(run_input)
    payload["data"] = base64.b64encode(json.dumps(run_input).encode()).decode()
    return WorkflowHistory.from_json(workflow_id_of(path), data)


@pytest.mark.parametrize("folder", ["format1", "format2"])
async def test_replay_detects_a_history_the_workflow_would_not_produce(folder: str) -> None:
    # The same history, but the run's plan now names another node type for `b`: the workflow
    # would schedule a different activity than the history holds.
    def change(run_input: dict[str, Any]) -> None:
        if folder == "format1":
            nodes = run_input["definition"]["tasks"]
        else:
            nodes = run_input["plan"]["nodes"]
        changed = [n for n in nodes if n["id"] == "b"]
        assert changed and changed[0]["type"] == "test.echo"
        changed[0]["type"] = "test.sleep"

    history = _changed(HISTORIES / folder / "sequential.json", change)
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
