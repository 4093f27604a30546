"""The typed Python API of Tideflow: load and validate definitions, start and follow runs,
operate them. The CLI is a thin layer over these functions.

    from starter import client
    definition = client.load("examples/invoice.yaml")
    temporal = await client.connect()
    report = await client.run(temporal, definition, {"document": "invoice.pdf"})
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import DataConverter
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    FailureError,
    TerminatedError,
    TimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

import activities
from activities import WorkerSettings
from activities.payload_store import data_converter as _store_converter
from interpreter import Definition, DefinitionError, Problem, load_file, problems_in_file
from interpreter.control import (
    Approve,
    ControlAnswer,
    Event,
    FailNode,
    RetryNode,
    RunInput,
    SetVars,
    SkipNode,
)
from interpreter.inputs import InputError, resolve_inputs
from interpreter.plan import compile_plan
from interpreter.report import DefinitionRef, RunReport, RunState
from interpreter.workflow import (
    DEFINITION_KEY,
    RUN_FAILED,
    STATUS_KEY,
    VERSION_KEY,
    WORKFLOW_NAME,
    TideflowWorkflow,
)
from starter import telemetry

DEFAULT_ADDRESS = "localhost:7233"


def acting_user() -> str:
    """Who acts through this process: ``TIDEFLOW_USER``, else the operating system's user name
    (recorded as ``by`` of approvals and operator actions)."""
    explicit = os.environ.get("TIDEFLOW_USER", "").strip()
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "unknown"


class ControlError(RuntimeError):
    """A control request the run refused (the reason says why) or a run that does not exist."""


def data_converter(settings: WorkerSettings | None = None) -> DataConverter:
    """Pydantic JSON with big payloads in the payload store; client and worker must agree."""
    return _store_converter(settings or WorkerSettings.from_env())


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    settings: WorkerSettings | None = None,
) -> Client:
    """Connect to ``TEMPORAL_ADDRESS`` (default localhost:7233) / ``TEMPORAL_NAMESPACE``."""
    return await Client.connect(
        address or os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS),
        namespace=namespace or os.environ.get("TEMPORAL_NAMESPACE", "default"),
        data_converter=data_converter(settings),
        interceptors=telemetry.interceptors(),
        runtime=telemetry.runtime(),
    )


def load(path: str | Path) -> Definition:
    """Load and validate a definition file against every registered node type."""
    activities.load_extensions()
    return load_file(path, activities.registry)


def validate(paths: Sequence[str | Path]) -> list[Problem]:
    """Every problem of every file (empty when all are valid)."""
    activities.load_extensions()
    problems: list[Problem] = []
    for path in paths:
        problems.extend(problems_in_file(path, activities.registry))
    return problems


def run_input(
    definition: Definition,
    inputs: dict[str, Any] | None = None,
    *,
    history_limit: int | None = None,
) -> RunInput:
    """The workflow input of a run: the definition's compiled plan plus checked inputs.

    Raises :class:`~interpreter.inputs.InputError` naming each bad field before anything runs.
    """
    resolve_inputs(definition, inputs or {})
    return RunInput(
        plan=compile_plan(definition), inputs=dict(inputs or {}), history_limit=history_limit
    )


def definition_json(definition: Definition) -> dict[str, Any]:
    """The definition as the JSON object the workflow takes."""
    return definition.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


def new_workflow_id(definition: Definition) -> str:
    """``<slug>-<random>``."""
    return f"{definition.slug}-{secrets.token_hex(4)}"


def search_attributes(definition: Definition) -> TypedSearchAttributes:
    """The search attributes a run of ``definition`` starts with."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(DEFINITION_KEY, definition.slug),
            SearchAttributePair(VERSION_KEY, definition.display_version),
        ]
    )


def static_summary(definition: Definition) -> str:
    """How a run of ``definition`` is titled in the Web UI: name and version."""
    return f"{definition.display_name} {definition.display_version}".strip()


