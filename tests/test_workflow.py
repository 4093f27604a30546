"""TideflowWorkflow end to end on the real Temporal dev server: graphs, joins, retries, timeouts,
error handling, timers, foreach, inputs, compensation, the report, and its history cost."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities import WorkerResources, WorkerSettings, registry
from interpreter.control import RunInput
from interpreter.inputs import InputError
from interpreter.node_io import NodeInput, NodeResult
from interpreter.workflow import TideflowWorkflow
from starter import client as tideflow_client
from tests import testing_node_types as nodes
from tests.servers.temporal import temporal_cli_path
from tests.servers.tideflow_worker import Tideflow

REPO = Path(__file__).resolve().parent.parent


def yaml(text: str) -> str:
    """Dedented YAML (tests write definitions indented in the code)."""
    return textwrap.dedent(text).strip() + "\n"


async def events_of(client: Client, workflow_id: str) -> list[Any]:
    """Every history event of a run, in order."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return list(history.events)


def event_type(event: Any) -> str:
    """``EVENT_TYPE_ACTIVITY_TASK_SCHEDULED`` → ``ActivityTaskScheduled``."""
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    return "".join(part.capitalize() for part in name.split("_"))


def scheduled_activity_ids(events: list[Any]) -> list[str]:
    """Activity ids in the order they were scheduled."""
    return [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in events
        if event_type(e) == "ActivityTaskScheduled"
    ]


def when(moment: str | None) -> datetime:
    """A report timestamp as a datetime."""
    assert moment is not None
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


# --------------------------------------------------------------------------------------------
# Graph shapes


async def test_sequential_nodes_run_in_order_and_pass_outputs(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Sequential
        version: "2"
        tasks:
          - id: a
            type: test.echo
            config: {value: 1}
          - id: b
            type: test.echo
            depends_on: [a]
            config: {value: "${{ nodes.a.output.value + 1 }}"}
          - id: c
            type: test.echo
            depends_on: [b]
            config: {value: "b said ${{ nodes.b.output.value }}"}
        outputs:
          last: ${{ nodes.c.output.value }}
        """)
    )
    assert report.status == "completed", report.error
    assert nodes.CALLS[report.workflow_id] == ["a", "b", "c"]
    assert report.nodes["b"].output == {"value": 2, "node": "b"}
    assert report.outputs == {"last": "b said 2"}
    assert report.definition.name == "Sequential"
    assert report.definition.version == "2"
    assert report.workflow_id.startswith("sequential-")
    for node_id in "abc":
        assert report.nodes[node_id].status == "completed"
        assert report.nodes[node_id].attempts == 1
    assert when(report.nodes["a"].ended_at) <= when(report.nodes["b"].started_at)
    assert when(report.nodes["b"].ended_at) <= when(report.nodes["c"].started_at)


async def test_parallel_fan_out_and_fan_in(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Fan out
        tasks:
          - {id: start, type: test.echo}
          - {id: p1, type: test.rendezvous, depends_on: [start], config: {parties: 3}}
          - {id: p2, type: test.rendezvous, depends_on: [start], config: {parties: 3}}
          - {id: p3, type: test.rendezvous, depends_on: [start], config: {parties: 3}}
          - id: join
            type: test.echo
            depends_on: [p1, p2, p3]
            config:
              value: ["${{ nodes.p1.status }}", "${{ nodes.p2.status }}", "${{ nodes.p3.status }}"]
        """)
    )
    # The rendezvous only succeeds when all three branch activities run at the same time.
    assert report.status == "completed", report.error
    assert report.nodes["p1"].output == {"group": "all", "met": ["p1", "p2", "p3"]}
    assert report.nodes["join"].output["value"] == ["completed"] * 3

    events = await events_of(tideflow.client, report.workflow_id)
    types = [event_type(e) for e in events]
    scheduled = scheduled_activity_ids(events)
    assert scheduled[0] == "start" and set(scheduled[1:4]) == {"p1", "p2", "p3"}
    assert scheduled[4] == "join"
    # The three branches are scheduled before any of them completes (second completion overall
    # is the first branch's), and the join only after the three completed.
    branch_scheduled = [i for i, e in enumerate(events) if event_type(e) == "ActivityTaskScheduled"]
    completions = [i for i, t in enumerate(types) if t == "ActivityTaskCompleted"]
    assert max(branch_scheduled[1:4]) < completions[1]
    assert branch_scheduled[4] > completions[3]
    overlap_end = min(when(report.nodes[p].ended_at) for p in ("p1", "p2", "p3"))
    overlap_start = max(when(report.nodes[p].started_at) for p in ("p1", "p2", "p3"))
    assert overlap_start <= overlap_end
    for p in ("p1", "p2", "p3"):
        assert when(report.nodes[p].ended_at) <= when(report.nodes["join"].started_at)


