"""``POST /runs/{workflow_id}/redrive``: start an ended run again from its last checkpoint."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from starter.api.errors import ERROR_RESPONSES, ApiError, field_error
from starter.api.runtime import ClientParam
from starter.client import RedriveError
from starter.client.redrive import start_redrive

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)


class RedriveRequest(BaseModel):
    """What to run again besides the nodes that did not complete."""

    from_node: str | None = Field(
        default=None,
        max_length=200,
        description="run this node and everything downstream of it again, even if they completed",
    )


class RedriveStarted(BaseModel):
    """The run a redrive started."""

    workflow_id: str
    run_id: str | None
    redrive_of: str = Field(description="the workflow id of the run redriven")
    reused: list[str] = Field(description="nodes that keep the old run's output")
    rerun: list[str] = Field(description="nodes that run (again)")


@router.post("/runs/{workflow_id}/redrive", status_code=201, response_model=RedriveStarted)
async def redrive(
    workflow_id: str, client: ClientParam, body: RedriveRequest | None = None
) -> RedriveStarted:
    """Start a new run of a failed, cancelled, terminated or timed-out run, with the same plan
    and inputs: nodes that completed keep their output and do not run again (409 for a run
    that is open or completed; 422 for a ``from_node`` the run does not have)."""
    from_node = body.from_node if body else None
    run = client.get_run(workflow_id)
    try:
        plan = await run.redrive_plan(from_node)
    except RedriveError as e:
        if e.field:
            raise field_error(e.field, str(e)) from None
        raise ApiError(409, str(e)) from None
    new = await start_redrive(client, plan)
    return RedriveStarted(
        workflow_id=new.id,
        run_id=new.run_id,
        redrive_of=plan.old.workflow_id,
        reused=sorted(plan.reuse),
        rerun=plan.rerun,
    )
