"""A handle on one run (shaped like Temporal's ``WorkflowHandle``): its report and state, and
every control action, each answering a run that has ended with one clear line."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    FailureError,
    TerminatedError,
    TimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

from interpreter.control import (
    Approve,
    ControlAnswer,
    Event,
    FailNode,
    RaiseBudget,
    RetryNode,
    SetVars,
    SkipNode,
)
from interpreter.report import DefinitionRef, RunReport, RunState, RunStatusName
from interpreter.values import has_refs
from interpreter.workflow import RUN_FAILED, TideflowWorkflow
from starter.client.errors import ControlError
from starter.client.listing import status_word
from starter.client.web_ui import web_ui_url

if TYPE_CHECKING:
    from starter.client.redrive import RedrivePlan
    from starter.client.tideflow_client import TideflowClient

_REDRIVABLE = frozenset({"failed", "cancelled", "terminated", "timed_out"})
"""How a run ends when ``tideflow redrive`` can run it again."""


async def resolved_report(report: RunReport) -> RunReport:
    """``report`` with the large values its run passed by reference read back (from the
    payload store the client and workers share)."""
    data = report.model_dump(mode="json")
    if not has_refs(data):
        return report
    from activities import WorkerSettings
    from activities.values import ValueStore, resolve_async

    store = ValueStore(WorkerSettings.from_env())
    return RunReport.model_validate(await resolve_async(data, store))


def report_from_failure(error: WorkflowFailureError) -> RunReport | None:
    """The report carried by a failed run's failure, if it has one."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == RUN_FAILED and cause.details:
        return RunReport.model_validate(cause.details[0])
    return None


def _ended(error: RPCError) -> bool:
    """Whether Temporal refused a request because the run has closed."""
    return error.status == RPCStatusCode.NOT_FOUND and "already completed" in error.message


