"""Operating runs (DSL.md section 5): pause/resume, skip, retry, vars, approvals, events,
cancel, the state query and the search attributes an operator filters on."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import pytest

from interpreter.workflow import TideflowWorkflow
from starter import client as api
from tests import testing_node_types as probes
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow


def named(text: str) -> str:
    """A definition name unique to the test, so visibility queries find only its runs."""
    return text.replace("NAME", f"ops-{uuid.uuid4().hex[:8]}")


PAUSE = named("""
name: NAME
tasks:
  - id: slow
    type: test.sleep
    config: {seconds: 1.0}
  - id: next
    type: test.echo
    depends_on: [slow]
    config: {value: after}
""")


async def test_pause_lets_the_running_node_finish_and_starts_nothing_until_resumed(
    tideflow: Tideflow,
) -> None:
    handle = await tideflow.start(PAUSE)
    client = tideflow.client
    await eventually(lambda: _node_is(client, handle.id, "slow", "running"))
    await api.pause(client, handle.id)

    state = await tideflow.client.get_workflow_handle(handle.id).query(TideflowWorkflow.state)
    assert state.status == "paused" and state.paused
    await eventually(lambda: _node_is(client, handle.id, "slow", "completed"))
    await asyncio.sleep(0.5)  # a paused run starts nothing new
    state = await tideflow.client.get_workflow_handle(handle.id).query(TideflowWorkflow.state)
    assert state.nodes["next"] == "ready"
    assert probes.CALLS[handle.id] == []

    await tideflow.client.get_workflow_handle(handle.id).signal(TideflowWorkflow.resume)
    report = await tideflow.result(handle)
    assert report.status == "completed"
    assert probes.CALLS[handle.id] == ["next"]
    assert {n: r.attempts for n, r in report.nodes.items()} == {"slow": 1, "next": 1}
    statuses = [t.status for t in state.history if t.node is None]
    assert statuses == ["running", "paused"]


async def _node_is(client: Any, workflow_id: str, node: str, status: str) -> bool:
    try:
        state = await api.status(client, workflow_id)
    except Exception:
        return False
    return state.nodes.get(node) == status


async def test_a_paused_run_is_found_by_its_search_attributes(tideflow: Tideflow) -> None:
    definition = tideflow.load(PAUSE)
    handle = await tideflow.start(PAUSE)
    await api.pause(tideflow.client, handle.id)
    query = f'TideflowDefinition="{definition.slug}" AND TideflowStatus="paused"'

    async def found() -> list[str]:
        return [w.id async for w in tideflow.client.list_workflows(query)]

    assert await eventually(found) == [handle.id]
    listed = await api.list_runs(tideflow.client, definition=definition.slug, status="paused")
    assert [(r.workflow_id, r.status) for r in listed] == [(handle.id, "paused")]
    await api.resume(tideflow.client, handle.id)
    assert (await tideflow.result(handle)).status == "completed"


ATTENTION = """
name: attention
tasks:
  - id: flaky
    type: test.flaky
    retry: {max_attempts: 1}
    on_error: pause
    config: {failures: 1, value: fixed}
  - id: after
    type: test.echo
    depends_on: [flaky]
    config: {value: "${{ nodes.flaky.output.value }}"}
"""


async def test_retry_after_on_error_pause_runs_the_node_again_and_the_graph_resumes(
    tideflow: Tideflow,
) -> None:
    handle = await tideflow.start(ATTENTION)
    client = tideflow.client
    state = await eventually(lambda: _state_if(client, handle.id, "needs_attention"))
    assert state.needs_attention == ["flaky"] and state.nodes["after"] == "pending"

    answer = await api.retry(client, handle.id, "flaky")
    assert answer.node == "flaky"
    report = await tideflow.result(handle)
    assert report.status == "completed"
    assert report.nodes["after"].output["value"] == "fixed"
    assert probes.ATTEMPTS[(handle.id, "flaky")] == 2


async def _state_if(client: Any, workflow_id: str, status: str) -> Any:
    try:
        state = await api.status(client, workflow_id)
    except Exception:
        return None
    return state if state.status == status else None


SKIPPABLE = """
name: skippable
on_error: pause
tasks:
  - id: broken
    type: test.permanent
  - id: after
    type: test.echo
    depends_on: [broken]
    config: {value: "${{ nodes.broken.output.answer }}"}
