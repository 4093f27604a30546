"""What an outbox entry holds and how it reaches Temporal, exactly once.

A start is compiled when it is accepted (:func:`start_record`): the plan, the checked inputs,
the workflow id, search attributes, memo and priority are stored, so delivering it later needs
neither the definitions folder nor the configuration, and the run is what was accepted.

Delivery (:func:`deliver_start`) starts the workflow with the entry's id in its memo. Temporal
refuses a second execution of a running workflow id, and a delivery that may have reached
Temporal before (the process died before recording it) first looks for a run carrying that
memo: a retried delivery finds the run the first one started instead of starting another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from interpreter import Definition
from interpreter.control import RunInput
from interpreter.model import RetrySpec
from interpreter.workflow import TideflowWorkflow
from starter.client import TideflowClient, run_input, static_summary
from starter.client.definitions import start_options
from starter.outbox.records import Entry

OUTBOX_MEMO = "tideflow_outbox"
"""The memo entry naming the outbox entry a run was started by."""

IDEMPOTENCY_MEMO = "tideflow_idempotency"
"""The memo entry of runs started with an ``Idempotency-Key`` (see starter.api.idempotency)."""


class StartRecord(BaseModel):
    """A start as the outbox keeps it."""

    run_input: dict[str, Any]
    workflow_id: str
    task_queue: str
    slug: str
    version: str
    summary: str
    details: str | None = None
    memo: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = None
    max_runs: int | None = None
    """The definition's ``concurrency.max_runs``: the run waits for a free slot."""
    reject_duplicate: bool = False
    """The workflow id is an idempotency key: never a second execution while Temporal keeps
    the first (its retention), and an existing run of that id is this start's, done before."""
    document: str | None = None
    """The saved upload a run of ``POST /definitions/{slug}/documents`` reads."""
    user: str | None = None
    """Who asked for the start: the run starts under their identity in Temporal."""
    roles: list[str] = Field(default_factory=list)
    origin: str | None = None
    """Where the start comes from (``api``, ``inline``, ``upload``, ``trigger``…), in the plan's
    input too."""


def start_record(
    definition: Definition,
    inputs: dict[str, Any],
    *,
    workflow_id: str,
    task_queue: str,
    default_retry: RetrySpec | None = None,
    memo: dict[str, Any] | None = None,
    priority: int | None = None,
    reject_duplicate: bool = False,
    document: str | None = None,
    user: str | None = None,
    roles: list[str] | None = None,
    origin: str | None = None,
) -> StartRecord:
    """Compile a start of ``definition`` (InputError names each bad input)."""
    payload = run_input(definition, inputs, default_retry=default_retry, origin=origin)
    return StartRecord(
        run_input=payload.model_dump(mode="json"),
        workflow_id=workflow_id,
        task_queue=task_queue,
        slug=definition.slug,
        version=definition.display_version,
        summary=static_summary(definition),
        details=definition.description or None,
        memo=dict(memo or {}),
        priority=priority or definition.priority,
        max_runs=definition.concurrency.max_runs if definition.concurrency else None,
        reject_duplicate=reject_duplicate,
        document=document,
        user=user,
        roles=list(roles or []),
        origin=origin,
    )


@dataclass(frozen=True)
class Delivered:
    """What delivering an entry did."""

    run_id: str | None = None
    new: bool = True
    """False when the run had been started before (an earlier request with the same key)."""
    result: dict[str, Any] = field(default_factory=dict)


class Refused(Exception):
    """Temporal refused the entry for good (it is marked failed; retrying cannot help)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.CANCELLED,
        # Credentials can be fixed; nothing is lost meanwhile.
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.PERMISSION_DENIED,
    }
)
"""Temporal's answers that mean "not now": the entry stays and waits, in order."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` means Temporal cannot take the entry now (it will later)."""
    if isinstance(error, RPCError):
        return error.status in TRANSIENT
    return not isinstance(error, Refused)


async def deliver_start(client: TideflowClient, entry: Entry, attempt: int) -> Delivered:
    """Start the run of a start entry, or find the run an earlier attempt started.

    Raises :class:`Refused` when Temporal refuses it for good, anything else when it cannot be
    reached (see :func:`is_transient`)."""
    record = StartRecord.model_validate(entry.request)
    if attempt > 1:  # an earlier attempt may have started it before its process died
        earlier = await _run_of_entry(client, record.workflow_id, entry.id)
        if earlier is not None:
            return Delivered(earlier)
    if record.user:  # Temporal records the requester, not the deliverer
        client = client.acting_as(record.user, record.roles, origin=record.origin)
    try:
        handle = await client.temporal.start_workflow(
            TideflowWorkflow.run,
            RunInput.model_validate(record.run_input),
            id=record.workflow_id,
            task_queue=record.task_queue,
            id_reuse_policy=(
                WorkflowIDReusePolicy.REJECT_DUPLICATE
                if record.reject_duplicate
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE
            ),
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={**record.memo, OUTBOX_MEMO: entry.id},
            **start_options(
                slug=record.slug,
                version=record.version,
                summary=record.summary,
                details=record.details,
                priority=record.priority,
            ),
        )
    except WorkflowAlreadyStartedError as e:
        return await _already_started(client, record, entry, e.run_id)
    except RPCError as e:
        if e.status in TRANSIENT:
            raise
        raise Refused(f"Temporal refused the start: {e.message}", 422) from e
    return Delivered(handle.first_execution_run_id or handle.result_run_id)


async def _run_of_entry(client: TideflowClient, workflow_id: str, entry_id: str) -> str | None:
    """The run id of the latest run of ``workflow_id`` if ``entry_id`` started it."""
    try:
        described = await client.get_run(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    memo = await described.memo()
    return described.run_id if memo.get(OUTBOX_MEMO) == entry_id else None


async def _already_started(
    client: TideflowClient, record: StartRecord, entry: Entry, run_id: str | None
) -> Delivered:
    described = await client.get_run(record.workflow_id, run_id).describe()
    memo = await described.memo()
    if memo.get(OUTBOX_MEMO) == entry.id:
        return Delivered(described.run_id)
    ours = record.memo.get(IDEMPOTENCY_MEMO)
    if isinstance(ours, dict):
        theirs = memo.get(IDEMPOTENCY_MEMO)
        if isinstance(theirs, dict) and theirs.get("key") == ours.get("key"):
            if theirs.get("request") == ours.get("request"):
                return Delivered(described.run_id, new=False)
            raise Refused(
                f"Idempotency-Key was used for a different request (run {record.workflow_id!r})"
            )
        raise Refused(f"a run with id {record.workflow_id!r} exists")
    if record.reject_duplicate:  # a derived id (an event's key, a watched file): done before
        return Delivered(described.run_id, new=False)
    raise Refused(f"a run with id {record.workflow_id!r} exists")


class EventRecord(BaseModel):
    """An event as the outbox keeps it: delivered to the open runs waiting for it."""

    name: str
    payload: Any = None
    correlation: str | None = None
    definition: str | None = None
    """Only the runs of this definition slug."""


async def deliver_event(client: TideflowClient, entry: Entry) -> Delivered:
    """Signal the event to the open runs (the starts it makes are entries of their own)."""
    record = EventRecord.model_validate(entry.request)
    delivered = await client.emit_event(
        record.name, record.payload, correlation=record.correlation, definition=record.definition
    )
    return Delivered(result={"delivered": delivered})
