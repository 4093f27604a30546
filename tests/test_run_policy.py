"""The core's policies on the real dev server: cancel with a failing compensation, TaskGroup
semantics for foreach items, foreach through batches of child workflows, continue-as-new in the
middle of a foreach and while paused, a 1,000-node graph, and the operator's fail_node."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from interpreter.workflow import TideflowWorkflow
from starter import client as api
from tests import testing_node_types as probes
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow


def named(text: str) -> str:
    """A definition name unique to the test."""
    return text.replace("NAME", f"policy-{uuid.uuid4().hex[:8]}")


async def _node_is(client: Client, workflow_id: str, node: str, status: str) -> bool:
    state = await api.status(client, workflow_id)
    return state.nodes.get(node) == status


async def _runs_of(client: Client, workflow_id: str) -> list[Any]:
    """Every execution (run) under a workflow id, oldest first."""
    found = [e async for e in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    return sorted(found, key=lambda e: e.start_time)


async def _history_lengths(client: Client, query: str) -> dict[str, int]:
    lengths = {}
    async for execution in client.list_workflows(query):
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        lengths[f"{execution.id}/{execution.run_id}"] = len(history.events)
    return lengths


async def test_cancel_with_a_failing_compensation_ends_cancelled_with_its_failure(
    tideflow: Tideflow,
) -> None:
    handle = await tideflow.start(
        named("""
        name: NAME
        tasks:
          - {id: reserve, type: test.echo, compensate: release}
          - {id: long, type: test.sleep, depends_on: [reserve], config: {seconds: 60},
             heartbeat_timeout: 2s}
          - {id: release, type: test.permanent, config: {message: the undo endpoint is down}}
        """)
    )
    await eventually(lambda: _node_is(tideflow.client, handle.id, "long", "running"))
    await api.cancel(tideflow.client, handle.id)
    report = await asyncio.wait_for(tideflow.result(handle), timeout=30)
    assert report.status == "cancelled"
    assert report.nodes["long"].status == "cancelled"
    assert report.nodes["release"].status == "failed"
    assert (
        report.nodes["release"].error
        == "node 'release' (test.permanent): the undo endpoint is down"
    )
    described = await tideflow.client.get_workflow_handle(handle.id).describe()
    assert described.status is not None and described.status.name == "CANCELED"


async def test_a_failing_foreach_item_cancels_its_running_siblings(tideflow: Tideflow) -> None:
    report = await asyncio.wait_for(
        tideflow.run(
            named("""
            name: NAME
            inputs:
              items: {type: array}
            tasks:
              - id: each
                type: test.sleep
                foreach: ${{ inputs.items }}
                concurrency: 3
                heartbeat_timeout: 2s
                retry: {max_attempts: 1}
                config: {seconds: "${{ item.seconds }}", fail_after: "${{ item.fail_after }}"}
            """),
            {
                "items": [
                    {"seconds": 60, "fail_after": None},
                    {"seconds": 60, "fail_after": 0.3},
                    {"seconds": 60, "fail_after": None},
                    {"seconds": 0, "fail_after": None},
                ]
            },
        ),
        timeout=30,
    )
    assert report.status == "failed"
    assert "failed after 0.3 s on purpose" in (report.error or "")
    wf = report.workflow_id
    await eventually(lambda: _both_cancelled(wf), what="the running siblings were never cancelled")
    assert (wf, "each[3]") not in probes.CANCELLED  # never started: nothing starts after a failure


async def _both_cancelled(workflow_id: str) -> bool:
    return {(workflow_id, "each[0]"), (workflow_id, "each[2]")} <= probes.CANCELLED


async def test_a_foreach_of_2000_items_runs_in_batches_with_every_history_small(
    tideflow: Tideflow,
) -> None:
    report = await asyncio.wait_for(
        tideflow.run(
            named("""
            name: NAME
            inputs:
              count: {type: integer}
            tasks:
              - id: numbers
                type: code.python
                config: {code: "return list(range(inputs['count']))"}
              - id: each
                type: test.echo
                depends_on: [numbers]
                foreach: ${{ nodes.numbers.output }}
                batch_size: 250
                concurrency: 100
                config: {value: "${{ item * 2 }}"}
              - id: total
                type: code.python
                depends_on: [each]
                config: {code: "return sum(r['value'] for r in nodes['each']['output'])"}
            """),
            {"count": 2000},
        ),
        timeout=240,
    )
    assert report.status == "completed", report.error
    assert report.nodes["total"].output == sum(i * 2 for i in range(2000))
    assert len(report.nodes["each"].output) == 2000
    assert report.nodes["each"].output[1999] == {"value": 3998, "node": "each[1999]"}
    lengths = await _history_lengths(
        tideflow.client, f'WorkflowId STARTS_WITH "{report.workflow_id}"'
    )
    assert len(lengths) == 1 + 8  # the run and its 8 batch children
    # 250 items per batch: ~4 events an item, plus its workflow tasks (2,000 in one history: ~6,000)
    assert max(lengths.values()) < 1300, lengths


async def test_continue_as_new_in_the_middle_of_a_foreach(tideflow: Tideflow) -> None:
    report = await asyncio.wait_for(
        tideflow.run(
            named("""
            name: NAME
            inputs:
              numbers: {type: array}
            tasks:
              - id: each
                type: test.echo
                foreach: ${{ inputs.numbers }}
                concurrency: 3
                config: {value: "${{ item }}"}
              - id: after
                type: test.echo
                depends_on: [each]
                config: {value: "${{ size(nodes.each.output) }}"}
            """),
            {"numbers": list(range(1, 21))},
            history_limit=30,
        ),
        timeout=60,
    )
    assert report.status == "completed", report.error
    assert [o["value"] for o in report.nodes["each"].output] == list(range(1, 21))
    assert report.nodes["after"].output["value"] == 20
    runs = await _runs_of(tideflow.client, report.workflow_id)
    assert len(runs) >= 3, "the run never continued as new"
    for run in runs[:-1]:
        history = await tideflow.client.get_workflow_handle(
            report.workflow_id, run_id=run.run_id
        ).fetch_history()
        kinds = [e.event_type for e in history.events]
        assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        assert len(kinds) < 60


async def test_continue_as_new_while_paused_and_waiting_for_an_approval(
    tideflow: Tideflow,
) -> None:
    handle = await tideflow.start(
        named("""
        name: NAME
        vars: {note: ""}
        tasks:
          - {id: ask, type: approval, config: {timeout: 1h}}
          - {id: after, type: test.echo, depends_on: [ask], config: {value: "${{ vars.note }}"}}
        """),
        history_limit=10,
    )
    client = tideflow.client
    await eventually(lambda: _node_is(client, handle.id, "ask", "waiting"))
    first_run = (await client.get_workflow_handle(handle.id).describe()).run_id
    await api.pause(client, handle.id)
    await api.set_vars(client, handle.id, {"note": "carried"})
    await eventually(lambda: _continued(client, handle.id, first_run), what="no continue-as-new")
    state = await api.status(client, handle.id)
    assert state.paused and state.status == "paused"
    assert state.waiting == {"ask": "approval"}
    assert state.vars == {"note": "carried"}
    await api.approve(client, handle.id, "ask", True, "fine", by="ana")
    await eventually(lambda: _node_is(client, handle.id, "ask", "completed"))
    state = await api.status(client, handle.id)
    assert state.nodes["after"] == "ready"  # paused: nothing starts
    await api.resume(client, handle.id)
    report = await tideflow.result(handle)
    assert report.status == "completed", report.error
    assert report.nodes["ask"].output == {"approved": True, "comment": "fine", "by": "ana"}
    assert report.nodes["after"].output["value"] == "carried"
    statuses = [t.status for t in state.history if t.node is None]
    assert "paused" in statuses


async def _continued(client: Client, workflow_id: str, first_run: str) -> bool:
    described = await client.get_workflow_handle(workflow_id).describe()
    return described.run_id != first_run


async def test_a_1000_node_graph_continues_as_new_and_completes(tideflow: Tideflow) -> None:
    layers, width = 10, 100
    lines = ["name: NAME", "tasks:"]
    for layer in range(layers):
        for i in range(width):
            deps = f", depends_on: [l{layer - 1}_{i}]" if layer else ""
            lines.append(f"  - {{id: l{layer}_{i}, type: test.echo{deps}}}")
    report = await asyncio.wait_for(
        tideflow.run(named("\n".join(lines)), history_limit=1500), timeout=240
    )
    assert report.status == "completed", report.error
    assert len(report.nodes) == 1000
    assert {n.status for n in report.nodes.values()} == {"completed"}
    runs = await _runs_of(tideflow.client, report.workflow_id)
    assert len(runs) >= 2


async def test_an_operator_fails_a_node_that_needs_attention(tideflow: Tideflow) -> None:
    handle = await tideflow.start(
        named("""
        name: NAME
        tasks:
          - {id: book, type: test.echo, compensate: unbook}
          - {id: charge, type: test.permanent, depends_on: [book], on_error: pause,
             config: {message: card declined}}
          - {id: unbook, type: test.echo, config: {value: "${{ failed_node }}"}}
        """)
    )
    client = tideflow.client
    await eventually(lambda: _node_is(client, handle.id, "charge", "needs_attention"))
    try:
        await api.fail(client, handle.id, "book")
    except api.ControlError as e:
        assert "only a node that needs attention or waits" in str(e)
    else:
        raise AssertionError("failing a completed node was accepted")
    answer = await api.fail(client, handle.id, "charge", "card expired", by="ana")
    assert answer.status == "failed"
    report = await tideflow.result(handle)
    assert report.status == "failed"
    assert report.error == "node 'charge' failed by an operator (ana): card expired"
    assert report.nodes["charge"].error == (
        "node 'charge' (test.permanent): card declined; failed by an operator (ana): card expired"
    )
    assert report.nodes["unbook"].output["value"] == "book"
    state = await client.get_workflow_handle(handle.id).query(TideflowWorkflow.state)
    assert state.status == "failed"
