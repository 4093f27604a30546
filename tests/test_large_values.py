"""Values over the payload threshold travel through a run as references to the payload store:
the next node and the report see the value itself, the history holds only small references."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

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