"""


async def test_skip_after_on_error_pause_hands_the_given_output_downstream(
    tideflow: Tideflow,
) -> None:
    handle = await tideflow.start(SKIPPABLE)
    await eventually(lambda: _state_if(tideflow.client, handle.id, "needs_attention"))
    await api.skip(tideflow.client, handle.id, "broken", {"answer": 42})
    report = await tideflow.result(handle)
    assert report.status == "completed"
    assert report.nodes["broken"].status == "skipped"
    assert report.nodes["after"].output["value"] == 42


async def test_a_refused_update_changes_nothing(tideflow: Tideflow) -> None:
    handle = await tideflow.start(ATTENTION)
    client = tideflow.client
    before = await eventually(lambda: _state_if(client, handle.id, "needs_attention"))
    refusals = {
        "unknown node": api.skip(client, handle.id, "nope"),
        "pending node cannot be retried": api.retry(client, handle.id, "after"),
        "unknown var": api.set_vars(client, handle.id, {"nope": 1}),
        "not an approval": api.approve(client, handle.id, "flaky"),
    }
    for why, request in refusals.items():
        with pytest.raises(api.ControlError) as refused:
            await request
        assert "refused" in str(refused.value), why
    after = await api.status(client, handle.id)
    assert after.model_dump() == before.model_dump()
    await api.cancel(client, handle.id)


VARS = """
name: vars
vars: {go: false, label: ""}
tasks:
  - id: slow
    type: test.sleep
    config: {seconds: 0.8}
  - id: gated
    type: test.echo
    depends_on: [slow]
    when: ${{ vars.go }}
    config: {value: "${{ vars.label }}"}
"""


async def test_set_vars_changes_a_later_when_and_is_type_checked(tideflow: Tideflow) -> None:
    handle = await tideflow.start(VARS)
    client = tideflow.client
    with pytest.raises(api.ControlError, match="holds a boolean, not a string"):
        await api.set_vars(client, handle.id, {"go": "yes"})
    await api.set_vars(client, handle.id, {"go": True, "label": "operator"})
    report = await tideflow.result(handle)
    assert report.nodes["gated"].status == "completed"
    assert report.nodes["gated"].output["value"] == "operator"


async def test_without_set_vars_the_when_skips(tideflow: Tideflow) -> None:
    report = await tideflow.run(VARS)
    assert report.nodes["gated"].status == "skipped"


APPROVAL = """
name: approval
tasks:
  - id: review
    type: approval
    config: {message: "Pay this invoice?", timeout: WAIT_FOR, on_timeout: WHEN_LATE}
  - id: pay
    type: test.echo
    depends_on: [review]
    config: {value: "${{ nodes.review.output.approved }}"}
"""


def approval(timeout: str = "1h", on_timeout: str = "fail") -> str:
    return APPROVAL.replace("WAIT_FOR", timeout).replace("WHEN_LATE", on_timeout)


async def test_approval_approved_with_a_comment(tideflow: Tideflow) -> None:
    handle = await tideflow.start(approval())
    state = await eventually(lambda: _state_if(tideflow.client, handle.id, "waiting"))
    assert state.waiting == {"review": "approval"}
    await api.approve(tideflow.client, handle.id, "review", True, "looks right", "ana")
    report = await tideflow.result(handle)
    assert report.status == "completed"
    answer = {"approved": True, "comment": "looks right", "by": "ana"}
    assert report.nodes["review"].output == answer
    assert report.nodes["pay"].output["value"] is True


async def test_approval_rejected_fails_the_node_with_the_comment(tideflow: Tideflow) -> None:
    handle = await tideflow.start(approval())
    await eventually(lambda: _state_if(tideflow.client, handle.id, "waiting"))
    await api.approve(tideflow.client, handle.id, "review", False, "wrong amount")
    report = await tideflow.result(handle)
    assert report.status == "failed"
    assert report.nodes["review"].error == "node 'review': rejected: wrong amount"
    assert report.nodes["pay"].status == "cancelled"  # it never ran: the run failed first


async def test_approval_timeout_on_the_time_skipping_server(
    time_skipping_tideflow: Tideflow,
) -> None:
    approved = await time_skipping_tideflow.run(approval("2d", "approve"))
    assert approved.status == "completed"
    assert approved.nodes["review"].output["approved"] is True
    failed = await time_skipping_tideflow.run(approval("2d", "fail"))
    assert failed.status == "failed"
    assert "timed out waiting for approval" in (failed.error or "")


EVENTS = """
name: NAME
inputs:
  order: {type: string}
