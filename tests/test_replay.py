"""Replay every recorded history (tests/histories, written by tests/record_histories.py) against
today's TideflowWorkflow: a change that would make a run in flight nondeterministic fails here."""

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
from tests.record_histories import EXAMPLES, HISTORIES
from worker import workflow_runner

FILES = sorted(HISTORIES.glob("*.json"))


def test_every_example_has_a_recorded_history() -> None:
    assert {path.stem for path in FILES} >= set(EXAMPLES)


def _replayer() -> Replayer:
    return Replayer(
        workflows=[TideflowWorkflow],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_replay(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", data)
    assert history.events, f"{path.name} holds no events"
    result = await _replayer().replay_workflow(history)
    assert result.replay_failure is None


async def test_replay_detects_a_history_the_workflow_would_not_produce() -> None:
    # The same history, but the run's definition now names another node type for `b`: the
    # workflow would schedule a different activity than the history holds.
    data = json.loads((HISTORIES / "sequential.json").read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    payload: dict[str, Any] = started["input"]["payloads"][0]
    run_input = json.loads(base64.b64decode(payload["data"]))
    changed = [n for n in run_input["definition"]["tasks"] if n["id"] == "b"]
    assert changed and changed[0]["type"] == "test.echo"
    changed[0]["type"] = "test.sleep"
    payload["data"] = base64.b64encode(json.dumps(run_input).encode()).decode()
    history = WorkflowHistory.from_json("replay-changed", data)
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