async def start(
    client: Client,
    definition: Definition,
    inputs: dict[str, Any] | None = None,
    *,
    workflow_id: str | None = None,
    task_queue: str | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.UNSPECIFIED,
    memo: dict[str, Any] | None = None,
    history_limit: int | None = None,
) -> WorkflowHandle[TideflowWorkflow, RunReport]:
    """Start a run and return its handle (inputs are checked first).

    With a derived ``workflow_id`` and ``REJECT_DUPLICATE``/``FAIL`` the id is an idempotency
    key: a second start raises ``WorkflowAlreadyStartedError``. ``memo`` is stored with the run
    (the HTTP API keeps what a retried start must match there). ``history_limit`` makes the run
    continue as new whenever its history holds that many events (default: when Temporal
    suggests it).
    """
    payload = run_input(definition, inputs, history_limit=history_limit)
    return await client.start_workflow(
        TideflowWorkflow.run,
        payload,
        id=workflow_id or new_workflow_id(definition),
        task_queue=task_queue or WorkerSettings.from_env().task_queue,
        id_reuse_policy=id_reuse_policy,
        id_conflict_policy=id_conflict_policy,
        search_attributes=search_attributes(definition),
        static_summary=static_summary(definition),
        static_details=definition.description or None,
        memo=memo,
    )


async def result(client: Client, workflow_id: str, run_id: str | None = None) -> RunReport:
    """Wait for a run's report: a failed run's report is taken from its failure; a cancelled,
    terminated or refused run gets the report it had so far, with its status and error."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=RunReport)
    try:
        report: RunReport = await handle.result()
        return report
    except WorkflowFailureError as e:
        carried = report_from_failure(e)
        if carried is not None:
            return carried
        cause = e.cause
        message = cause.message if isinstance(cause, FailureError) else str(e)
        status = {
            CancelledError: "cancelled",
            TerminatedError: "terminated",
            TimeoutError: "timed_out",
        }.get(type(cause), "failed")
    try:
        # A closed run answers queries only through a worker (it replays the history): with
        # none polling, give up soon and say what we know.
        partial: RunReport = await handle.query(
            TideflowWorkflow.report, rpc_timeout=timedelta(seconds=5)
        )
        return partial.model_copy(update={"status": status, "error": message})
    except Exception:  # refused before it ran, or no worker to answer: what we know
        described = await handle.describe()
        return RunReport(
            workflow_id=workflow_id,
            run_id=described.run_id,
            definition=DefinitionRef(name=""),
            status=status,
            error=message,
        )


def report_from_failure(error: WorkflowFailureError) -> RunReport | None:
    """The report carried by a failed run's failure, if it has one."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == RUN_FAILED and cause.details:
        return RunReport.model_validate(cause.details[0])
    return None


async def run(
    client: Client,
    definition: Definition,
    inputs: dict[str, Any] | None = None,
    **options: Any,
) -> RunReport:
    """Start a run and wait for its report."""
    handle = await start(client, definition, inputs, **options)
    return await result(client, handle.id, handle.result_run_id)


async def has_workers(client: Client, task_queue: str) -> bool:
    """Whether a worker polled ``task_queue`` for workflow tasks recently."""
    return bool(await poller_identities(client, task_queue))


async def poller_identities(client: Client, task_queue: str) -> list[str]:
    """The identities (``pid@host`` unless a worker sets its own) of the workers that polled
    ``task_queue`` for workflow tasks recently."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return [poller.identity for poller in response.pollers]


async def status(client: Client, workflow_id: str, *, timeout: float | None = None) -> RunState:
    """The live state of a run (the ``state`` query); ``timeout`` bounds the wait in seconds
    (a run answers only through a worker)."""
    return await client.get_workflow_handle(workflow_id).query(
        TideflowWorkflow.state, rpc_timeout=timedelta(seconds=timeout) if timeout else None
    )


async def pause(client: Client, workflow_id: str) -> None:
    """Let running nodes finish and start nothing new."""
    await client.get_workflow_handle(workflow_id).signal(TideflowWorkflow.pause)


async def resume(client: Client, workflow_id: str) -> None:
    """Start again what became ready while paused."""
    await client.get_workflow_handle(workflow_id).signal(TideflowWorkflow.resume)


async def cancel(client: Client, workflow_id: str) -> None:
    """Cancel a run: running nodes are cancelled and compensations run."""
    await client.get_workflow_handle(workflow_id).cancel()


async def fail(
    client: Client, workflow_id: str, node: str, reason: str | None = None, by: str | None = None
) -> ControlAnswer:
    """Give up on a node that needs attention or waits: it fails, and the run fails."""
    request = FailNode(node=node, reason=reason, by=by)
    return await _update(client, workflow_id, TideflowWorkflow.fail_node, request)


async def skip(client: Client, workflow_id: str, node: str, output: Any = None) -> ControlAnswer:
    """Skip a pending or failed node (downstream nodes see ``output``)."""
    return await _update(
        client, workflow_id, TideflowWorkflow.skip_node, SkipNode(node=node, output=output)
    )


async def retry(client: Client, workflow_id: str, node: str) -> ControlAnswer:
    """Run a node that needs attention again."""
    return await _update(client, workflow_id, TideflowWorkflow.retry_node, RetryNode(node=node))


async def set_vars(client: Client, workflow_id: str, values: dict[str, Any]) -> ControlAnswer:
    """Change a run's vars (type-checked)."""
    return await _update(client, workflow_id, TideflowWorkflow.set_vars, SetVars(values=values))