tasks:
  - id: paid
    type: wait_for_event
    config: {event: payment, correlation: "${{ inputs.order }}", timeout: 1m}
  - id: ship
    type: test.echo
    depends_on: [paid]
    config: {value: "${{ nodes.paid.output.payload.amount }}"}
"""


async def test_an_event_reaches_only_the_run_waiting_with_its_correlation(
    tideflow: Tideflow,
) -> None:
    text = named(EVENTS)
    definition = tideflow.load(text)
    first = await tideflow.start(text, {"order": "A-1"})
    second = await tideflow.start(text, {"order": "B-2"})
    for handle in (first, second):
        await eventually(functools.partial(_state_if, tideflow.client, handle.id, "waiting"))
    delivered = await api.emit_event(
        tideflow.client,
        "payment",
        {"amount": 12.5},
        correlation="B-2",
        definition=definition.slug,
    )
    assert set(delivered) == {first.id, second.id}  # broadcast; only B-2 matches
    report = await tideflow.result(second)
    assert report.nodes["ship"].output["value"] == 12.5
    state = await api.status(tideflow.client, first.id)
    assert state.status == "waiting" and state.waiting == {"paid": "event:payment"}
    await api.emit(tideflow.client, first.id, "payment", {"amount": 1}, "A-1")
    assert (await tideflow.result(first)).nodes["ship"].output["value"] == 1


CANCEL = """
name: cancel
tasks:
  - id: book
    type: test.echo
    compensate: unbook
    config: {value: booked}
  - id: long
    type: test.sleep
    depends_on: [book]
    heartbeat_timeout: 2s
    config: {seconds: 30}
  - id: unbook
    type: test.echo
    config: {value: "undo ${{ failed_node }}"}
"""


async def test_cancel_cancels_running_nodes_and_runs_compensations(tideflow: Tideflow) -> None:
    handle = await tideflow.start(CANCEL)
    await eventually(lambda: _node_is(tideflow.client, handle.id, "long", "running"))
    await api.cancel(tideflow.client, handle.id)
    report = await tideflow.result(handle)
    assert report.status == "cancelled"
    assert report.nodes["long"].status == "cancelled"
    assert report.nodes["unbook"].output == {"value": "undo book", "node": "unbook"}
    await eventually(lambda: _cancelled(handle.id, "long"))


async def _cancelled(workflow_id: str, node: str) -> bool:
    return (workflow_id, node) in probes.CANCELLED


async def test_state_query_reports_attempts_vars_and_timed_history(tideflow: Tideflow) -> None:
    report = await tideflow.run(ATTENTION.replace("failures: 1", "failures: 0"))
    state = await tideflow.client.get_workflow_handle(report.workflow_id).query(
        TideflowWorkflow.state
    )
    assert state.status == "completed"
    assert state.nodes == {"flaky": "completed", "after": "completed"}
    assert state.attempts == {"flaky": 1, "after": 1}
    node_history = [(t.node, t.status) for t in state.history if t.node]
    assert node_history == [
        ("flaky", "running"),
        ("flaky", "completed"),
        ("after", "running"),
        ("after", "completed"),
    ]
    assert all(t.at.endswith("Z") for t in state.history)
