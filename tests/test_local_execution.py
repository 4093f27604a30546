"""``execution: local``: cheap nodes run as Temporal local activities — same retries, timeouts
and report as regular activities, a fraction of the history events."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer


def _kinds(history: object) -> list[int]:
    return [e.event_type for e in history.events]  # type: ignore[attr-defined]


SEQUENCE = """
name: local sequence
defaults: {execution: local}
steps:
  - {id: a, type: test.echo, config: {value: 1}}
  - {id: b, type: test.echo, config: {value: "${{ nodes.a.output.value + 1 }}"}}
  - {id: c, type: test.echo, config: {value: "${{ nodes.b.output.value + 1 }}"}}
outputs:
  last: ${{ nodes.c.output.value }}
"""


async def test_local_nodes_run_with_markers_not_activity_tasks(tideflow: Tideflow) -> None:
    report = await tideflow.run(SEQUENCE)
    assert report.status == "completed", report.error
    assert report.outputs == {"last": 3}
    assert {n: (r.status, r.attempts) for n, r in report.nodes.items()} == {
        "a": ("completed", 1),
        "b": ("completed", 1),
        "c": ("completed", 1),
    }
    history = await tideflow.client.get_workflow_handle(report.workflow_id).fetch_history()
    kinds = _kinds(history)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    assert kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 3
    remote = await tideflow.run(SEQUENCE.replace("defaults: {execution: local}\n", ""))
    remote_history = await tideflow.client.get_workflow_handle(remote.workflow_id).fetch_history()
    assert len(history.events) < len(remote_history.events) / 2


async def test_a_local_node_is_retried_and_times_out_like_a_regular_one(
    tideflow: Tideflow,
) -> None:
    report = await tideflow.run("""
name: local retries
defaults:
  execution: local
  retry: {max_attempts: 3, backoff: fixed, initial_interval: 50ms}
tasks:
  - {id: flaky, type: test.flaky, config: {failures: 2, value: ok}}
  - {id: slow, type: test.sleep, config: {seconds: 5}, timeout: 500ms, on_error: continue,
     retry: {max_attempts: 1}}
""")
    assert report.status == "completed", report.error
    assert report.nodes["flaky"].status == "completed"
    assert report.nodes["flaky"].attempts == 3
    assert report.nodes["slow"].status == "failed"
    assert "timed out" in (report.nodes["slow"].error or "")


async def test_short_gets_run_locally_by_default(
    tideflow: Tideflow, webhook_server: WebhookServer
) -> None:
    report = await tideflow.run(f"""
name: get locally
tasks:
  - {{id: get, type: http.request, config: {{url: "{webhook_server.url("/items")}", timeout: 5}}}}
  - {{id: post, type: http.request, config: {{url: "{webhook_server.url("/hook")}", method: POST,
     json: {{a: 1}}}}}}
""")
    assert report.status == "completed", report.error
    history = await tideflow.client.get_workflow_handle(report.workflow_id).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == ["post"]  # the GET ran as a local activity
    assert _kinds(history).count(EventType.EVENT_TYPE_MARKER_RECORDED) == 1


async def test_foreach_items_run_locally(tideflow: Tideflow) -> None:
    report = await tideflow.run("""
name: local items
tasks:
  - id: each
    type: test.echo
    execution: local
    foreach: ${{ [1, 2, 3, 4, 5] }}
    concurrency: 2
    config: {value: "${{ item * 10 }}"}
""")
    assert report.status == "completed", report.error
    assert [o["value"] for o in report.nodes["each"].output] == [10, 20, 30, 40, 50]
