"""The module-level functions of the first client API, each taking a Temporal client: thin
wrappers over :class:`~starter.client.TideflowClient` and
:class:`~starter.client.RunHandle`, kept for existing callers (new code uses those)."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle

from interpreter import Definition
from interpreter.control import ControlAnswer
from interpreter.report import RunReport, RunState
from interpreter.workflow import TideflowWorkflow
from starter.client.events import EventDelivery
from starter.client.handle import RunHandle
from starter.client.tideflow_client import TideflowClient


def _run(client: Client, workflow_id: str, run_id: str | None = None) -> RunHandle:
    return TideflowClient(client).get_run(workflow_id, run_id)


async def start(
    client: Client, definition: Definition, inputs: dict[str, Any] | None = None, **options: Any
) -> WorkflowHandle[TideflowWorkflow, RunReport]:
    """:meth:`TideflowClient.start`, returning the Temporal handle."""
    return (await TideflowClient(client).start(definition, inputs, **options)).temporal


async def run(
    client: Client, definition: Definition, inputs: dict[str, Any] | None = None, **options: Any
) -> RunReport:
    """:meth:`TideflowClient.run`."""
    return await TideflowClient(client).run(definition, inputs, **options)


async def result(client: Client, workflow_id: str, run_id: str | None = None) -> RunReport:
    """:meth:`RunHandle.report`."""
    return await _run(client, workflow_id, run_id).report()


async def status(client: Client, workflow_id: str, *, timeout: float | None = None) -> RunState:
    """:meth:`RunHandle.state`."""
    return await _run(client, workflow_id).state(timeout=timeout)


async def pause(client: Client, workflow_id: str) -> None:
    """:meth:`RunHandle.pause`."""
    await _run(client, workflow_id).pause()


async def resume(client: Client, workflow_id: str) -> None:
    """:meth:`RunHandle.resume`."""
    await _run(client, workflow_id).resume()


async def cancel(client: Client, workflow_id: str) -> None:
    """:meth:`RunHandle.cancel`."""
    await _run(client, workflow_id).cancel()


async def fail(
    client: Client, workflow_id: str, node: str, reason: str | None = None, by: str | None = None
) -> ControlAnswer:
    """:meth:`RunHandle.fail`."""
    return await _run(client, workflow_id).fail(node, reason, by)


async def skip(client: Client, workflow_id: str, node: str, output: Any = None) -> ControlAnswer:
    """:meth:`RunHandle.skip`."""
    return await _run(client, workflow_id).skip(node, output)


async def retry(client: Client, workflow_id: str, node: str) -> ControlAnswer:
    """:meth:`RunHandle.retry`."""
    return await _run(client, workflow_id).retry(node)


async def set_vars(client: Client, workflow_id: str, values: dict[str, Any]) -> ControlAnswer:
    """:meth:`RunHandle.set_vars`."""
    return await _run(client, workflow_id).set_vars(values)


async def approve(
    client: Client,
    workflow_id: str,
    node: str,
    approved: bool = True,
    comment: str | None = None,
    by: str | None = None,
) -> ControlAnswer:
    """:meth:`RunHandle.approve`."""
    return await _run(client, workflow_id).approve(node, approved, comment, by)


async def emit(
    client: Client,
    workflow_id: str,
    name: str,
    payload: Any = None,
    correlation: str | None = None,
) -> None:
    """:meth:`RunHandle.emit`."""
    await _run(client, workflow_id).emit(name, payload, correlation)


async def emit_event(client: Client, name: str, payload: Any = None, **options: Any) -> list[str]:
    """:meth:`TideflowClient.emit_event`."""
    return await TideflowClient(client).emit_event(name, payload, **options)


async def deliver_event(
    client: Client, name: str, payload: Any = None, **options: Any
) -> list[EventDelivery]:
    """:meth:`TideflowClient.deliver_event`."""
    return await TideflowClient(client).deliver_event(name, payload, **options)


async def has_workers(client: Client, task_queue: str) -> bool:
    """:meth:`TideflowClient.has_workers`."""
    return await TideflowClient(client).has_workers(task_queue)


async def poller_identities(client: Client, task_queue: str) -> list[str]:
    """:meth:`TideflowClient.poller_identities`."""
    return await TideflowClient(client).poller_identities(task_queue)
