"""Redrive: run a failed, cancelled, terminated or timed-out run again, from its last checkpoint.

A redrive is a new run with the old run's plan and inputs in which every node that completed
in the old run keeps its recorded output and does not execute again (``RunInput.reuse``); the
rest runs. Nodes downstream of ``--from NODE`` (and NODE itself) run again too, and so does a
node whose compensation ran when the old run failed (what it did was undone).

What the old run did is read from its report (a failed run carries it in its failure; a
cancelled, terminated or timed-out one answers the ``report`` query through a worker) or, when
no report can be had, from its history's activity results. Values stored by reference in the
payload store come back whole through the client's data converter. The new run is linked to the
old one by the search attribute ``TideflowRedriveOf`` and a memo entry.
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from interpreter.control import ReusedNode, RunInput
from interpreter.node_io import NodeInput, NodeResult
from interpreter.plan import plan_from_definition
from interpreter.report import RunReport
from interpreter.workflow import DEFINITION_KEY, VERSION_KEY, TideflowWorkflow
from starter.client.definitions import plain_payload
from starter.client.errors import ControlError
from starter.client.listing import RunSummary, status_word, visibility_query
from starter.server import REDRIVE_KEY

if TYPE_CHECKING:
    from starter.client.handle import RunHandle
    from starter.client.tideflow_client import TideflowClient

REDRIVABLE = ("failed", "cancelled", "terminated", "timed_out")
"""How a run must have ended to be redriven."""

MEMO_KEY = "tideflow_redrive"
"""The memo entry of a redrive: ``{workflow_id, run_id, status, from, reused}`` of the old run."""

CARRIED_MEMO_KEYS = ("tideflow_registry",)
"""Memo entries a redrive keeps from the old run (which deployed version it ran)."""

_QUERY_SECONDS = 10.0


class RedriveError(ControlError):
    """A run that cannot be redriven (still open, or completed), or a ``--from`` node its plan
    does not have (``field`` names the request field then)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RecordedRun:
    """What an ended run was started with and which of its nodes completed."""

    workflow_id: str
    run_id: str
    status: str
    task_queue: str
    input: RunInput
    plan: dict[str, Any]
    """The run's format-2 plan (a format-1 input's definition compiled)."""
    completed: dict[str, ReusedNode]
    """Node → its recorded outcome, for every node that completed."""
    compensated: frozenset[str] = frozenset()
    """Completed nodes whose compensation ran: what they did was undone."""
    source: Literal["report", "history"] = "report"
    """Where the outcomes were read."""
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RedrivePlan:
    """What a redrive will do: which nodes keep their output and which run again."""

    old: RecordedRun
    reuse: dict[str, ReusedNode]
    rerun: list[str]
    """The plan's nodes that will run (again), in plan order (handlers left out)."""
    from_node: str | None = None

    def run_input(self) -> RunInput:
        """The new run's input: the old plan and inputs, and the outcomes to keep."""
        old = self.old.input
        return RunInput(
            plan=self.old.plan,
            inputs=dict(old.inputs),
            history_limit=old.history_limit,
            reuse=dict(self.reuse) or None,
            origin=old.origin,
        )

    def memo(self) -> dict[str, Any]:
        """The new run's memo: the link to the old run, and what it carried over."""
        carried = {k: v for k, v in self.old.memo.items() if k in CARRIED_MEMO_KEYS}
        return {
            **carried,
            MEMO_KEY: {
                "workflow_id": self.old.workflow_id,
                "run_id": self.old.run_id,
                "status": self.old.status,
                "from": self.from_node,
                "reused": sorted(self.reuse),
            },
        }


# --- reading the old run -------------------------------------------------------------------------


async def recorded_run(run: RunHandle) -> RecordedRun:
    """The plan, inputs and completed nodes of an ended run (its latest run when it continued
    as new); :class:`RedriveError` when it is still open or completed."""
    client = run.client
    description = await run.describe()
    status = status_word(description.status)
    if status not in REDRIVABLE:
        if status == "completed":
            raise RedriveError(f"run {run.id} completed: there is nothing to redrive")
        if status == "running":
            raise RedriveError(
                f"run {run.id} is still running: redrive runs that ended "
                "(failed, cancelled, terminated, timed out); operate this one with retry, "
                "skip or cancel"
            )
        raise RedriveError(f"run {run.id} ended {status}: only {', '.join(REDRIVABLE)} runs")
    run_id = description.run_id
    pinned = client.temporal.get_workflow_handle_for(TideflowWorkflow.run, run.id, run_id=run_id)
    started = await _started_input(client, pinned)
    if started.batch is not None:
        raise RedriveError(f"run {run.id} is a batch of a foreach of another run: redrive that run")
    plan = _plan_of(run.id, started)
    memo = await description.memo()
    report = await _report(client, pinned, status, description.task_queue)
    if report is not None and report.nodes:
        completed = {
            node_id: ReusedNode(
                output=node.output, attempts=max(node.attempts, 1), usage=node.usage
            )
            for node_id, node in report.nodes.items()
            if node.status == "completed"
        }
        ran = {node_id for node_id, node in report.nodes.items() if node.status != "pending"}
        source: Literal["report", "history"] = "report"
    else:
        completed = await _history_outcomes(client, run.id, run_id)
        ran = set(completed)
        source = "history"
    return RecordedRun(
        workflow_id=run.id,
        run_id=run_id,
        status=status,
        task_queue=description.task_queue,
        input=started,
        plan=plan,
        completed=completed,
        compensated=_compensated(plan, completed, ran),
        source=source,
        memo=dict(memo),
    )


