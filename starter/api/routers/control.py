"""``/runs/{workflow_id}/...``: operate a run (pause, resume, cancel, skip, retry, vars,
approve)."""

from __future__ import annotations

from fastapi import APIRouter
from temporalio.client import Client, WorkflowExecutionStatus

from interpreter.control import Approve, ControlAnswer, RetryNode, SetVars, SkipNode
from starter import client as tideflow
from starter.api.errors import ERROR_RESPONSES, ApiError
from starter.api.models import ControlDone, ControlOut
from starter.api.runtime import TemporalParam

router = APIRouter(tags=["control"], responses=ERROR_RESPONSES)


async def _signal(temporal: Client, workflow_id: str, action: str) -> ControlDone:
    if action == "pause":
        await tideflow.pause(temporal, workflow_id)
    elif action == "resume":
        await tideflow.resume(temporal, workflow_id)
    else:
        described = await temporal.get_workflow_handle(workflow_id).describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            status = described.status.name.lower() if described.status else "closed"
            raise ApiError(409, f"the run has ended ({status}): nothing to cancel")
        await tideflow.cancel(temporal, workflow_id)
    return ControlDone(workflow_id=workflow_id, action=action)


def _answer(workflow_id: str, answer: ControlAnswer) -> ControlOut:
    return ControlOut(workflow_id=workflow_id, **answer.model_dump())


@router.post("/runs/{workflow_id}/pause", response_model=ControlDone)
async def pause(workflow_id: str, temporal: TemporalParam) -> ControlDone:
    """Let running nodes finish and start nothing new."""
    return await _signal(temporal, workflow_id, "pause")


@router.post("/runs/{workflow_id}/resume", response_model=ControlDone)
async def resume(workflow_id: str, temporal: TemporalParam) -> ControlDone:
    """Start again what became ready while paused."""
    return await _signal(temporal, workflow_id, "resume")


@router.post("/runs/{workflow_id}/cancel", response_model=ControlDone)
async def cancel(workflow_id: str, temporal: TemporalParam) -> ControlDone:
    """Cancel a run: running nodes are cancelled and compensations run."""
    return await _signal(temporal, workflow_id, "cancel")


@router.post("/runs/{workflow_id}/skip", response_model=ControlOut)
async def skip(workflow_id: str, body: SkipNode, temporal: TemporalParam) -> ControlOut:
    """Skip a pending or failed node; downstream nodes see ``output``."""
    answer = await tideflow.skip(temporal, workflow_id, body.node, body.output)
    return _answer(workflow_id, answer)


@router.post("/runs/{workflow_id}/retry", response_model=ControlOut)
async def retry(workflow_id: str, body: RetryNode, temporal: TemporalParam) -> ControlOut:
    """Run a node that needs attention again."""
    return _answer(workflow_id, await tideflow.retry(temporal, workflow_id, body.node))


@router.post("/runs/{workflow_id}/vars", response_model=ControlOut)
async def set_vars(workflow_id: str, body: SetVars, temporal: TemporalParam) -> ControlOut:
    """Change a run's vars (type-checked against their declared values)."""
    return _answer(workflow_id, await tideflow.set_vars(temporal, workflow_id, body.values))


@router.post("/runs/{workflow_id}/approve", response_model=ControlOut)
async def approve(workflow_id: str, body: Approve, temporal: TemporalParam) -> ControlOut:
    """Approve or reject a waiting approval node."""
    answer = await tideflow.approve(
        temporal, workflow_id, body.node, body.approved, body.comment, body.by
    )
    return _answer(workflow_id, answer)