async def test_diamond(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Diamond
        tasks:
          - {id: top, type: test.echo, config: {value: 10}}
          - id: left
            type: test.echo
            depends_on: [top]
            config: {value: "${{ nodes.top.output.value * 2 }}"}
          - id: right
            type: test.echo
            depends_on: [top]
            config: {value: "${{ nodes.top.output.value * 3 }}"}
          - id: bottom
            type: test.echo
            depends_on: [left, right]
            config: {value: "${{ nodes.left.output.value + nodes.right.output.value }}"}
        outputs:
          sum: ${{ nodes.bottom.output.value }}
        """)
    )
    assert report.status == "completed", report.error
    assert report.outputs == {"sum": 50}
    calls = nodes.CALLS[report.workflow_id]
    assert calls[0] == "top" and set(calls[1:3]) == {"left", "right"} and calls[3] == "bottom"


async def test_when_false_skips_and_propagates(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Conditions
        inputs:
          amount: {type: number, default: 50}
        tasks:
          - {id: a, type: test.echo, config: {value: 1}}
          - id: big
            type: test.echo
            depends_on: [a]
            when: ${{ inputs.amount > 1000.0 }}
          - id: after_big
            type: test.echo
            depends_on: [big]
          - id: after_after
            type: test.echo
            depends_on: [after_big]
          - id: small
            type: test.echo
            depends_on: [a]
            when: ${{ inputs.amount <= 1000.0 && nodes.a.output.value == 1 }}
          - id: plain_false
            type: test.echo
            when: false
          - id: either
            type: test.echo
            depends_on: [big, small]
            config: {value: "${{ nodes.big.status }}/${{ nodes.small.status }}"}
        """)
    )
    assert report.status == "completed", report.error
    status = {node_id: n.status for node_id, n in report.nodes.items()}
    assert status == {
        "a": "completed",
        "big": "skipped",
        "after_big": "skipped",
        "after_after": "skipped",
        "small": "completed",
        "plain_false": "skipped",
        "either": "completed",
    }
    assert report.nodes["either"].output["value"] == "skipped/completed"
    assert report.nodes["big"].attempts == 0
    assert report.nodes["big"].output is None
    assert sorted(nodes.CALLS[report.workflow_id]) == ["a", "either", "small"]


async def test_join_any_runs_once_the_first_dependency_completes(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Join any
        tasks:
          - {id: fast, type: test.echo}
          - id: slow
            type: test.rendezvous
            config: {group: g, parties: 2}
          - id: first
            type: test.rendezvous
            depends_on: [fast, slow]
            join: any
            config: {group: g, parties: 2}
        """)
    )
    # `first` can only meet `slow` if it started while `slow` was still running.
    assert report.status == "completed", report.error
    assert report.nodes["first"].output == {"group": "g", "met": ["first", "slow"]}


# --------------------------------------------------------------------------------------------
# Retries and timeouts


async def test_flaky_node_is_retried_until_it_succeeds(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Flaky
        tasks:
          - id: flaky
            type: test.flaky
            config: {failures: 2, value: ok}
            retry: {max_attempts: 5, initial_interval: 50ms, backoff: fixed}
        """)
    )
    assert report.status == "completed", report.error
    node = report.nodes["flaky"]
    assert node.attempts == 3
    assert node.output == {"value": "ok", "calls": 3, "attempt": 3}
    assert node.error is None


