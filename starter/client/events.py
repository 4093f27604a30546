"""Events sent from outside to runs: to one run, or broadcast to the open runs (of a
definition), telling for each run whether a ``wait_for_event`` node took it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.service import RPCError, RPCStatusCode

from starter.client.errors import ControlError
from starter.client.listing import open_runs_query

if TYPE_CHECKING:
    from starter.client.handle import RunHandle
    from starter.client.tideflow_client import TideflowClient


class EventDelivery(BaseModel):
    """One run an event was sent to, and whether a ``wait_for_event`` node of it took it."""

    workflow_id: str
    taken: bool | None
    """True: a node waiting for the event (and its correlation) took it; False: no node was
    waiting for it, or none for this correlation; None: the run could not be asked (no
    worker answered)."""


def _gone(error: Exception) -> bool:
    """A run that ended (or was deleted) between the listing and the signal."""
    if isinstance(error, ControlError):
        return True
    return isinstance(error, RPCError) and error.status == RPCStatusCode.NOT_FOUND


async def emit_event(
    client: TideflowClient,
    name: str,
    payload: Any = None,
    *,
    correlation: str | None = None,
    definition: str | None = None,
) -> list[str]:
    """Deliver an event to every open run (of a definition slug); return their ids.

    A run keeps an event only if one of its ``wait_for_event`` nodes waits for that name (and
    correlation), so broadcasting is safe. A run that ended between the listing and the signal
    (visibility lags behind) is passed over.
    """
    delivered = []
    async for execution in client.temporal.list_workflows(open_runs_query(definition)):
        try:
            await client.get_run(execution.id).emit(name, payload, correlation)
        except (RPCError, ControlError) as e:
            if _gone(e):
                continue
            raise
        delivered.append(execution.id)
    return delivered


async def deliver_event(
    client: TideflowClient,
    name: str,
    payload: Any = None,
    *,
    correlation: str | None = None,
    workflow_id: str | None = None,
    definition: str | None = None,
    timeout: float = 5.0,
) -> list[EventDelivery]:
    """Send an event to one run or broadcast it, telling for each run whether it was taken.

    Each run's ``state`` is asked before and after the signal (queries see every signal
    accepted before them): a node waiting for ``event:<name>`` before and not after took it.
    The ``waiting`` map does not carry the correlation, so a node waiting with another
    correlation shows up as still waiting afterwards. Queries are skipped (``taken`` None)
    for runs whose task queue no worker polls.
    """
    if workflow_id:
        description = await client.get_run(workflow_id).describe()
        targets = [(workflow_id, description.task_queue)]
    else:
        targets = [
            (execution.id, execution.task_queue)
            async for execution in client.temporal.list_workflows(open_runs_query(definition))
        ]
    polled: dict[str, bool] = {}
    out = []
    for target, queue in targets:
        run = client.get_run(target)
        if queue not in polled:
            polled[queue] = await client.has_workers(queue)
        before = await _waiting_for(run, name, timeout) if polled[queue] else None
        try:
            await run.emit(name, payload, correlation)
        except (RPCError, ControlError) as e:
            if _gone(e) and not workflow_id:
                continue  # ended since the listing
            raise
        taken: bool | None = None
        if before is not None:
            after = await _waiting_for(run, name, timeout) if before else set()
            taken = None if after is None else bool(before - after)
        out.append(EventDelivery(workflow_id=target, taken=taken))
    return out


async def _waiting_for(run: RunHandle, name: str, timeout: float) -> set[str] | None:
    try:
        state = await run.state(timeout=timeout)
    except Exception:  # not a Tideflow run, closed meanwhile, no worker answered
        return None
    return {node for node, what in state.waiting.items() if what == f"event:{name}"}
