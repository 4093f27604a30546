"""Values over the payload threshold travel through a run as references to the payload store:
the next node and the report see the value itself, the history holds only small references."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from interpreter.report import RunReport
from tests.servers.tideflow_worker import Tideflow

BIG = """
name: big-values
tasks:
  - id: produce
    type: code
    config:
      code: |
        return {"text": "word " * 200_000, "pages": 3}
  - id: measure
    type: test.echo
    depends_on: [produce]
    config:
      value:
        length: ${{ size(nodes.produce.output.text) }}
        tail: ${{ substring(nodes.produce.output.text, 999990) }}
"""


async def test_a_megabyte_output_flows_to_the_next_node_and_the_report(tideflow: Tideflow) -> None:
    report = await tideflow.run(BIG)
    assert report.status == "completed", report.error
    assert report.nodes["produce"].output["text"] == "word " * 200_000  # the report resolves it
    assert report.nodes["measure"].output["value"] == {"length": 1_000_000, "tail": "word word "}

    history = await tideflow.client.get_workflow_handle(report.workflow_id).fetch_history()
    sizes = [event.ByteSize() for event in history.events]
    assert max(sizes) < 64 * 1024  # no event carries the megabyte itself
    completed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    assert len(completed) == 2


HUGE = """
name: huge-values
tasks:
  - id: produce
    type: code
    config:
      code: |
        return {"text": "word " * 600_000, "pages": 3}
  - id: forward
    type: test.echo
    depends_on: [produce]
    config:
      value: ${{ nodes.produce.output.text }}
  - id: count
    type: code
    depends_on: [forward]
    config:
      code: |
        return len(nodes["forward"]["output"]["value"])
"""


async def test_a_value_over_the_reference_threshold_never_enters_the_workflow(
    tideflow: Tideflow,
) -> None:
    # 3 MB of text: stored by the node that made it, passed on by reference, read back by the
    # nodes that use it; the workflow's tasks only ever hold the reference.
    report = await tideflow.run(HUGE)
    assert report.status == "completed", report.error
    assert report.nodes["count"].output == 3_000_000
    assert report.nodes["produce"].output["text"] == "word " * 600_000  # the report resolves it
    assert report.nodes["forward"].output["value"] == "word " * 600_000
    handle = tideflow.client.get_workflow_handle(report.workflow_id, result_type=RunReport)
    produced = (await handle.result()).nodes["produce"].output
    assert produced["pages"] == 3 and produced["text"]["$tideflow_ref"].startswith("sha256:")
    assert produced["text"]["bytes"] == 3_000_002
    history = await tideflow.client.get_workflow_handle(report.workflow_id).fetch_history()
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in kinds
    assert max(event.ByteSize() for event in history.events) < 16 * 1024


async def test_cel_cannot_read_a_value_stored_by_reference(tideflow: Tideflow) -> None:
    report = await tideflow.run(
        HUGE.replace(
            "config:\n      value: ${{ nodes.produce.output.text }}",
            'when: "${{ size(nodes.produce.output.text) > 0 }}"',
        )
    )
    assert report.status == "failed"
    assert report.error is not None
    assert "holds a large value stored by reference" in report.error
    assert "read it in a node" in report.error