async def test_retries_are_bounded_by_max_attempts(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Too flaky
        defaults:
          retry: {max_attempts: 3, backoff: fixed, initial_interval: 50ms}
        tasks:
          - id: flaky
            type: test.flaky
            config: {failures: 10}
        """)
    )
    assert report.status == "failed"
    assert report.nodes["flaky"].status == "failed"
    assert report.nodes["flaky"].attempts == 3
    assert nodes.ATTEMPTS[(report.workflow_id, "flaky")] == 3
    assert "flaky on purpose: call 3 of 10 failing" in (report.nodes["flaky"].error or "")


async def test_non_retryable_error_is_attempted_once(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Permanent
        tasks:
          - id: broken
            type: test.permanent
            config: {message: the ledger is closed}
            retry: {max_attempts: 5, initial_interval: 50ms}
        """)
    )
    assert report.status == "failed"
    node = report.nodes["broken"]
    assert node.status == "failed"
    assert node.attempts == 1
    assert nodes.ATTEMPTS[(report.workflow_id, "broken")] == 1
    assert node.error == "node 'broken' (test.permanent): the ledger is closed"
    assert "the ledger is closed" in (report.error or "")


async def test_timeout_fails_a_slow_node(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Slow
        tasks:
          - id: slow
            type: test.sleep
            config: {seconds: 30}
            timeout: 300ms
            retry: {max_attempts: 1}
        """)
    )
    assert report.status == "failed"
    node = report.nodes["slow"]
    assert node.status == "failed"
    assert node.attempts == 1
    assert "'slow'" in (node.error or "") and "timed out" in (node.error or "")
    assert "start-to-close" in (node.error or "")


# --------------------------------------------------------------------------------------------
# Error handling


async def test_on_error_continue(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Continue
        tasks:
          - id: broken
            type: test.permanent
            on_error: continue
          - id: after
            type: test.echo
            depends_on: [broken]
            config:
              value: {output: "${{ nodes.broken.output }}", status: "${{ nodes.broken.status }}"}
        """)
    )
    assert report.status == "completed", report.error
    assert report.error is None
    assert report.nodes["broken"].status == "failed"
    assert report.nodes["broken"].output is None
    assert "broken on purpose" in (report.nodes["broken"].error or "")
    assert report.nodes["after"].status == "completed"
    assert report.nodes["after"].output["value"] == {"output": None, "status": "failed"}


async def test_fallback_runs_with_the_error_and_stands_in(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Fallback
        tasks:
          - id: primary
            type: test.permanent
            config: {message: primary is down}
            on_error: {fallback: backup}
          - id: backup
            type: test.echo
            config:
              value: {failed: "${{ failed_node }}", why: "${{ error }}"}
          - id: consumer
            type: test.echo
            depends_on: [primary]
            config: {value: "${{ nodes.primary.output.value.failed }}"}
        """)
    )
    assert report.status == "completed", report.error
    backup_output = {
        "value": {"failed": "primary", "why": "node 'primary' (test.permanent): primary is down"},
        "node": "backup",
    }
    assert report.nodes["backup"].status == "completed"
    assert report.nodes["backup"].output == backup_output
    assert report.nodes["primary"].output == backup_output
    assert "primary is down" in (report.nodes["primary"].error or "")
    assert report.nodes["consumer"].output["value"] == "primary"
    assert nodes.CALLS[report.workflow_id] == ["backup", "consumer"]


async def test_fail_node_fails_the_run(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Failing
        inputs:
          reason: {type: string, default: no budget}
        tasks:
          - {id: a, type: test.echo}
          - id: stop
            type: fail
            depends_on: [a]
            config: {message: "stopped: ${{ inputs.reason }}"}
          - {id: never, type: test.echo, depends_on: [stop]}
        """)
    )
    assert report.status == "failed"
    assert report.error is not None and "stopped: no budget" in report.error
    assert report.nodes["stop"].status == "failed"
    assert report.nodes["never"].status != "completed"
    assert nodes.CALLS[report.workflow_id] == ["a"]


async def test_compensation_newest_first_and_on_failure_handlers(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Saga
        error_handling:
          on_failure: [notify]
        tasks:
          - {id: book_flight, type: test.echo, compensate: cancel_flight}
          - {id: book_hotel, type: test.echo, depends_on: [book_flight], compensate: cancel_hotel}
          - {id: charge, type: test.permanent, depends_on: [book_hotel],
             config: {message: card declined}}
          - id: cancel_flight
            type: test.echo
            config: {value: "${{ failed_node }}"}
          - id: cancel_hotel
            type: test.echo
            config: {value: "${{ failed_node }}"}
          - id: notify
            type: test.echo
            config: {value: "${{ failed_node }}: ${{ error }}"}
        """)
    )
    assert report.status == "failed"
    assert nodes.CALLS[report.workflow_id] == [
        "book_flight",
        "book_hotel",
        "cancel_hotel",
        "cancel_flight",
        "notify",
    ]
    assert report.nodes["cancel_hotel"].output["value"] == "book_hotel"
    assert report.nodes["cancel_flight"].output["value"] == "book_flight"
    assert report.nodes["notify"].output["value"] == (
        "charge: node 'charge' (test.permanent): card declined"
    )
    for handler in ("cancel_hotel", "cancel_flight", "notify"):
        assert report.nodes[handler].status == "completed"


async def test_handlers_do_not_run_when_the_run_completes(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Saga ok
        error_handling:
          on_failure: [notify]
        tasks:
          - {id: book, type: test.echo, compensate: undo}
          - {id: undo, type: test.echo}
          - {id: notify, type: test.echo}
        """)
    )
    assert report.status == "completed", report.error
    assert nodes.CALLS[report.workflow_id] == ["book"]
    assert report.nodes["undo"].status == "pending"
    assert report.nodes["notify"].status == "pending"


