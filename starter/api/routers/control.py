"""``/runs/{workflow_id}/...``: operate a run (pause, resume, cancel, skip, retry, vars,
approve)."""

from __future__ import annotations

from fastapi import APIRouter

from interpreter.control import Approve, ControlAnswer, RetryNode, SetVars, SkipNode
from starter.api.errors import ERROR_RESPONSES
from starter.api.models import ControlDone, ControlOut
from starter.api.permissions import IdentityParam, acting_as
from starter.api.runtime import ClientParam

router = APIRouter(tags=["control"], responses=ERROR_RESPONSES)


def _answer(workflow_id: str, answer: ControlAnswer) -> ControlOut:
    return ControlOut(workflow_id=workflow_id, **answer.model_dump())


@router.post("/runs/{workflow_id}/pause", response_model=ControlDone)
async def pause(workflow_id: str, client: ClientParam) -> ControlDone:
    """Let running nodes finish and start nothing new."""
    await client.get_run(workflow_id).pause()
    return ControlDone(workflow_id=workflow_id, action="pause")


@router.post("/runs/{workflow_id}/resume", response_model=ControlDone)
async def resume(workflow_id: str, client: ClientParam) -> ControlDone:
    """Start again what became ready while paused."""
    await client.get_run(workflow_id).resume()
    return ControlDone(workflow_id=workflow_id, action="resume")


@router.post("/runs/{workflow_id}/cancel", response_model=ControlDone)
async def cancel(workflow_id: str, client: ClientParam) -> ControlDone:
    """Cancel a run: running nodes are cancelled and compensations run (409 once it has
    ended)."""
    await client.get_run(workflow_id).cancel()
    return ControlDone(workflow_id=workflow_id, action="cancel")


@router.post("/runs/{workflow_id}/skip", response_model=ControlOut)
async def skip(workflow_id: str, body: SkipNode, client: ClientParam) -> ControlOut:
    """Skip a pending or failed node; downstream nodes see ``output``."""
    answer = await client.get_run(workflow_id).skip(body.node, body.output)
    return _answer(workflow_id, answer)


@router.post("/runs/{workflow_id}/retry", response_model=ControlOut)
async def retry(workflow_id: str, body: RetryNode, client: ClientParam) -> ControlOut:
    """Run a node that needs attention again."""
    return _answer(workflow_id, await client.get_run(workflow_id).retry(body.node))


@router.post("/runs/{workflow_id}/vars", response_model=ControlOut)
async def set_vars(workflow_id: str, body: SetVars, client: ClientParam) -> ControlOut:
    """Change a run's vars (type-checked against their declared values)."""
    return _answer(workflow_id, await client.get_run(workflow_id).set_vars(body.values))


@router.post("/runs/{workflow_id}/approve", response_model=ControlOut)
async def approve(
    workflow_id: str, body: Approve, client: ClientParam, identity: IdentityParam
) -> ControlOut:
    """Approve or reject a waiting approval node (or answer a review with ``output``). The
    answer is given as the caller: the user and roles of its token, checked by the run against
    the node's ``approvers`` (409 naming who may answer). ``by`` and ``roles`` of the body are
    only taken when the API runs without authentication."""
    run = client.get_run(workflow_id)
    by = acting_as(identity, body.by, "answer")
    roles = (body.roles or None) if identity.via == "local" else None
    answer = await run.approve(body.node, body.approved, body.comment, by, roles, body.output)
    return _answer(workflow_id, answer)