async def started_input(
    client: TideflowClient, workflow_id: str, run_id: str | None = None
) -> RunInput:
    """What a run was started with: the input of its first history event, decoded (values in
    the payload store included); :class:`RedriveError` for a run that is not Tideflow's."""
    handle = client.temporal.get_workflow_handle(workflow_id, run_id=run_id)
    return await _started_input(client, handle)


async def _started_input(client: TideflowClient, handle: WorkflowHandle[Any, Any]) -> RunInput:
    """The input of the run's first history event, decoded (references in the payload store
    included)."""
    async for event in handle.fetch_history_events():
        attributes = event.workflow_execution_started_event_attributes
        payloads = list(attributes.input.payloads)
        if not payloads:
            break
        decoded = await client.temporal.data_converter.decode(payloads, [RunInput])
        found = decoded[0]
        if isinstance(found, RunInput):
            return found
        break
    raise RedriveError(f"run {handle.id} was not started with a Tideflow run input")


def _plan_of(workflow_id: str, started: RunInput) -> dict[str, Any]:
    if started.plan is not None:
        return started.plan
    if started.definition is not None:
        from interpreter import DefinitionError

        try:
            return plan_from_definition(started.definition)
        except DefinitionError as e:
            first = e.problems[0] if e.problems else "invalid"
            raise RedriveError(
                f"run {workflow_id}: its definition no longer validates: {first}"
            ) from None
    raise RedriveError(f"run {workflow_id} holds no plan")


async def _report(
    client: TideflowClient, handle: WorkflowHandle[Any, RunReport], status: str, queue: str
) -> RunReport | None:
    """The old run's final report, if it can be had without waiting on nobody."""
    from starter.client.handle import report_from_failure

    if status == "failed":
        try:
            await handle.result(follow_runs=False)
        except WorkflowFailureError as e:
            carried = report_from_failure(e)
            if carried is not None:
                return carried
        except Exception:  # an unexpected shape of failure: read the history instead
            return None
    if not await client.has_workers(queue):
        return None  # a closed run answers queries only through a worker (it replays)
    try:
        return await handle.query(
            TideflowWorkflow.report, rpc_timeout=timedelta(seconds=_QUERY_SECONDS)
        )
    except Exception:  # refused before it ran, or the worker could not replay it
        return None


async def _history_outcomes(
    client: TideflowClient, workflow_id: str, run_id: str
) -> dict[str, ReusedNode]:
    """Node → outcome for every node activity that completed, read from the run's history and
    those of the runs it continued from (newest first: a later result wins)."""
    converter = client.temporal.data_converter
    out: dict[str, ReusedNode] = {}
    current: str | None = run_id
    seen: set[str] = set()
    while current and current not in seen:
        seen.add(current)
        handle = client.temporal.get_workflow_handle(workflow_id, run_id=current)
        scheduled: dict[int, str] = {}
        previous: str | None = None
        async for event in handle.fetch_history_events():
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                started = event.workflow_execution_started_event_attributes
                previous = started.continued_execution_run_id or None
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                payloads = list(event.activity_task_scheduled_event_attributes.input.payloads)
                if payloads:
                    (node_input,) = await converter.decode(payloads[:1], [NodeInput])
                    if isinstance(node_input, NodeInput):
                        scheduled[event.event_id] = node_input.node_id
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                done = event.activity_task_completed_event_attributes
                label = scheduled.get(done.scheduled_event_id)
                payloads = list(done.result.payloads)
                if label is None or not payloads or label in out:
                    continue
                (result,) = await converter.decode(payloads, [NodeResult])
                if isinstance(result, NodeResult):
                    usage = result.usage.model_dump(mode="json") if result.usage else None
                    out[label] = ReusedNode(
                        output=result.output, attempts=result.attempt, usage=usage
                    )
        current = previous
    return out


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in plan.get("nodes") or [] if isinstance(node, dict)]


def _compensated(
    plan: dict[str, Any], completed: dict[str, ReusedNode], ran: set[str]
) -> frozenset[str]:
    """Completed nodes whose compensation handler ran in the old run."""
    return frozenset(
        node["id"]
        for node in _nodes(plan)
        if node.get("compensate") and node["id"] in completed and node["compensate"] in ran
    )