async def approve(
    client: Client,
    workflow_id: str,
    node: str,
    approved: bool = True,
    comment: str | None = None,
    by: str | None = None,
) -> ControlAnswer:
    """Answer an approval node."""
    request = Approve(node=node, approved=approved, comment=comment, by=by)
    return await _update(client, workflow_id, TideflowWorkflow.approve, request)


async def emit(
    client: Client,
    workflow_id: str,
    name: str,
    payload: Any = None,
    correlation: str | None = None,
) -> None:
    """Deliver an event to one run."""
    event = Event(name=name, payload=payload, correlation=correlation)
    await client.get_workflow_handle(workflow_id).signal(TideflowWorkflow.event, event)


async def _update(client: Client, workflow_id: str, update: Any, request: Any) -> ControlAnswer:
    handle = client.get_workflow_handle(workflow_id)
    try:
        answer: ControlAnswer = await handle.execute_update(update, request)
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
        raise ControlError(f"refused: {reason}") from e
    return answer


class RunSummary(BaseModel):
    """One line of ``tideflow list`` (and of the HTTP API's ``GET /runs``)."""

    workflow_id: str
    run_id: str
    definition: str
    version: str
    status: str
    started_at: str


_EXECUTION_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued",
}

_OPEN_ONLY = {"paused", "waiting", "needs_attention"}


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
    elif status:
        names = {v: k for k, v in _EXECUTION_STATUS.items()}
        if status not in names:
            raise ValueError(
                f"unknown status {status!r}: one of " + ", ".join(sorted({*names, *_OPEN_ONLY}))
            )
        clauses.append(f'ExecutionStatus = "{names[status].name.title().replace("_", "")}"')
        if status == "running":
            clauses.append(f'({STATUS_KEY.name} IS NULL OR {STATUS_KEY.name} = "running")')
    return " AND ".join(clauses)


async def list_runs(
    client: Client,
    *,
    definition: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[RunSummary]:
    """Recent runs, newest first, filtered by definition slug and status."""
    out: list[RunSummary] = []
    async for execution in client.list_workflows(visibility_query(definition, status), limit=limit):
        attributes = execution.typed_search_attributes
        live = attributes.get(STATUS_KEY)
        state = (
            _EXECUTION_STATUS.get(execution.status, "unknown") if execution.status else "unknown"
        )
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


def web_ui_base() -> str:
    """The Temporal Web UI's address: ``TIDEFLOW_UI_URL`` if set, else the embedded server's
    (``<TIDEFLOW_HOME>/server.json``) when it serves ``TEMPORAL_ADDRESS``, else localhost:8233."""
    explicit = os.environ.get("TIDEFLOW_UI_URL")
    if explicit:
        return explicit.rstrip("/")
    from starter.server import running_server_info

    info = running_server_info()
    address = os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS)
    if info and info.get("ui_url") and _same_address(str(info.get("address")), address):
        return str(info["ui_url"]).rstrip("/")
    return "http://localhost:8233"


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", ""})


def _same_address(a: str, b: str) -> bool:
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b:
        return False
    return host_a == host_b or (host_a in _LOOPBACK and host_b in _LOOPBACK)