class RunHandle:
    """One run: wait for its report, read its state, operate it.

    Got from :meth:`TideflowClient.start <starter.client.TideflowClient.start>` (then it
    follows the run across continue-as-new) or :meth:`TideflowClient.get_run
    <starter.client.TideflowClient.get_run>`. Control actions on a run that has ended raise
    :class:`ControlError` saying so (with a hint to ``tideflow redrive`` where that helps)
    instead of Temporal's "workflow execution already completed"; a refused update raises
    :class:`ControlError` with the run's reason.
    """

    def __init__(
        self, client: TideflowClient, handle: WorkflowHandle[TideflowWorkflow, RunReport]
    ) -> None:
        self._client = client
        self._handle = handle

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r}, run_id={self.run_id!r})"

    @property
    def id(self) -> str:
        """The workflow id."""
        return self._handle.id

    @property
    def run_id(self) -> str | None:
        """The run this handle was made for: the first run when it was started here (it may
        continue as new), the one given to ``get_run``, else None (the latest)."""
        return self._handle.run_id or self._handle.result_run_id

    @property
    def client(self) -> TideflowClient:
        """The client this handle sends through."""
        return self._client

    @property
    def temporal(self) -> WorkflowHandle[TideflowWorkflow, RunReport]:
        """The underlying Temporal workflow handle."""
        return self._handle

    def web_ui_url(self) -> str:
        """Link to the run in the Temporal Web UI."""
        return web_ui_url(self.id, self.run_id, self._client.namespace)

    # --- reading ---------------------------------------------------------------------------

    async def report(self, *, resolve_values: bool = True) -> RunReport:
        """Wait for the run to end and return its report: a failed run's report is taken from
        its failure; a cancelled, terminated or refused run gets the report it had so far,
        with its status and error. Large values the run passed by reference are read back
        from the value store unless ``resolve_values`` is false."""
        report = await self._report()
        return await resolved_report(report) if resolve_values else report

    async def _report(self) -> RunReport:
        try:
            return await self._handle.result()
        except WorkflowFailureError as e:
            carried = report_from_failure(e)
            if carried is not None:
                return carried
            cause = e.cause
            message = cause.message if isinstance(cause, FailureError) else str(e)
            ended: dict[type, RunStatusName] = {
                CancelledError: "cancelled",
                TerminatedError: "terminated",
                TimeoutError: "timed_out",
            }
            status: RunStatusName = ended.get(type(cause), "failed")
        try:
            # A closed run answers queries only through a worker (it replays the history):
            # with none polling, give up soon and say what we know.
            partial: RunReport = await self._handle.query(
                TideflowWorkflow.report, rpc_timeout=timedelta(seconds=5)
            )
            return partial.model_copy(update={"status": status, "error": message})
        except Exception:  # refused before it ran, or no worker to answer: what we know
            described = await self._handle.describe()
            return RunReport(
                workflow_id=self.id,
                run_id=described.run_id,
                definition=DefinitionRef(name=""),
                status=status,
                error=message,
            )

    async def report_so_far(self) -> RunReport:
        """The report as it stands (the ``report`` query; final once the run has ended)."""
        return await self._handle.query(TideflowWorkflow.report)

    async def state(self, *, timeout: float | None = None) -> RunState:
        """The live state (the ``state`` query); ``timeout`` bounds the wait in seconds (a
        run answers only through a worker)."""
        return await self._handle.query(
            TideflowWorkflow.state, rpc_timeout=timedelta(seconds=timeout) if timeout else None
        )

    async def describe(self) -> WorkflowExecutionDescription:
        """Temporal's description of the run (status, task queue, times, memo)."""
        return await self._handle.describe()

    async def ended(self) -> str | None:
        """None while the run is open, else how it ended: ``completed``, ``failed``,
        ``cancelled``, ``terminated``, ``timed_out`` or ``continued``."""
        status = (await self.describe()).status
        return None if status == WorkflowExecutionStatus.RUNNING else status_word(status)

    # --- redrive ---------------------------------------------------------------------------

    async def redrive_plan(self, from_node: str | None = None) -> RedrivePlan:
        """What :meth:`redrive` would do: the nodes that keep their output and those that run
        again. Raises :class:`~starter.client.redrive.RedriveError` for a run that is open or
        completed, or a ``from_node`` its plan does not have."""
        from starter.client.redrive import plan_redrive, recorded_run

        return plan_redrive(await recorded_run(self), from_node)

    async def redrive(
        self, from_node: str | None = None, *, workflow_id: str | None = None
    ) -> RunHandle:
        """Start a new run of this failed, cancelled, terminated or timed-out run: the same plan
        and inputs, every node that completed keeping its output without running again, except
        ``from_node`` and what depends on it. Returns the new run's handle (its report lists the
        reused nodes in ``reused``)."""
        from starter.client.redrive import start_redrive

        plan = await self.redrive_plan(from_node)
        return await start_redrive(self._client, plan, workflow_id=workflow_id)

    # --- signals and cancellation ----------------------------------------------------------

    async def pause(self) -> None:
        """Let running nodes finish and start nothing new."""
        async with self._client.audited("pause", self.id):
            try:
                await self._handle.signal(TideflowWorkflow.pause)
            except RPCError as e:
                await self._raise_if_ended(e)

    async def resume(self) -> None:
        """Start again what became ready while paused."""
        async with self._client.audited("resume", self.id):
            try:
                await self._handle.signal(TideflowWorkflow.resume)
            except RPCError as e:
                await self._raise_if_ended(e)

    async def cancel(self) -> None:
        """Cancel the run: running nodes are cancelled and compensations run. A run that has
        ended raises :class:`ControlError` (Temporal would accept the request and do
        nothing, or answer with its own message)."""
        async with self._client.audited("cancel", self.id):
            ended = await self.ended()
            if ended is not None:
                raise ControlError(f"run {self.id} has already ended ({ended})")
            try:
                await self._handle.cancel()
            except RPCError as e:
                await self._raise_if_ended(e)

    async def emit(self, name: str, payload: Any = None, correlation: str | None = None) -> None:
        """Deliver an event to the run (a ``wait_for_event`` node of it may take it)."""
        event = Event(name=name, payload=payload, correlation=correlation)
        async with self._client.audited("emit", self.id, detail=f"event {name}"):
            try:
                await self._handle.signal(TideflowWorkflow.event, event)
            except RPCError as e:
                await self._raise_if_ended(e)

    # --- updates ---------------------------------------------------------------------------

    async def skip(self, node: str, output: Any = None) -> ControlAnswer:
        """Skip a pending or failed node (downstream nodes see ``output``)."""
        request = SkipNode(node=node, output=output)
        return await self._update(
            TideflowWorkflow.skip_node, request, "skip", f"node {node}", redrive_hint=True
        )

    async def retry(self, node: str) -> ControlAnswer:
        """Run a node that needs attention again."""
        request = RetryNode(node=node)
        return await self._update(
            TideflowWorkflow.retry_node, request, "retry", f"node {node}", redrive_hint=True
        )

    async def fail(
        self, node: str, reason: str | None = None, by: str | None = None
    ) -> ControlAnswer:
        """Give up on a node that needs attention or waits: it fails, and the run fails
        (``by`` defaults to the client's user)."""
        request = FailNode(node=node, reason=reason, by=by or self._client.user)
        return await self._update(
            TideflowWorkflow.fail_node, request, "fail", f"node {node}", redrive_hint=True
        )

    async def set_vars(self, values: dict[str, Any]) -> ControlAnswer:
        """Change the run's vars (type-checked against their declared values)."""
        names = ", ".join(sorted(values))  # the names only: values may be sensitive
        return await self._update(
            TideflowWorkflow.set_vars, SetVars(values=values), "set_vars", f"vars {names}"
        )

    async def approve(
        self,
        node: str,
        approved: bool = True,
        comment: str | None = None,
        by: str | None = None,
        roles: list[str] | None = None,
        output: Any = None,
    ) -> ControlAnswer:
        """Approve (or reject) an approval node, or answer a review with ``output``. ``by``
        and ``roles`` default to the client's user and roles; the run refuses them unless the
        node's ``approvers`` name that user or one of those roles."""
        request = Approve(
            node=node,
            approved=approved,
            comment=comment,
            by=by or self._client.user,
            roles=self._client.roles if roles is None else roles,
            output=output,
        )
        decision = "approved" if approved else "rejected"
        return await self._update(
            TideflowWorkflow.approve, request, "approve", f"node {node} {decision}"
        )

    async def raise_budget(
        self, add_tokens: int = 0, add_usd: float = 0.0, by: str | None = None
    ) -> ControlAnswer:
        """Let the run spend more on models; nodes its budget stopped run again (``by``
        defaults to the client's user)."""
        request = RaiseBudget(add_tokens=add_tokens, add_usd=add_usd, by=by or self._client.user)
        return await self._update(TideflowWorkflow.raise_budget, request)

    async def _update(
        self,
        update: Any,
        request: BaseModel,
        action: str | None = None,
        detail: str | None = None,
        *,
        redrive_hint: bool = False,
    ) -> ControlAnswer:
        """Send an update, recorded in the audit trail as ``action`` (default: the update's
        name) with ``detail`` (names, never values)."""
        name = action or str(getattr(update, "__name__", "update"))
        async with self._client.audited(name, self.id, detail=detail):
            try:
                answer: ControlAnswer = await self._handle.execute_update(update, request)
            except WorkflowUpdateFailedError as e:
                cause = e.cause
                reason = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
                raise ControlError(f"refused: {reason}") from e
            except RPCError as e:
                await self._raise_if_ended(e, redrive_hint=redrive_hint)
        return answer

    async def _raise_if_ended(self, error: RPCError, *, redrive_hint: bool = False) -> NoReturn:
        """Raise :class:`ControlError` for a request Temporal refused because the run has
        ended; else re-raise ``error``."""
        if not _ended(error):
            raise error
        try:
            ended = await self.ended() or "closed"
        except RPCError:
            ended = "closed"
        if redrive_hint and ended in _REDRIVABLE:
            raise ControlError(
                f"run {self.id} has ended ({ended}): use `tideflow redrive {self.id}` to run it "
                "again from its last checkpoint"
            ) from None
        raise ControlError(f"run {self.id} has already ended ({ended})") from None