# --- planning and starting -----------------------------------------------------------------------


def downstream(plan: dict[str, Any], start: str) -> set[str]:
    """``start`` and every node that depends on it, directly or not."""
    dependents: dict[str, list[str]] = {}
    for node in _nodes(plan):
        for dependency in node.get("depends_on") or []:
            dependents.setdefault(dependency, []).append(node["id"])
    found = {start}
    queue = [start]
    while queue:
        for child in dependents.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def plan_redrive(old: RecordedRun, from_node: str | None = None) -> RedrivePlan:
    """Which nodes of ``old`` keep their output in a redrive (from ``from_node``)."""
    nodes = _nodes(old.plan)
    ids = [node["id"] for node in nodes]
    handlers = {node["id"] for node in nodes if node.get("handler")}
    again: set[str] = set(old.compensated)
    if from_node is not None:
        if from_node not in ids:
            close = difflib.get_close_matches(from_node, ids, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RedriveError(
                f"run {old.workflow_id} has no node {from_node!r}{hint}", field="from_node"
            )
        if from_node in handlers:
            raise RedriveError(
                f"node {from_node!r} of run {old.workflow_id} is a handler: it runs only when "
                "another node fails; redrive from a node of the graph",
                field="from_node",
            )
        again |= downstream(old.plan, from_node)
    reuse = {
        node_id: outcome
        for node_id, outcome in old.completed.items()
        if node_id in ids and node_id not in handlers and node_id not in again
    }
    rerun = [i for i in ids if i not in reuse and i not in handlers]
    return RedrivePlan(old=old, reuse=reuse, rerun=rerun, from_node=from_node)


def redrive_workflow_id(plan: dict[str, Any]) -> str:
    """``<slug>-<random>``, like any new run."""
    return f"{plan.get('slug') or 'run'}-{secrets.token_hex(4)}"


async def start_redrive(
    client: TideflowClient, redrive: RedrivePlan, *, workflow_id: str | None = None
) -> RunHandle:
    """Start the run ``redrive`` describes, on the old run's task queue."""
    from starter.client.handle import RunHandle

    plan = redrive.old.plan
    slug, version = str(plan.get("slug") or ""), str(plan.get("version") or "")
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(REDRIVE_KEY, redrive.old.workflow_id)
    ]
    if slug:
        pairs.append(SearchAttributePair(DEFINITION_KEY, slug))
    if version:
        pairs.append(SearchAttributePair(VERSION_KEY, version))
    name = f"{plan.get('name') or slug} {version}".strip()
    handle = await client.temporal.start_workflow(
        TideflowWorkflow.run,
        redrive.run_input(),
        id=workflow_id or redrive_workflow_id(plan),
        task_queue=redrive.old.task_queue,
        search_attributes=TypedSearchAttributes(pairs),
        memo=redrive.memo(),
        # Pre-encoded: readable in the Web UI when payloads are encrypted.
        static_summary=cast(str, plain_payload(f"{name} (redrive of {redrive.old.workflow_id})")),
    )
    from starter.lifecycle_audit import record_lifecycle_action

    record_lifecycle_action(
        "redrive",
        redrive.old.workflow_id,
        by=client.user,
        details={
            "new_workflow_id": handle.id,
            "from": redrive.from_node,
            "reused": sorted(redrive.reuse),
        },
    )
    return RunHandle(client, handle)


# --- bulk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedriveCandidate:
    """A run a bulk redrive found, and the run that already redrove it, if any."""

    run: RunSummary
    redriven_by: str | None = None


async def redrive_candidates(
    client: TideflowClient,
    *,
    definition: str | None = None,
    status: str = "failed",
    since: timedelta | None = None,
    limit: int = 1000,
) -> list[RedriveCandidate]:
    """The ended runs a bulk redrive would take, newest first: of a definition slug, ended
    ``status`` (failed, cancelled, terminated or timed_out), closed within ``since``. Runs that
    a redrive already started from are listed with it and are not redriven again."""
    if status not in REDRIVABLE:
        raise ValueError(f"status {status!r} cannot be redriven: one of {', '.join(REDRIVABLE)}")
    query = visibility_query(definition, status)
    if since is not None:
        after = (datetime.now(UTC) - since).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        query += f' AND CloseTime > "{after}"'
    runs = await client.list_runs_matching(query, limit=limit)
    out = []
    for run in runs:
        linked = f'{REDRIVE_KEY.name} = "{run.workflow_id}"'
        redriven_by = None
        async for execution in client.temporal.list_workflows(linked, limit=1):
            redriven_by = execution.id
        out.append(RedriveCandidate(run, redriven_by))
    return out


def redriven_ids(candidates: Iterable[RedriveCandidate]) -> list[str]:
    """The workflow ids of candidates not redriven yet."""
    return [c.run.workflow_id for c in candidates if c.redriven_by is None]