def web_ui_url(workflow_id: str, run_id: str | None = None, namespace: str | None = None) -> str:
    """Link to a run in the Temporal Web UI (see :func:`web_ui_base`)."""
    base = web_ui_base()
    namespace = namespace or os.environ.get("TEMPORAL_NAMESPACE", "default")
    tail = f"/{run_id}" if run_id else ""
    return f"{base}/namespaces/{namespace}/workflows/{workflow_id}{tail}/history"


__all__ = [
    "ControlError",
    "DefinitionError",
    "InputError",
    "RunSummary",
    "approve",
    "cancel",
    "connect",
    "data_converter",
    "definition_json",
    "emit",
    "fail",
    "list_runs",
    "load",
    "pause",
    "result",
    "resume",
    "retry",
    "run",
    "run_input",
    "set_vars",
    "skip",
    "start",
    "status",
    "validate",
    "visibility_query",
    "web_ui_url",
]


async def emit_event(
    client: Client,
    name: str,
    payload: Any = None,
    *,
    correlation: str | None = None,
    workflow_id: str | None = None,
    definition: str | None = None,
) -> list[str]:
    """Deliver an event to one run, or to every open run (of a definition); return their ids.

    A run keeps an event only if one of its ``wait_for_event`` nodes waits for that name (and
    correlation), so broadcasting is safe. A run that ended between the listing and the signal
    (visibility lags behind) is passed over.
    """
    if workflow_id:
        await emit(client, workflow_id, name, payload, correlation)
        return [workflow_id]
    delivered = []
    async for execution in client.list_workflows(_open_runs_query(definition)):
        try:
            await emit(client, execution.id, name, payload, correlation)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        delivered.append(execution.id)
    return delivered


def _open_runs_query(definition: str | None) -> str:
    query = f'WorkflowType = "{WORKFLOW_NAME}" AND ExecutionStatus = "Running"'
    if definition:
        query += f' AND {DEFINITION_KEY.name} = "{definition}"'
    return query


class EventDelivery(BaseModel):
    """One run an event was sent to, and whether a ``wait_for_event`` node of it took it."""

    workflow_id: str
    taken: bool | None
    """True: a node waiting for the event (and its correlation) took it; False: no node was
    waiting for it, or none for this correlation; None: the run could not be asked (no
    worker answered)."""


async def deliver_event(
    client: Client,
    name: str,
    payload: Any = None,
    *,
    correlation: str | None = None,
    workflow_id: str | None = None,
    definition: str | None = None,
    timeout: float = 5.0,
) -> list[EventDelivery]:
    """:func:`emit_event`, telling for each run whether the event was taken.

    Each run's ``state`` is asked before and after the signal (queries see every signal
    accepted before them): a node waiting for ``event:<name>`` before and not after took it.
    The ``waiting`` map does not carry the correlation, so a node waiting with another
    correlation shows up as still waiting afterwards. Queries are skipped (``taken`` None)
    for runs whose task queue no worker polls.
    """
    if workflow_id:
        description = await client.get_workflow_handle(workflow_id).describe()
        targets = [(workflow_id, description.task_queue)]
    else:
        targets = [
            (execution.id, execution.task_queue)
            async for execution in client.list_workflows(_open_runs_query(definition))
        ]
    polled: dict[str, bool] = {}
    out = []
    for run_id, queue in targets:
        if queue not in polled:
            polled[queue] = await has_workers(client, queue)
        before = await _waiting_for(client, run_id, name, timeout) if polled[queue] else None
        try:
            await emit(client, run_id, name, payload, correlation)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND and not workflow_id:
                continue  # ended since the listing
            raise
        taken: bool | None = None
        if before is not None:
            after = await _waiting_for(client, run_id, name, timeout) if before else set()
            taken = None if after is None else bool(before - after)
        out.append(EventDelivery(workflow_id=run_id, taken=taken))
    return out


async def _waiting_for(
    client: Client, workflow_id: str, name: str, timeout: float
) -> set[str] | None:
    try:
        state = await status(client, workflow_id, timeout=timeout)
    except Exception:  # not a Tideflow run, closed meanwhile, no worker answered
        return None
    return {node for node, what in state.waiting.items() if what == f"event:{name}"}
