"""``/runs/{workflow_id}/budget``: let a run spend more on models (the nodes its budget stopped
run again)."""

from __future__ import annotations

from fastapi import APIRouter

from interpreter.control import RaiseBudget
from starter.api.errors import ERROR_RESPONSES
from starter.api.models import ControlOut
from starter.api.permissions import IdentityParam, acting_as
from starter.api.runtime import ClientParam

router = APIRouter(tags=["control"], responses=ERROR_RESPONSES)


@router.post("/runs/{workflow_id}/budget", response_model=ControlOut)
async def raise_budget(
    workflow_id: str, body: RaiseBudget, client: ClientParam, identity: IdentityParam
) -> ControlOut:
    """Raise a run's AI spend budget by ``add_usd`` dollars and/or ``add_tokens`` tokens; nodes
    the budget stopped (status ``needs_attention``, reason ``budget``) run again. 409 when the
    run has no budget, nothing is added, or it has ended. The raise is the caller's; ``by`` of
    the body is only taken when the API runs without authentication."""
    run = client.get_run(workflow_id)
    by = acting_as(identity, body.by, "raise it")
    answer = await run.raise_budget(body.add_tokens, body.add_usd, by)
    return ControlOut(workflow_id=workflow_id, **answer.model_dump())
