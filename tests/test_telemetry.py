"""OpenTelemetry: a traced client and worker give spans for the run and each node."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

import tests.testing_node_types  # noqa: F401  (test.echo)
from activities import WorkerSettings, registry
from interpreter import load_string
from starter import client as api
from starter import telemetry

TRACED = """
name: traced
tasks:
  - id: first
    type: test.echo
    config: {value: 1}
  - id: second
    type: test.echo
    depends_on: [first]
    config: {value: 2}
"""


async def test_spans_cover_the_run_and_name_each_node(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    from worker import running_worker

    exporter = InMemorySpanExporter()
    telemetry.install_tracer(SimpleSpanProcessor(exporter))
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=api.data_converter(),
        interceptors=[TracingInterceptor()],
    )
    settings = WorkerSettings(home=tmp_path, task_queue="traced")
    async with running_worker(client, settings):
        report = await api.run(client, load_string(TRACED, "t.yaml", registry), task_queue="traced")
    assert report.status == "completed"

    spans = exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {"StartWorkflow:TideflowWorkflow", "RunWorkflow:TideflowWorkflow"} <= names
    node_spans = {
        span.attributes["tideflow.node"]: span
        for span in spans
        if span.attributes and "tideflow.node" in span.attributes
    }
    assert set(node_spans) == {"first", "second"}
    assert node_spans["first"].name == "RunActivity:test.echo"
    first_attributes = node_spans["first"].attributes
    assert first_attributes is not None
    assert first_attributes["tideflow.workflow_id"] == report.workflow_id
    # One trace from the client's start to the last node.
    assert len({span.context.trace_id for span in spans}) == 1