async def test_cancelling_a_run_cancels_running_nodes_and_compensates(
    tideflow: Tideflow,
) -> None:
    handle = await tideflow.start(
        yaml("""
        name: Cancel me
        tasks:
          - {id: reserve, type: test.echo, compensate: release}
          - id: long
            type: test.sleep
            depends_on: [reserve]
            config: {seconds: 60}
            heartbeat_timeout: 2s
          - {id: release, type: test.echo}
        """)
    )
    deadline = asyncio.get_running_loop().time() + 20
    while (await tideflow_client.status(tideflow.client, handle.id)).running != ["long"]:
        assert asyncio.get_running_loop().time() < deadline, "the long node never started"
        await asyncio.sleep(0.05)
    await tideflow_client.cancel(tideflow.client, handle.id)
    report = await tideflow.result(handle)
    assert report.status == "cancelled"
    assert report.nodes["long"].status == "cancelled"
    assert nodes.CALLS[handle.id] == ["reserve", "release"]
    deadline = asyncio.get_running_loop().time() + 10
    while (handle.id, "long") not in nodes.CANCELLED:
        assert asyncio.get_running_loop().time() < deadline, "the activity was never cancelled"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Timers, foreach, outputs, inputs


async def test_wait_is_a_durable_timer(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Wait
        tasks:
          - {id: pause, type: wait, config: {duration: 500ms}}
          - {id: after, type: test.echo, depends_on: [pause]}
        """)
    )
    assert report.status == "completed", report.error
    assert report.nodes["pause"].output == {"waited_seconds": 0.5}
    assert when(report.nodes["pause"].ended_at) - when(report.nodes["pause"].started_at) >= (
        timedelta(milliseconds=500)
    )
    events = await events_of(tideflow.client, report.workflow_id)
    timers = [e for e in events if event_type(e) == "TimerStarted"]
    assert len(timers) == 1
    assert timers[0].timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() == (
        timedelta(milliseconds=500)
    )
    assert [event_type(e) for e in events].count("TimerFired") == 1
    assert scheduled_activity_ids(events) == ["after"]


async def test_wait_one_day_on_the_time_skipping_server(time_skipping_tideflow: Tideflow) -> None:
    report = await time_skipping_tideflow.run(
        yaml("""
        name: Wait a day
        tasks:
          - {id: cooling_off, type: wait, config: {duration: 1d}}
          - {id: after, type: test.echo, depends_on: [cooling_off]}
        """)
    )
    assert report.status == "completed", report.error
    assert report.nodes["cooling_off"].output == {"waited_seconds": 86400.0}
    waited = when(report.nodes["cooling_off"].ended_at) - when(
        report.nodes["cooling_off"].started_at
    )
    assert waited >= timedelta(days=1)
    assert report.nodes["after"].status == "completed"


async def test_foreach_with_concurrency(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Foreach
        inputs:
          skus: {type: array, default: [a, b, c, d, e]}
        tasks:
          - id: pairs
            type: test.rendezvous
            foreach: ${{ [0, 1, 2, 3] }}
            concurrency: 2
            config: {group: "g${{ index / 2 }}", parties: 2}
          - id: each
            type: test.sleep
            foreach: ${{ inputs.skus }}
            concurrency: 2
            config: {seconds: 0.1}
          - id: upper
            type: test.echo
            foreach: ${{ inputs.skus }}
            config: {value: "${{ index }}:${{ upperAscii(item) }}"}
        outputs:
          upper: ${{ nodes.upper.output.map(o, o.value) }}
        """)
    )
    assert report.status == "completed", report.error
    # Items run two at a time: 0 and 1 meet, then 2 and 3.
    assert [o["met"] for o in report.nodes["pairs"].output] == [
        ["pairs[0]", "pairs[1]"],
        ["pairs[0]", "pairs[1]"],
        ["pairs[2]", "pairs[3]"],
        ["pairs[2]", "pairs[3]"],
    ]
    assert nodes.MAX_IN_FLIGHT[(report.workflow_id, "each")] <= 2
    assert report.nodes["each"].output == [{"slept": 0.1}] * 5
    assert report.outputs == {"upper": ["0:A", "1:B", "2:C", "3:D", "4:E"]}
    assert report.nodes["upper"].status == "completed"


