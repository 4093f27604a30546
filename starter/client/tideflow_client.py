"""The Tideflow client (shaped like Temporal's ``Client``): start runs and hand out
:class:`~starter.client.handle.RunHandle`\\ s, list runs, send events, ask about workers."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities import WorkerSettings
from interpreter import Definition
from interpreter.model import RetrySpec
from interpreter.report import RunReport
from interpreter.workflow import TideflowWorkflow
from starter import audit, lineage
from starter.client import events
from starter.client.connection import (
    acting_roles,
    acting_user,
    connect,
    default_identity,
    with_identity,
)
from starter.client.definitions import (
    new_workflow_id,
    run_input,
    start_options,
    static_summary,
)
from starter.client.events import EventDelivery
from starter.client.handle import RunHandle
from starter.client.listing import RunSummary, list_runs, list_runs_matching
from starter.client.redrive import RedriveCandidate, redrive_candidates


class TideflowClient:
    """A client of Tideflow runs over one Temporal client.

    Make one per process with :meth:`connect` (or wrap a connected Temporal client) and share
    it: the CLI, the HTTP API and the triggers do.

        client = await TideflowClient.connect()
        run = await client.start(definition, {"document": "invoice.pdf"})
        report = await run.report()
    """

    def __init__(
        self,
        temporal: Client,
        *,
        user: str | None = None,
        roles: list[str] | None = None,
        task_queue: str | None = None,
        origin: str | None = None,
        audit: bool = True,
        lineage: bool = True,
        default_retry: RetrySpec | None = None,
    ) -> None:
        """Wrap a connected Temporal client. ``user`` is the ``by`` of approvals and failed
        nodes when a call does not name one (None: nobody), and who the audit trail records;
        ``roles`` are that user's roles (an approval node's ``approvers`` may name roles);
        ``task_queue`` is where runs start by default (else ``TIDEFLOW_TASK_QUEUE`` or
        ``tideflow``); ``origin`` is where the runs it starts come from (``cli``, ``api``,
        ``trigger``…: nodes see it, the audit trail records it); ``audit=False`` records
        nothing in the audit trail (:mod:`starter.audit`), ``lineage=False`` nothing of the
        runs it starts in the lineage tables (:mod:`starter.lineage`); ``default_retry`` is
        compiled into the plans of definitions that set no retry of their own (the engine
        configuration's, see :func:`~starter.client.definitions.run_input`)."""
        self._temporal = temporal
        self._user = user
        self._roles = list(roles or [])
        self._task_queue = task_queue
        self._origin = origin
        self._audit = audit
        self._lineage = lineage
        self.default_retry = default_retry

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        namespace: str | None = None,
        *,
        settings: WorkerSettings | None = None,
        identity: str | None = None,
        user: str | None = None,
        roles: list[str] | None = None,
        origin: str | None = "cli",
        audit: bool = True,
        lineage: bool = True,
    ) -> TideflowClient:
        """Connect as Temporal's environment configuration says (``TEMPORAL_ADDRESS``, default
        localhost:7233, ``TEMPORAL_NAMESPACE``, a ``TEMPORAL_PROFILE`` with TLS, client
        certificates or an API key: :mod:`starter.client.connection`).

        ``identity`` is what Temporal records with every signal, update and cancellation sent
        (the Web UI shows it): ``user@host`` by default, ``user`` being
        :func:`~starter.client.acting_user` (and ``roles`` :func:`~starter.client.acting_roles`)
        unless given. ``settings`` give the payload store, the default task queue and
        ``default_retry`` (else they are read from the environment and ``TIDEFLOW_CONFIG``).
        """
        user = user or acting_user()
        settings = settings or WorkerSettings.from_env()
        temporal = await connect(
            address, namespace, settings=settings, identity=identity or default_identity(user)
        )
        return cls(
            temporal,
            user=user,
            roles=acting_roles() if roles is None else roles,
            task_queue=settings.task_queue,
            origin=origin,
            audit=audit,
            lineage=lineage,
            default_retry=settings.default_retry,
        )

    def acting_as(
        self,
        user: str,
        roles: list[str] | None = None,
        *,
        origin: str | None = None,
        identity: str | None = None,
    ) -> TideflowClient:
        """This client acting for ``user`` (with ``roles``): the same connection, but Temporal
        records ``identity`` (default ``user@host``) with what it sends, approvals and failed
        nodes name ``user``, and the audit trail records them. The HTTP API makes one per
        request from the caller's token."""
        temporal = with_identity(self._temporal, identity or default_identity(user))
        return TideflowClient(
            temporal,
            user=user,
            roles=roles,
            task_queue=self._task_queue,
            origin=origin or self._origin,
            audit=self._audit,
            lineage=self._lineage,
            default_retry=self.default_retry,
        )

    @property
    def temporal(self) -> Client:
        """The underlying Temporal client."""
        return self._temporal

    @property
    def namespace(self) -> str:
        """The Temporal namespace."""
        return self._temporal.namespace

    @property
    def identity(self) -> str:
        """The identity Temporal records with the requests this client sends."""
        return self._temporal.identity

    @property
    def user(self) -> str | None:
        """Who acts through this client (``by`` of approvals and failed nodes by default)."""
        return self._user

    @property
    def roles(self) -> list[str]:
        """The roles of :attr:`user` (checked against approval nodes' ``approvers``)."""
        return list(self._roles)

    @property
    def origin(self) -> str | None:
        """Where the runs this client starts come from (``cli``, ``api``, ``trigger``…)."""
        return self._origin

    def audited(
        self,
        action: str,
        target: str | None = None,
        *,
        detail: str | None = None,
        definition: str | None = None,
    ) -> AbstractAsyncContextManager[dict[str, Any]]:
        """Record ``action`` on ``target`` by this client's user in the audit trail, with its
        outcome (see :func:`starter.audit.audited`)."""
        return audit.audited(
            action,
            target,
            user=self._user,
            via=self._origin,
            detail=detail,
            definition=definition,
            enabled=self._audit,
        )

    @property
    def task_queue(self) -> str:
        """The task queue runs start on unless told otherwise."""
        return self._task_queue or WorkerSettings.from_env().task_queue

    # --- runs ------------------------------------------------------------------------------

    async def start(
        self,
        definition: Definition,
        inputs: dict[str, Any] | None = None,
        *,
        workflow_id: str | None = None,
        task_queue: str | None = None,
        id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.UNSPECIFIED,
        memo: dict[str, Any] | None = None,
        history_limit: int | None = None,
        origin: str | None = None,
        documents: list[str] | None = None,
        priority: int | None = None,
    ) -> RunHandle:
        """Start a run (inputs are checked first: InputError names each bad one) and return
        its handle.

        With a derived ``workflow_id`` and ``REJECT_DUPLICATE``/``FAIL`` the id is an
        idempotency key: a second start raises ``WorkflowAlreadyStartedError``. ``memo`` is
        stored with the run (the HTTP API keeps what a retried start must match there).
        ``history_limit`` makes the run continue as new whenever its history holds that many
        events (default: when Temporal suggests it). ``origin`` (default: the client's) tells
        the run's nodes where it came from. ``documents`` are local files the run starts from
        besides the inputs naming local files: their sha256 is recorded for lineage
        (:mod:`starter.lineage`). ``priority`` (1 first … 5 last, default the definition's
        ``priority:``, else 3) orders the run's workflow and node tasks on their task queues
        when they wait for a worker. The start is recorded in the audit trail.
        """
        workflow_id = workflow_id or new_workflow_id(definition)
        async with self.audited("start", workflow_id, definition=definition.slug):
            payload = run_input(
                definition,
                inputs,
                history_limit=history_limit,
                origin=origin or self._origin,
                default_retry=self.default_retry,
            )
            if self._lineage:  # before the start, so that the run's first node finds it
                await lineage.record_start_async(
                    workflow_id=workflow_id,
                    run_id=None,
                    definition=definition,
                    inputs=inputs or {},
                    documents=documents or [],
                    origin=origin or self._origin,
                )
            handle = await self._temporal.start_workflow(
                TideflowWorkflow.run,
                payload,
                id=workflow_id,
                task_queue=task_queue or self.task_queue,
                id_reuse_policy=id_reuse_policy,
                id_conflict_policy=id_conflict_policy,
                memo=memo,
                **start_options(
                    slug=definition.slug,
                    version=definition.display_version,
                    summary=static_summary(definition),
                    details=definition.description,
                    priority=priority or definition.priority,
                ),
            )
        return RunHandle(self, handle)

    async def run(
        self, definition: Definition, inputs: dict[str, Any] | None = None, **options: Any
    ) -> RunReport:
        """Start a run (``options`` as :meth:`start`) and wait for its report."""
        handle = await self.start(definition, inputs, **options)
        return await handle.report()

    def get_run(self, workflow_id: str, run_id: str | None = None) -> RunHandle:
        """The handle of a run by workflow id (the latest run of that id unless ``run_id``
        pins one). Nothing is asked of the server until the handle is used."""
        handle = self._temporal.get_workflow_handle_for(
            TideflowWorkflow.run, workflow_id, run_id=run_id
        )
        return RunHandle(self, handle)

    async def list_runs(
        self,
        *,
        definition: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[RunSummary]:
        """Recent runs, newest first, filtered by definition slug and status (``running``,
        ``paused``, ``waiting``, ``needs_attention``, ``completed``, ``failed``, ``cancelled``,
        ``terminated``, ``timed_out``, ``continued``; ValueError for another)."""
        return await list_runs(self._temporal, definition=definition, status=status, limit=limit)

    async def list_runs_matching(self, query: str, *, limit: int = 50) -> list[RunSummary]:
        """The runs a Temporal visibility query finds, newest first."""
        return await list_runs_matching(self._temporal, query, limit=limit)

    async def redrive_candidates(
        self,
        *,
        definition: str | None = None,
        status: str = "failed",
        since: timedelta | None = None,
        limit: int = 1000,
    ) -> list[RedriveCandidate]:
        """The ended runs a bulk redrive takes (see
        :func:`starter.client.redrive.redrive_candidates`); ValueError for a status that
        cannot be redriven."""
        return await redrive_candidates(
            self, definition=definition, status=status, since=since, limit=limit
        )

    # --- events ----------------------------------------------------------------------------

    async def emit_event(
        self,
        name: str,
        payload: Any = None,
        *,
        correlation: str | None = None,
        workflow_id: str | None = None,
        definition: str | None = None,
    ) -> list[str]:
        """Deliver an event to one run, or to every open run (of a definition slug); return
        the ids of the runs it was sent to (a run keeps it only if a ``wait_for_event`` node
        waits for that name and correlation)."""
        if workflow_id:
            await self.get_run(workflow_id).emit(name, payload, correlation)
            return [workflow_id]
        return await events.emit_event(
            self, name, payload, correlation=correlation, definition=definition
        )

    async def deliver_event(
        self,
        name: str,
        payload: Any = None,
        *,
        correlation: str | None = None,
        workflow_id: str | None = None,
        definition: str | None = None,
        timeout: float = 5.0,
    ) -> list[EventDelivery]:
        """:meth:`emit_event`, telling for each run whether a node took the event (see
        :func:`starter.client.events.deliver_event`)."""
        return await events.deliver_event(
            self,
            name,
            payload,
            correlation=correlation,
            workflow_id=workflow_id,
            definition=definition,
            timeout=timeout,
        )

    # --- workers ---------------------------------------------------------------------------

    async def poller_identities(self, task_queue: str) -> list[str]:
        """The identities (``pid@host`` unless a worker sets its own) of the workers that
        polled ``task_queue`` for workflow tasks recently."""
        response = await self._temporal.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._temporal.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return [poller.identity for poller in response.pollers]

    async def has_workers(self, task_queue: str) -> bool:
        """Whether a worker polled ``task_queue`` for workflow tasks recently."""
        return bool(await self.poller_identities(task_queue))
