"""Finding runs: the visibility queries of ``tideflow list`` and ``GET /runs``, and the status
words Tideflow uses for Temporal's execution statuses."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus

from interpreter.workflow import DEFINITION_KEY, STATUS_KEY, VERSION_KEY, WORKFLOW_NAME


class RunSummary(BaseModel):
    """One line of ``tideflow list`` (and of the HTTP API's ``GET /runs``)."""

    workflow_id: str
    run_id: str
    definition: str
    version: str
    status: str
    started_at: str


EXECUTION_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued",
}
"""Temporal's execution statuses in Tideflow's words."""

_OPEN_ONLY = {"paused", "waiting", "needs_attention"}


def status_word(status: WorkflowExecutionStatus | None) -> str:
    """``status`` in Tideflow's words (``cancelled``, ``timed_out``…)."""
    return EXECUTION_STATUS.get(status, "unknown") if status else "unknown"


def visibility_query(definition: str | None = None, status: str | None = None) -> str:
    """The Temporal visibility query of ``tideflow list`` filters.

    ``paused``, ``waiting`` and ``needs_attention`` live in TideflowStatus (open runs);
    ``running`` and the final states come from Temporal's ExecutionStatus, which stays right
    even for runs terminated from outside.
    """
    clauses = [f'WorkflowType = "{WORKFLOW_NAME}"']
    if definition:
        clauses.append(f'{DEFINITION_KEY.name} = "{definition}"')
    if status in _OPEN_ONLY:
        clauses.append(f'{STATUS_KEY.name} = "{status}"')
        clauses.append('ExecutionStatus = "Running"')
    elif status is not None:  # "" too: an empty filter is a mistake, not "any"
        names = {v: k for k, v in EXECUTION_STATUS.items()}
        if status not in names:
            raise ValueError(
                f"unknown status {status!r}: one of " + ", ".join(sorted({*names, *_OPEN_ONLY}))
            )
        clauses.append(f'ExecutionStatus = "{names[status].name.title().replace("_", "")}"')
        if status == "running":
            clauses.append(f'({STATUS_KEY.name} IS NULL OR {STATUS_KEY.name} = "running")')
    return " AND ".join(clauses)


def open_runs_query(definition: str | None = None) -> str:
    """The visibility query of every open Tideflow run (of one definition slug)."""
    query = f'WorkflowType = "{WORKFLOW_NAME}" AND ExecutionStatus = "Running"'
    if definition:
        query += f' AND {DEFINITION_KEY.name} = "{definition}"'
    return query


async def list_runs(
    temporal: Client,
    *,
    definition: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[RunSummary]:
    """Recent runs, newest first, filtered by definition slug and status (raises ValueError
    for an unknown status)."""
    return await list_runs_matching(temporal, visibility_query(definition, status), limit=limit)


async def list_runs_matching(temporal: Client, query: str, *, limit: int = 50) -> list[RunSummary]:
    """The runs a visibility query finds, newest first, as :class:`RunSummary` lines."""
    out: list[RunSummary] = []
    async for execution in temporal.list_workflows(query, limit=limit):
        attributes = execution.typed_search_attributes
        live = attributes.get(STATUS_KEY)
        state = status_word(execution.status)
        if state == "running" and live:
            state = live
        out.append(
            RunSummary(
                workflow_id=execution.id,
                run_id=execution.run_id,
                definition=attributes.get(DEFINITION_KEY) or "",
                version=attributes.get(VERSION_KEY) or "",
                status=state,
                started_at=execution.start_time.isoformat() if execution.start_time else "",
            )
        )
    return out
