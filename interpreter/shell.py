"""The run's shell: one loop that feeds the core events and executes its commands.

:class:`CoreShell` holds a run's :class:`~interpreter.core.RunCore` and does what it cannot:
Temporal. Activity and child results, timers, signals and cancellation become events
(:mod:`interpreter.events`), put in an inbox by callbacks; the loop waits until one arrived,
feeds it, and turns the commands (:mod:`interpreter.commands`) into Temporal calls. Updates are
validated against the core's answers and fed at once, because an update answers its caller.
Every decision lives in the core; nothing here chooses.

A plain activity node costs exactly what a hand-written workflow's activity costs in history
(scheduled, started, completed): no markers, side effects or search-attribute upserts per node.
:mod:`interpreter.workflow` is the Temporal-facing class that hands a run to this shell (or, for
runs that format-1 code started, to :mod:`interpreter.legacy`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    RetryState,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from interpreter import observers
    from interpreter.commands import (
        CancelRun,
        CancelWork,
        CompleteRun,
        ContinueAsNew,
        FailRun,
        Observe,
        RunCommand,
        StartActivity,
        StartChild,
        StartTimer,
        UpsertStatus,
    )
    from interpreter.control import (
        Approve,
        ControlAnswer,
        Event,
        FailNode,
        RaiseBudget,
        RetryNode,
        RunInput,
        SetVars,
        SkipNode,
    )
    from interpreter.core import RunCore, RunIdentity
    from interpreter.events import (
        ApprovalAnswered,
        BudgetRaised,
        CancelRequested,
        EventArrived,
        FailRequested,
        HistoryLong,
        PauseRequested,
        ResumeRequested,
        RetryRequested,
        RunEvent,
        SkipRequested,
        TimerFired,
        VarsSet,
        WorkCancelled,
        WorkCompleted,
        WorkFailed,
    )
    from interpreter.inputs import InputError, resolve_inputs
    from interpreter.node_io import BUDGET_EXCEEDED, NodeResult
    from interpreter.plan import Plan, PlanError, PlanNode, RetryPlan, plans
    from interpreter.report import RunReport, RunState
    from interpreter.validate import DefinitionError

WORKFLOW_NAME = "TideflowWorkflow"
STATUS_KEY = SearchAttributeKey.for_keyword("TideflowStatus")
DEFINITION_KEY = SearchAttributeKey.for_keyword("TideflowDefinition")
VERSION_KEY = SearchAttributeKey.for_keyword("TideflowVersion")
RUN_FAILED = "TideflowRunFailed"
"""Failure type of a failed run; its first detail is the run report."""
NOTIFICATION_TIMEOUT = timedelta(minutes=1)
"""Start-to-close timeout of a lifecycle notification (it has no node of its own)."""


class CoreShell:
    """Runs one plan on the core: the loop that feeds events and executes commands, and the
    answers to the workflow's signals, updates and queries."""

    def __init__(self, input: RunInput) -> None:
        self._problem = "the run input holds no plan"
        self._problem_type = "InvalidDefinition"
        self._core: RunCore | None = None
        self._plan_json: dict[str, Any] | None = None
        self._inbox: deque[RunEvent] = deque()
        self._running: dict[str, Any] = {}
        """Label → what runs under it: an activity handle, a child's task or a timer."""
        self._details_due = False
        self._long = False
        self._options: dict[str, _ActivityOptions] = {}
        """A node's activity options, made once per run rather than once per activity."""
        self._now_cache: tuple[datetime | None, str] = (None, "")
        self._init_core(input)

    def _init_core(self, input: RunInput) -> None:
        info = workflow.info()
        identity = RunIdentity(info.workflow_id, info.run_id, info.task_queue)
        try:
            plan = self._load_plan(input)
            inputs = resolve_inputs(plan.inputs, input.inputs)
            options: dict[str, Any] = {
                "batch": input.batch,
                "history_limit": input.history_limit,
                "reuse": input.reuse,
                "origin": input.origin,
                "observe": observers.active(),
                "observe_nodes": observers.wants_nodes(),
            }
            if input.resume:
                self._core = RunCore.restore(plan, inputs, identity, input.resume, **options)
            else:
                started = _iso(info.start_time)
                self._core = RunCore(plan, inputs, identity, started_at=started, **options)
        except PlanError as e:
            self._problem_type = "InvalidPlan"
            self._problem = f"invalid plan: {e}"
        except DefinitionError as e:
            self._problem = "invalid definition:\n" + "\n".join(str(p) for p in e.problems)
        except InputError as e:
            self._problem_type = "InvalidInputs"
            self._problem = "invalid inputs: " + "; ".join(e.problems)

    def _load_plan(self, input: RunInput) -> Plan:
        if input.plan is not None:
            self._plan_json = input.plan
            return plans.get(input.plan)
        if input.definition is not None:  # format 1
            plan, self._plan_json = plans.from_definition(input.definition)
            return plan
        raise PlanError("the run input holds no plan")

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, input: RunInput) -> RunReport:
        """Run the plan to its end; a failed run raises with the report as failure detail."""
        core = self._core
        if core is None:
            raise ApplicationError(self._problem, type=self._problem_type, non_retryable=True)
        if input.resume is None and input.batch is None:
            self._count("tideflow_runs_started", "runs started, per definition")
        self._execute(core.start(self._now()))
        while not core.ended:
            try:
                await workflow.wait_condition(
                    lambda: (
                        bool(self._inbox)
                        or core.ended
                        or core.may_continue_as_new
                        or self._turned_long()
                    )
                )
            except asyncio.CancelledError:
                self._feed(CancelRequested())
                continue
            if self._turned_long():
                # First, so that what the events below make ready waits for the next run.
                self._long = True
                self._feed(HistoryLong())
            while self._inbox and not core.ended:
                self._feed(self._inbox.popleft())
            if core.may_continue_as_new and not self._inbox and workflow.all_handlers_finished():
                # Every signal received so far has been fed: nothing is left behind.
                self._continue_as_new(core.continue_as_new(), input)
        return self._finish(core.outcome)

    def _continue_as_new(self, outcome: ContinueAsNew, input: RunInput) -> NoReturn:
        workflow.continue_as_new(
            RunInput(
                plan=self._plan_json,
                inputs=input.inputs,
                history_limit=input.history_limit,
                resume=outcome.snapshot,
                batch=input.batch,
                reuse=input.reuse,
                origin=input.origin,
            )
        )

    def _count(self, name: str, description: str, **labels: str) -> None:
        """Add one to a run-level counter on the worker's metrics endpoint (Temporal's meter:
        nothing is counted while replaying)."""
        assert self._core is not None
        counter = workflow.metric_meter().create_counter(name, description)
        counter.add(1, {"definition": self._core.plan.slug, **labels})

    def _finish(self, outcome: RunCommand | None) -> RunReport:
        if self._core is not None and self._core.batch is None and outcome is not None:
            status = getattr(getattr(outcome, "report", None), "status", None)
            if status is not None:
                self._count(
                    "tideflow_runs_ended", "runs ended, per definition and status", status=status
                )
        if isinstance(outcome, CompleteRun):
            return outcome.report
        if isinstance(outcome, FailRun):
            report = outcome.report.model_dump(mode="json")
            raise ApplicationError(outcome.message, report, type=RUN_FAILED, non_retryable=True)
        assert isinstance(outcome, CancelRun), outcome
        raise asyncio.CancelledError()

    def _feed(self, event: RunEvent) -> None:
        assert self._core is not None
        self._execute(self._core.feed(event, self._now()))

    def _turned_long(self) -> bool:
        """Whether the history just grew past its limit (checked after every activation,
        updates and signals included)."""
        return not self._long and self._history_is_long()

    def _history_is_long(self) -> bool:
        assert self._core is not None
        info = workflow.info()
        if self._core.history_limit is not None:
            return info.get_current_history_length() >= self._core.history_limit
        return info.is_continue_as_new_suggested()

    # -- executing commands ------------------------------------------------------------------

    def _execute(self, commands: list[RunCommand]) -> None:
        for command in commands:
            if isinstance(command, StartActivity):
                self._start_activity(command)
            elif isinstance(command, StartChild):
                task = asyncio.create_task(self._run_child(command))
                self._running[command.label] = task
            elif isinstance(command, StartTimer):
                loop = asyncio.get_running_loop()
                fire = partial(self._inbox.append, TimerFired(command.label))
                self._running[command.label] = loop.call_later(command.seconds, fire)
            elif isinstance(command, CancelWork):
                running = self._running.pop(command.label, None)
                if running is not None:
                    running.cancel()
            elif isinstance(command, UpsertStatus):
                workflow.upsert_search_attributes([STATUS_KEY.value_set(command.status)])
            elif isinstance(command, Observe) and not workflow.unsafe.is_replaying():
                observers.emit(command.event, command.data)
        if commands and not self._details_due:
            # Once per workflow task, after its other work, however many nodes changed in it.
            self._details_due = True
            asyncio.get_running_loop().call_soon(self._set_details)

    def _start_activity(self, command: StartActivity) -> None:
        label = command.label
        if command.node is None:  # a lifecycle notification: default settings
            handle = workflow.start_activity(
                command.activity_type,
                command.input,
                result_type=NodeResult,
                activity_id=command.activity_id,
                summary=f"notification: {command.input.config.get('event', {}).get('event')}",
                start_to_close_timeout=NOTIFICATION_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            self._running[label] = handle
            handle.add_done_callback(partial(self._activity_done, label, None))
            return
        node = self._node(command.node)
        # A summary is a payload of its own, encoded and stored per activity: only a node with
        # a name has one (an unnamed node's summary would repeat the activity id, its label).
        summary = None
        if node.name:
            summary = node.summary if label == node.id else f"{node.summary} {label}"
        options = self._options.get(node.id)
        if options is None:
            options = self._options[node.id] = _activity_options(node)
        if command.local:
            # A local activity: run by this worker within the workflow task, its result a
            # marker (one history event); long retry backoffs become timers, as the SDK does.
            handle = workflow.start_local_activity(
                node.type,
                command.input,
                result_type=NodeResult,
                activity_id=command.activity_id,
                summary=summary,
                start_to_close_timeout=options.start_to_close,
                retry_policy=options.retry,
            )
        else:
            handle = workflow.start_activity(
                node.type,
                command.input,
                result_type=NodeResult,
                activity_id=command.activity_id,
                summary=summary,
                task_queue=node.task_queue,
                start_to_close_timeout=options.start_to_close,
                heartbeat_timeout=options.heartbeat,
                retry_policy=options.retry,
            )
        self._running[label] = handle
        handle.add_done_callback(partial(self._activity_done, label, node))

    def _activity_done(
        self, label: str, node: PlanNode | None, handle: asyncio.Task[NodeResult]
    ) -> None:
        self._running.pop(label, None)
        event: RunEvent
        try:
            result = handle.result()
        except ActivityError as e:
            cause = e.cause
            if isinstance(cause, CancelledError):
                event = WorkCancelled(label)
            else:
                retry = node.retry if node is not None else RetryPlan(max_attempts=3)
                budget = isinstance(cause, ApplicationError) and cause.type == BUDGET_EXCEEDED
                message = _activity_message(label, node, e)
                event = WorkFailed(label, message, _attempts(e, retry), budget=budget)
        except asyncio.CancelledError:
            event = WorkCancelled(label)
        else:
            usage = result.usage.model_dump() if result.usage else None
            review = result.review.model_dump(mode="json") if result.review else None
            event = WorkCompleted(
                label, result.output, result.attempt, usage, review, result.references
            )
        self._inbox.append(event)

    async def _run_child(self, command: StartChild) -> None:
        label = command.label
        event: RunEvent
        try:
            report = await workflow.execute_child_workflow(
                WORKFLOW_NAME,
                command.input,
                id=command.workflow_id,
                task_queue=command.task_queue,
                result_type=RunReport,
                static_summary=command.summary,
            )
        except ChildWorkflowError as e:
            cause = e.cause
            if isinstance(cause, CancelledError):
                event = WorkCancelled(label)
            else:
                message = cause.message if isinstance(cause, FailureError) else str(e)
                event = WorkFailed(label, f"node {label!r}: child run failed: {message}")
        except asyncio.CancelledError:
            event = WorkCancelled(label)
        else:
            event = WorkCompleted(label, report.model_dump(mode="json"))
        self._running.pop(label, None)
        self._inbox.append(event)

    # -- signals, updates, queries ---------------------------------------------------------

    def pause(self) -> None:
        """Start nothing new until resumed; running nodes finish, timers keep counting."""
        self._inbox.append(PauseRequested())

    def resume(self) -> None:
        """Start the nodes that became ready while paused."""
        self._inbox.append(ResumeRequested())

    def event(self, event: Event) -> None:
        """Deliver an event to a waiting (or later) ``wait_for_event`` node; events no node of
        this run waits for are dropped, so broadcasting an event costs runs nothing."""
        self._inbox.append(EventArrived(event))

    def skip_node(self, request: SkipNode) -> ControlAnswer:
        """Skip a pending or failed node; downstream nodes see ``output`` if given."""
        core = self._ready_core()
        self._feed(SkipRequested(request.node, request.output))
        status = core.scheduler.status(request.node).value
        later = "it will be skipped when it is reached" if status == "pending" else None
        return ControlAnswer(node=request.node, status=status, message=later)

    def _validate_skip(self, request: SkipNode) -> None:
        _reject_if(self._ready_core().skip_problem(request.node))

    def retry_node(self, request: RetryNode) -> ControlAnswer:
        """Run a node that needs attention again; the graph resumes from it."""
        core = self._ready_core()
        self._feed(RetryRequested(request.node))
        return ControlAnswer(node=request.node, status=core.scheduler.status(request.node).value)

    def _validate_retry(self, request: RetryNode) -> None:
        _reject_if(self._ready_core().retry_problem(request.node))

    def fail_node(self, request: FailNode) -> ControlAnswer:
        """Give up on a node that needs attention or waits: it fails, and so does the run
        (compensating what it did)."""
        core = self._ready_core()
        self._feed(FailRequested(request.node, request.reason, request.by))
        return ControlAnswer(node=request.node, status=core.scheduler.status(request.node).value)

    def _validate_fail(self, request: FailNode) -> None:
        _reject_if(self._ready_core().fail_problem(request.node))

    def set_vars(self, request: SetVars) -> ControlAnswer:
        """Change vars; later ``when`` conditions and configs see the new values."""
        self._feed(VarsSet(request.values))
        return ControlAnswer(message=f"set {', '.join(sorted(request.values))}")

    def _validate_set_vars(self, request: SetVars) -> None:
        _reject_if(self._ready_core().vars_problem(request.values))

    def approve(self, request: Approve) -> ControlAnswer:
        """Approve or reject a waiting approval node."""
        self._feed(ApprovalAnswered(request))
        return ControlAnswer(
            node=request.node, message="approved" if request.approved else "rejected"
        )

    def _validate_approve(self, request: Approve) -> None:
        _reject_if(self._ready_core().approve_problem(request))

    def raise_budget(self, request: RaiseBudget) -> ControlAnswer:
        """Let the run spend more; nodes the budget stopped run again."""
        self._feed(BudgetRaised(request))
        budget = self._ready_core().report().budget
        spent = f"{budget.spent_tokens} tokens, ${budget.spent_usd:g} spent" if budget else ""
        return ControlAnswer(message=f"budget raised; {spent}".rstrip("; "))

    def _validate_raise_budget(self, request: RaiseBudget) -> None:
        core = self._ready_core()
        if request.add_tokens <= 0 and request.add_usd <= 0:
            _reject("give tokens or dollars to add")
        if core.plan.budget is None and not any(n.budget for n in core.plan.nodes.values()):
            _reject("this run has no budget")
        _reject_if(core._ending())

    def state(self) -> RunState:
        """The run's live state: status, per-node status and attempts, vars, history."""
        return self._ready_core().state()

    def report(self) -> RunReport:
        """The run report so far (final once the run has ended)."""
        return self._ready_core().report()

    def _ready_core(self) -> RunCore:
        if self._core is None:
            _reject(self._problem)
        return self._core

    # -- small helpers -----------------------------------------------------------------------

    def _set_details(self) -> None:
        self._details_due = False
        if self._core is not None:
            workflow.set_current_details(self._core.details())

    def _node(self, node_id: str) -> PlanNode:
        assert self._core is not None
        return self._core.plan.nodes[node_id]

    def _now(self) -> str:
        # The time only moves between workflow tasks: format it once per value.
        moment = workflow.now()
        if moment != self._now_cache[0]:
            self._now_cache = (moment, _iso(moment))
        return self._now_cache[1]


def _reject(problem: str) -> NoReturn:
    raise ValueError(problem)


def _reject_if(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _ActivityOptions:
    __slots__ = ("heartbeat", "retry", "start_to_close")

    def __init__(self, node: PlanNode) -> None:
        self.start_to_close = timedelta(seconds=node.timeout)
        self.heartbeat = (
            timedelta(seconds=node.heartbeat_timeout) if node.heartbeat_timeout else None
        )
        self.retry = _retry_policy(node.retry)


def _activity_options(node: PlanNode) -> _ActivityOptions:
    return _ActivityOptions(node)


def _retry_policy(spec: RetryPlan) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_interval),
        backoff_coefficient=spec.backoff_coefficient,
        maximum_interval=timedelta(seconds=spec.max_interval) if spec.max_interval else None,
        maximum_attempts=spec.max_attempts,
        non_retryable_error_types=list(spec.non_retryable_errors) or None,
    )


def _activity_message(label: str, node: PlanNode | None, error: ActivityError) -> str:
    kind = node.type if node is not None else "notification"
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        what = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"node {label!r} ({kind}): timed out ({what})"
    if isinstance(cause, CancelledError):
        return f"node {label!r} ({kind}): cancelled"
    if isinstance(cause, FailureError):
        return f"node {label!r} ({kind}): {cause.message}"
    return f"node {label!r} ({kind}): {error}"


def _attempts(error: ActivityError, retry: RetryPlan) -> int:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.details:
        detail = cause.details[0]
        if isinstance(detail, dict) and isinstance(detail.get("attempt"), int):
            return int(detail["attempt"])
    if error.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return retry.max_attempts
    return 1
