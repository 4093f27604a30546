"""Starting a run from a route: the one place every start endpoint goes through."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from interpreter import Definition
from starter import client as tideflow
from starter.api.models import RunStarted
from starter.api.runtime import Runtime


def run_started(
    workflow_id: str, run_id: str | None, slug: str, document: str | None = None
) -> RunStarted:
    """The answer naming a started run, with its Web UI link."""
    return RunStarted(
        workflow_id=workflow_id,
        run_id=run_id,
        definition=slug,
        web_ui=tideflow.web_ui_url(workflow_id, run_id),
        document=document,
    )


async def start_run(
    runtime: Runtime,
    temporal: Client,
    definition: Definition,
    inputs: dict[str, Any],
    workflow_id: str | None,
    document: str | None = None,
) -> RunStarted:
    """Start a run on the API's task queue (inputs are checked first)."""
    handle = await tideflow.start(
        temporal,
        definition,
        inputs,
        workflow_id=workflow_id,
        task_queue=runtime.settings.task_queue,
    )
    return run_started(handle.id, handle.result_run_id, definition.slug, document)