async def test_outputs_are_computed_when_the_run_ends(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Outputs
        inputs:
          customer: {type: string, required: true}
        vars:
          stage: draft
        tasks:
          - {id: total, type: test.echo, config: {value: 1234.5}}
          - {id: promote, type: set, depends_on: [total], config: {stage: final}}
        outputs:
          summary: "${{ inputs.customer }} owes ${{ nodes.total.output.value }}"
          amount: ${{ nodes.total.output.value }}
          stage: ${{ vars.stage }}
          big: ${{ nodes.total.output.value > 1000.0 }}
          nested: {statuses: ["${{ nodes.total.status }}", "${{ nodes.promote.status }}"]}
        """),
        {"customer": "ACME"},
    )
    assert report.status == "completed", report.error
    assert report.outputs == {
        "summary": "ACME owes 1234.5",
        "amount": 1234.5,
        "stage": "final",
        "big": True,
        "nested": {"statuses": ["completed", "completed"]},
    }


async def test_report_shape(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        yaml("""
        name: Report shape
        version: 1.0.0
        tasks:
          - {id: only, type: test.echo, config: {value: {k: v}}}
        outputs:
          k: ${{ nodes.only.output.value.k }}
        """)
    )
    data = json.loads(report.model_dump_json())
    assert set(data) == {
        "workflow_id",
        "run_id",
        "definition",
        "status",
        "outputs",
        "error",
        "usage",
        "nodes",
    }
    assert data["definition"] == {"name": "Report shape", "version": "1.0.0"}
    assert data["status"] == "completed"
    assert data["outputs"] == {"k": "v"}
    assert data["error"] is None
    assert data["usage"]["ai_tokens"] == 0
    node = data["nodes"]["only"]
    assert {"status", "attempts", "started_at", "ended_at", "output", "error"} <= set(node)
    assert node["status"] == "completed" and node["attempts"] == 1 and node["error"] is None
    assert node["output"] == {"value": {"k": "v"}, "node": "only"}
    assert when(node["started_at"]) <= when(node["ended_at"])
    described = await tideflow.client.get_workflow_handle(report.workflow_id).describe()
    assert data["run_id"] == described.run_id
    assert data["workflow_id"].startswith("report-shape-")


INPUT_SCHEMA = yaml("""
name: Typed inputs
inputs:
  document: {type: string, required: true}
  threshold: {type: number, default: 10}
tasks:
  - id: use
    type: test.echo
    config: {value: "${{ inputs.threshold }}"}
""")


async def test_inputs_defaults_and_types(tideflow: Tideflow) -> None:
    report = await tideflow.run(INPUT_SCHEMA, {"document": "a.pdf"})
    assert report.status == "completed", report.error
    assert report.nodes["use"].output["value"] == 10.0


async def test_bad_inputs_are_rejected_before_anything_runs(tideflow: Tideflow) -> None:
    workflow_id = f"typed-inputs-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InputError) as caught:
        await tideflow.run(INPUT_SCHEMA, {"threshold": "high"}, workflow_id=workflow_id)
    problems = caught.value.problems
    assert "input 'document': required" in problems
    assert "input 'threshold': must be a number, got string 'high'" in problems
    with pytest.raises(RPCError) as missing:
        await tideflow.client.get_workflow_handle(workflow_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_bad_inputs_started_raw_fail_the_workflow(tideflow: Tideflow) -> None:
    definition = tideflow.load(INPUT_SCHEMA)
    workflow_id = f"raw-{uuid.uuid4().hex[:8]}"
    handle = await tideflow.client.start_workflow(
        TideflowWorkflow.run,
        RunInput(
            definition=tideflow_client.definition_json(definition),
            inputs={"document": 42},
        ),
        id=workflow_id,
        task_queue=tideflow.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInputs"
    assert cause.non_retryable
    assert "input 'document'" in cause.message and "must be a string" in cause.message
    events = await events_of(tideflow.client, workflow_id)
    assert scheduled_activity_ids(events) == []


# --------------------------------------------------------------------------------------------
# Any Temporal client can start a run


async def test_start_with_the_temporal_cli(tideflow: Tideflow, tmp_path: Path) -> None:
    definition = tmp_path / "greet.yaml"
    definition.write_text(
        yaml("""
        name: Greet
        inputs:
          who: {type: string, required: true}
        vars:
          greeting: ""
        tasks:
          - id: compose
            type: set
            config: {greeting: "hello ${{ inputs.who }}"}
        outputs:
          greeting: ${{ vars.greeting }}
        """)
    )
    compiled = await _run_command(
        sys.executable, "-m", "starter.cli", "compile", str(definition), "--input", "who=world"
    )
    run_json = tmp_path / "run.json"
    run_json.write_text(compiled)
    assert json.loads(compiled)["inputs"] == {"who": "world"}
    workflow_id = f"greet-cli-{uuid.uuid4().hex[:8]}"
    await _run_command(
        temporal_cli_path(),
        "workflow",
        "start",
        "--type",
        "TideflowWorkflow",
        "--task-queue",
        tideflow.task_queue,
        "--workflow-id",
        workflow_id,
        "--input-file",
        str(run_json),
        "--address",
        tideflow.address,
    )
    report = await tideflow_client.result(tideflow.client, workflow_id)
    assert report.status == "completed", report.error
    assert report.outputs == {"greeting": "hello world"}
    assert report.definition.name == "Greet"


async def _run_command(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


# --------------------------------------------------------------------------------------------
# History cost: the interpreter adds no events to what a hand-written workflow records


@workflow.defn(name="HandWrittenSequence")
class HandWrittenSequence:
    """Calls ``test.echo`` ``count`` times in a row, as a developer would by hand."""

    @workflow.run
    async def run(self, count: int) -> list[Any]:
        """Run the activities one after another."""
        outputs = []
        for i in range(count):
            result = await workflow.execute_activity(
                "test.echo",
                NodeInput(
                    node_id=f"n{i}",
                    config={"value": i},
                ),
                result_type=NodeResult,
                start_to_close_timeout=timedelta(minutes=10),
            )
            outputs.append(result.output)
        return outputs


async def test_history_events_match_a_hand_written_workflow(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    count = 20
    tasks = "\n".join(
        f"  - {{id: n{i}, type: test.echo, config: {{value: {i}}}"
        + (f", depends_on: [n{i - 1}]" if i else "")
        + "}"
        for i in range(count)
    )
    report = await tideflow.run(f"name: Twenty\ntasks:\n{tasks}\n")
    assert report.status == "completed", report.error

    task_queue = f"hand-written-{uuid.uuid4().hex[:8]}"
    resources = WorkerResources(WorkerSettings(home=tmp_path, task_queue=task_queue))
    hand_id = f"hand-written-{uuid.uuid4().hex[:8]}"
    async with Worker(
        tideflow.client,
        task_queue=task_queue,
        workflows=[HandWrittenSequence],
        activities=registry.activities(resources),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        outputs = await tideflow.client.execute_workflow(
            HandWrittenSequence.run, count, id=hand_id, task_queue=task_queue
        )
    await resources.aclose()
    assert [o["value"] for o in outputs] == list(range(count))

    yaml_events = [event_type(e) for e in await events_of(tideflow.client, report.workflow_id)]
    hand_events = [event_type(e) for e in await events_of(tideflow.client, hand_id)]
    assert len(yaml_events) == len(hand_events)
    assert yaml_events == hand_events
    assert yaml_events.count("ActivityTaskScheduled") == count
    # And about the same bytes: the plan and the report travel by reference in the payload
    # store, so the definition costs history no more than a hand-written workflow's code.
    yaml_bytes = sum(e.ByteSize() for e in await events_of(tideflow.client, report.workflow_id))
    hand_bytes = sum(e.ByteSize() for e in await events_of(tideflow.client, hand_id))
    assert yaml_bytes <= 1.1 * hand_bytes, (yaml_bytes, hand_bytes)
