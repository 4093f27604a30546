"""The run's core: every decision of a run, as a pure state machine.

:class:`RunCore` takes typed events (:mod:`interpreter.events`) and returns typed commands
(:mod:`interpreter.commands`). It knows nothing of Temporal: the shell
(:mod:`interpreter.workflow`) executes the commands and feeds the results back, so every policy
here — which nodes start, ``when``, foreach items and batches, fallbacks, compensation newest
first, ``on_failure``, cancel, operator skip/retry/fail, pause, the in-flight budget, the run's
status, continue-as-new — is tested in milliseconds without a server (tests/test_core.py).

The graph bookkeeping (joins, skip propagation) is :class:`interpreter.scheduler.Scheduler`;
expressions are pure CEL (:mod:`interpreter.expressions`); time comes in with every event.

Phases of a run: ``running`` → (``draining`` → continue as new) → ``ended``; or, once a node
fails the run or the run is cancelled, ``winding_down``: everything in flight is cancelled,
then compensations run newest first and the ``on_failure`` handlers after them, one at a time,
each failure recorded on its handler without stopping the others; then the run ends failed or
cancelled.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

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
from interpreter.control import Approve, BatchInput, Event, ReusedNode, RunInput
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
from interpreter.expressions import ExpressionError, References, evaluate, truthy
from interpreter.inputs import var_type_problem
from interpreter.node_io import BudgetLeft, NodeInput
from interpreter.node_types import WORKFLOW_TYPE_CONFIGS, ApprovalConfig, WaitForEventConfig
from interpreter.plan import DEFAULT_BATCH_SIZE, DEFAULT_FOREACH_CONCURRENCY, Plan, PlanNode
from interpreter.report import (
    AwaitedEvent,
    BudgetReport,
    DefinitionRef,
    NodeReport,
    PendingApproval,
    RunReport,
    RunState,
    RunStatusName,
    RunUsage,
    Transition,
)
from interpreter.scheduler import ENDED, GraphNode, NodeStatus, Scheduler
from interpreter.snapshot import Foreach, Purpose, RunSnapshot, Step, Work
from interpreter.values import SCOPE_MARK, has_refs

MAX_LOCAL_IN_FLIGHT = 50
"""Nodes of one run running as local activities at once. Local activities run within the
workflow task that started them; past this many at once (a wide fan-out of cheap nodes), the
others run as regular activities, so no workflow task outlasts its timeout."""
MAX_IN_FLIGHT = 500
"""Activities and child workflows of one run running at once (Temporal caps pending activities
per workflow at 2,000; its docs advise about 500)."""
CHILDREN_SHARE = 50
"""Items each batch child runs at once: a foreach of concurrency 200 runs 4 children of 50."""
KEEP_HISTORY = 1000
"""Status transitions a run hands on when it continues as new (older ones are counted)."""

Phase = Literal["running", "draining", "winding_down", "finishing", "ended"]
HandlerPurpose = Literal["fallback", "compensation", "on_failure"]

_FINAL = frozenset({"completed", "failed", "cancelled"})
_WAITS = frozenset({"timer", "event", "approval"})


class RunIdentity:
    """Which run this is (from Temporal's workflow info)."""

    __slots__ = ("run_id", "task_queue", "workflow_id")

    def __init__(self, workflow_id: str, run_id: str, task_queue: str) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.task_queue = task_queue


class RunCore:
    """One run's state and policy. Feed it events; execute the commands it returns."""

    def __init__(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        identity: RunIdentity,
        *,
        started_at: str,
        batch: BatchInput | None = None,
        history_limit: int | None = None,
        reuse: dict[str, ReusedNode] | None = None,
        origin: str | None = None,
        observe: bool = False,
        observe_nodes: bool = True,
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.identity = identity
        self.batch = batch
        self.history_limit = history_limit
        self.scheduler = Scheduler(self._graph_nodes())
        self.vars: dict[str, Any] = dict(plan.vars)
        self.events: list[Event] = []
        self.work: dict[str, Work] = {}
        self.foreach: dict[str, Foreach] = {}
        self.paused_foreach: dict[str, Foreach] = {}
        self.compensations: list[str] = []
        self.reruns: dict[str, int] = {}
        self.invocations: dict[str, int] = {}
        self.phase: Phase = "running"
        self.fatal: tuple[str | None, str] | None = None
        self.cancel_requested = False
        self.steps: deque[Step] = deque()
        self.steps_planned = False
        self.status: RunStatusName = "running"
        self.status_upserted = False
        self.started_at = started_at
        self.batch_outputs: dict[str, Any] | None = None
        self.reuse = reuse or {}
        self.reused: list[str] = []
        self.origin = origin
        self.observe = observe
        """Whether the worker's observers want lifecycle events (``Observe`` commands)."""
        self.observe_nodes = observe and observe_nodes
        """Whether they want each node's start and end as well (not only the run's)."""
        self.spent_tokens = 0
        self.spent_usd = 0.0
        self.added_tokens = 0
        self.added_usd = 0.0
        self.node_spent: dict[str, tuple[int, float]] = {}
        self.attention: dict[str, str] = {}
        """Node that needs attention → why: ``error``, or ``budget``."""
        self.notified = 0
        self.ref_nodes: set[str] = set()
        """Nodes whose outputs hold references to stored values: CEL cannot read them."""
        self._final: RunCommand | None = None
        """The run's outcome while its lifecycle notifications are still being sent."""
        self._observed = 0
        self.outcome: RunCommand | None = None
        """The command that ended the run, once it has ended."""
        self._out: list[RunCommand] = []
        self._status_out: list[RunCommand] = []
        self._now = started_at
        self._in_flight = 0
        self._local_in_flight = 0
        self._started = False

    def _graph_nodes(self) -> list[GraphNode]:
        batch = self.batch
        return [
            GraphNode(n.id, () if batch else n.depends_on, n.join, n.handler and not batch)
            for n in self.plan.nodes.values()
            if batch is None or n.id == batch.node
        ]

    # -- continue-as-new -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the next run needs (JSON). Nothing may be in flight but waits."""
        assert self._in_flight == 0, "snapshot with activities or children in flight"
        return RunSnapshot.model_construct(
            format=2,
            scheduler=self.scheduler.snapshot(KEEP_HISTORY),
            vars=self.vars,
            events=self.events,
            work=list(self.work.values()),
            foreach=list(self.foreach.values()),
            paused_foreach=list(self.paused_foreach.values()),
            compensations=self.compensations,
            reruns=self.reruns,
            invocations=self.invocations,
            fatal=self.fatal,
            cancel_requested=self.cancel_requested,
            steps=list(self.steps),
            steps_planned=self.steps_planned,
            status=self.status,
            status_upserted=self.status_upserted,
            started_at=self.started_at,
            batch_outputs=self.batch_outputs,
            reused=self.reused,
            spent_tokens=self.spent_tokens,
            spent_usd=self.spent_usd,
            added_tokens=self.added_tokens,
            added_usd=self.added_usd,
            node_spent=self.node_spent,
            attention=self.attention,
            notified=self.notified,
            ref_nodes=sorted(self.ref_nodes),
        ).model_dump(mode="json")

    @classmethod
    def restore(
        cls,
        plan: Plan,
        inputs: dict[str, Any],
        identity: RunIdentity,
        data: dict[str, Any],
        *,
        batch: BatchInput | None = None,
        history_limit: int | None = None,
        reuse: dict[str, ReusedNode] | None = None,
        origin: str | None = None,
        observe: bool = False,
        observe_nodes: bool = True,
    ) -> RunCore:
        """The core a :meth:`snapshot` (of any format) describes."""
        snap = RunSnapshot.from_json(data)
        core = cls(
            plan,
            inputs,
            identity,
            started_at=snap.started_at,
            batch=batch,
            history_limit=history_limit,
            reuse=reuse,
            origin=origin,
            observe=observe,
            observe_nodes=observe_nodes,
        )
        core.scheduler = Scheduler.restore(core._graph_nodes(), snap.scheduler)
        core.vars = dict(snap.vars)
        core.events = list(snap.events)
        core.work = {w.label: w for w in snap.work}
        core.foreach = {f.node: f for f in snap.foreach}
        core.paused_foreach = {f.node: f for f in snap.paused_foreach}
        core.compensations = list(snap.compensations)
        core.reruns = dict(snap.reruns)
        core.invocations = dict(snap.invocations)
        core.fatal = snap.fatal
        core.cancel_requested = snap.cancel_requested
        core.steps = deque(snap.steps)
        core.steps_planned = snap.steps_planned
        core.status = snap.status
        core.status_upserted = snap.status_upserted
        core.batch_outputs = snap.batch_outputs
        core.reused = list(snap.reused)
        core.spent_tokens, core.spent_usd = snap.spent_tokens, snap.spent_usd
        core.added_tokens, core.added_usd = snap.added_tokens, snap.added_usd
        core.node_spent = {k: (int(v[0]), float(v[1])) for k, v in snap.node_spent.items()}
        core.attention = dict(snap.attention)
        core.notified = snap.notified
        core.ref_nodes = set(snap.ref_nodes)
        core._observed = len(core.scheduler.history)
        core._started = True
        if core.fatal is not None or core.cancel_requested:
            core.phase = "winding_down"
        return core

    @property
    def may_continue_as_new(self) -> bool:
        """Whether the run is at a boundary where it can go on in a new run: its history grew
        long and nothing is in flight but waits (which carry over)."""
        return self.phase == "draining" and self._in_flight == 0

    def continue_as_new(self) -> ContinueAsNew:
        """End this run to go on in a new one; the command holds the snapshot. The shell asks
        only when every event it received has been fed, so no signal is lost."""
        assert self.may_continue_as_new
        outcome = ContinueAsNew(self.snapshot())
        self.phase = "ended"
        self.outcome = outcome
        return outcome

    # -- driving ---------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """Whether the run has ended (its last command completed, failed, cancelled or
        continued it as new)."""
        return self.phase == "ended"

    def start(self, now: str) -> list[RunCommand]:
        """Begin the run (or, after continue-as-new, re-arm the timers of its waits)."""
        self._now = now
        if not self._started:
            self._started = True
            self.scheduler.start(now)
            if self.observe:
                self._out.append(Observe("run_started", self._run_data()))
            if self.batch is None:
                self._notify("started")
        else:
            for work in self.work.values():
                if work.deadline is not None:
                    self._arm_timer(work)
        return self._settle()

    def feed(self, event: RunEvent, now: str) -> list[RunCommand]:
        """Apply one event; return the commands to execute, in order."""
        self._now = now
        if self.phase == "ended":
            return []
        match event:
            case WorkCompleted(label=label):
                work = self._take(label)
                if work is not None:
                    self._spend(work.node, event.usage)
                    if event.references:
                        self.ref_nodes.add(work.node)
                        if work.purpose == "fallback" and work.invoker is not None:
                            self.ref_nodes.add(work.invoker)
                    if event.review is not None and work.purpose in ("node", "item"):
                        self._review(work, event.review, event.output, event.attempts, event.usage)
                    else:
                        self._completed(work, event.output, event.attempts, event.usage)
            case WorkFailed(label=label):
                work = self._take(label)
                if work is not None and event.budget:
                    self._budget_stopped(work, event.message, event.attempts)
                elif work is not None:
                    self._failed(work, event.message, event.attempts)
            case WorkCancelled(label=label):
                work = self._take(label)
                if work is not None:
                    self._cancelled(work)
            case TimerFired(label=label):
                self._timer_fired(label)
            case EventArrived(event=arrived):
                awaited = self.plan.awaited_events
                if awaited is None or arrived.name in awaited:
                    self.events.append(arrived)
                    self._match_events()
            case PauseRequested():
                self.scheduler.pause(now)
            case ResumeRequested():
                self.scheduler.resume(now)
            case SkipRequested(node=node, output=output):
                self.paused_foreach.pop(node, None)
                self.attention.pop(node, None)
                self.scheduler.skip(node, now, output)
            case RetryRequested(node=node):
                self.attention.pop(node, None)
                self.reruns[node] = self.reruns.get(node, 0) + 1
                self.scheduler.retry(node, now)
            case FailRequested(node=node):
                self._operator_fail(node, event.reason, event.by)
            case VarsSet(values=values):
                self.vars.update(values)
            case ApprovalAnswered(answer=answer):
                self._answer(answer)
            case BudgetRaised(raised=raised):
                self._raise_budget(raised.add_tokens, raised.add_usd, raised.by)
            case CancelRequested():
                if self.phase != "winding_down":
                    self.cancel_requested = True
                    self._wind_down()
            case HistoryLong():
                if self.phase == "running":
                    self.phase = "draining"
        return self._settle()

    # -- what the shell's validators ask ---------------------------------------------------

    def skip_problem(self, node: str) -> str | None:
        """Why ``skip_node`` would be refused, or None."""
        return self._ending() or self.scheduler.skip_problem(node)

    def retry_problem(self, node: str) -> str | None:
        """Why ``retry_node`` would be refused, or None."""
        return self._ending() or self.scheduler.retry_problem(node)

    def fail_problem(self, node: str) -> str | None:
        """Why ``fail_node`` would be refused, or None."""
        if ending := self._ending():
            return ending
        state = self.scheduler.states.get(node)
        if state is None:
            return f"unknown node {node!r}"
        if state.status == NodeStatus.NEEDS_ATTENTION:
            return None
        units = [w for w in self.work.values() if w.node == node and w.purpose == "node"]
        if state.status == NodeStatus.WAITING and units and all(w.kind in _WAITS for w in units):
            return None
        return (
            f"{node!r} is {state.status.value}: only a node that needs attention or waits "
            "(for a timer, an event or an approval) can be failed"
        )

    def approve_problem(self, answer: Approve) -> str | None:
        """Why ``approve`` would be refused, or None."""
        node = self.plan.nodes.get(answer.node)
        if node is None:
            return f"unknown node {answer.node!r}"
        work = self.work.get(answer.node)
        if node.type != "approval" and not (work is not None and work.review is not None):
            return f"{answer.node!r} is not an approval node"
        work = self.work.get(answer.node)
        if work is None or work.kind != "approval":
            return f"{answer.node!r} is not waiting for an approval or a review"
        approvers = work.approvers
        if approvers:
            allowed = ", ".join(approvers)
            if not answer.by:
                return f"only {allowed} may answer {answer.node!r}: say who you are"
            if answer.by not in approvers and not set(answer.roles) & set(approvers):
                return f"{answer.by} may not answer {answer.node!r}: only {allowed} may"
        options = (work.review or {}).get("options")
        if (
            options
            and answer.approved
            and answer.output is not None
            and answer.output not in options
        ):
            choices = ", ".join(repr(o) for o in options)
            return f"{answer.output!r} is not an answer of {answer.node!r}: one of {choices}"
        return None

    def vars_problem(self, values: dict[str, Any]) -> str | None:
        """Why ``set_vars`` would be refused, or None."""
        if not values:
            return "no values given"
        for name, value in values.items():
            problem = var_type_problem(self.plan.vars, name, value)
            if problem:
                return problem
        return None

    def approvers(self, node: str) -> list[str]:
        """Who may answer an approval node that waits (empty: anyone)."""
        work = self.work.get(node)
        return list(work.approvers) if work is not None else []

    def _ending(self) -> str | None:
        if self.phase in ("winding_down", "ended"):
            return "the run is ending"
        return None

    # -- starting nodes and units ----------------------------------------------------------

    def _start_node(self, node_id: str) -> None:
        node = self.plan.nodes[node_id]
        paused = self.paused_foreach.pop(node_id, None)
        if paused is not None:
            # An operator retried a foreach whose items failed: only those run again.
            self.scheduler.node_started(node_id, self._now)
            for first, _ in paused.pending:
                paused.errors.pop(first, None)
            if paused.batch_size is not None:
                failed = [first for first, _ in paused.pending]
                paused.pending = deque(_runs(failed, paused.batch_size))
            self.foreach[node_id] = paused
            return
        reused = self.reuse.get(node_id)
        if reused is not None and not node.handler:
            # A redrive: the node completed in the run this one reruns; keep what it did.
            self.scheduler.node_started(node_id, self._now)
            self.scheduler.node_completed(
                node_id, self._now, reused.output, attempts=reused.attempts, usage=reused.usage
            )
            self.reused.append(node_id)
            if has_refs(reused.output):
                self.ref_nodes.add(node_id)
            if node.compensate:
                self.compensations.append(node_id)
            return
        plain = (
            node.static_config
            and not node.scoped
            and node.foreach is None
            and (node.when is None or isinstance(node.when, bool))
        )
        # A node whose config reads nothing needs no scope (most nodes of big fan-outs).
        scope = _NO_SCOPE if plain and self.batch is None else self._scope(node)
        if self.batch is None:
            try:
                run_it = _when(node, scope)
            except ExpressionError as e:
                self.scheduler.node_started(node_id, self._now)
                self._node_failed(node, f"node {node_id!r}: {e.message}", 0)
                return
            if not run_it:
                self.scheduler.skip_now(node_id, self._now, reason="when is false")
                return
        self.scheduler.node_started(node_id, self._now)
        if node.foreach is not None or self.batch is not None:
            self._start_foreach(node, scope)
            return
        self._start_unit(node, node_id, scope, "node")

    def _start_unit(
        self,
        node: PlanNode,
        label: str,
        scope: dict[str, Any],
        purpose: Purpose,
        *,
        item: int | None = None,
        invoker: str | None = None,
        error: str | None = None,
    ) -> None:
        """Start one unit of a node: its activity, child run or wait (or do it at once)."""
        work = Work(label, node.id, "activity", purpose, item=item, invoker=invoker, error=error)
        try:
            if node.in_workflow:
                self._start_in_workflow(node, work, scope)
            else:
                self._start_activity(node, work, scope)
        except ExpressionError as e:
            self._failed(work, f"node {label!r}: {e.message}", 0)
        except _BudgetStop as e:
            self._budget_stopped(work, e.message, 0)
        except _Failure as e:
            self._failed(work, e.message, 0)

    def _start_activity(self, node: PlanNode, work: Work, scope: dict[str, Any]) -> None:
        config = node.config if node.static_config else evaluate(node.config, scope)
        budget = self._budget_left(node) if node.spends else None
        if budget is not None and (
            (budget.tokens is not None and budget.tokens <= 0)
            or (budget.cost_usd is not None and budget.cost_usd <= 0)
        ):
            raise _BudgetStop(f"node {work.label!r}: the budget is spent ({self._spend_text()})")
        node_input = NodeInput(
            node_id=work.label,
            config=config if isinstance(config, dict) else {},
            scope=self._code_scope(node, scope) if node.scoped else None,
            cache_ttl_seconds=node.cache_ttl,
            origin=self.origin,
            budget=budget,
            limits=node.resource_limits,
        )
        rerun = 0 if work.purpose in ("fallback", "compensation", "on_failure") else None
        rerun = self.reruns.get(node.id, 0) if rerun is None else rerun
        local = node.local and self._local_in_flight < MAX_LOCAL_IN_FLIGHT
        work.local = local
        self._add(work)
        self._out.append(
            StartActivity(
                label=work.label,
                node=node.id,
                activity_id=work.label if not rerun else f"{work.label}~{rerun}",
                input=node_input,
                local=local,
            )
        )

    def _start_in_workflow(self, node: PlanNode, work: Work, scope: dict[str, Any]) -> None:
        kind = node.type
        config = evaluate(node.config, scope)
        if not isinstance(config, dict):
            config = {}
        if kind == "workflow":
            self._start_child(node, work, config)
            return
        model = WORKFLOW_TYPE_CONFIGS.get(kind)
        if model is None:
            raise _Failure(f"node {work.label!r}: type {kind!r} cannot run in the workflow")
        try:
            parsed = model.model_validate(config)
        except ValidationError as e:
            raise _Failure(f"node {work.label!r} ({kind}): bad config: {_one_line(e)}") from None
        if kind == "set":
            for name, value in config.items():
                problem = var_type_problem(self.plan.vars, name, value)
                if problem:
                    raise _Failure(f"node {node.id!r}: {problem}")
            self.vars.update(config)
            self._completed(work, config, 1, None)
        elif kind == "fail":
            raise _Failure(f"node {work.label!r}: {config.get('message', 'failed by a fail node')}")
        elif kind == "input":
            fields = list(getattr(parsed, "required_fields", []))
            missing = [f for f in fields if f not in self.inputs]
            if missing:
                raise _Failure(
                    f"node {work.label!r}: missing required input(s) {', '.join(missing)}"
                )
            self._completed(work, {name: self.inputs[name] for name in fields}, 1, None)
        elif kind == "wait":
            seconds = self._wait_seconds(work, parsed)
            if seconds <= 0:
                self._completed(work, {"waited_seconds": 0.0}, 1, None)
                return
            work.kind = "timer"
            work.deadline = _add_seconds(self._now, seconds)
            self._wait(work)
        elif kind == "wait_for_event":
            assert isinstance(parsed, WaitForEventConfig)
            work.kind = "event"
            work.event = parsed.event
            work.correlation = parsed.correlation
            work.on_timeout = str(parsed.on_timeout)
            if parsed.timeout is not None:
                work.deadline = _add_seconds(self._now, float(parsed.timeout))
            self._wait(work)
            self._match_events()
        elif kind == "approval":
            assert isinstance(parsed, ApprovalConfig)
            work.kind = "approval"
            work.on_timeout = str(parsed.on_timeout)
            work.on_reject = str(parsed.on_reject)
            work.approvers = list(parsed.approvers)
            work.message = parsed.message
            if parsed.timeout is not None:
                work.deadline = _add_seconds(self._now, float(parsed.timeout))
            self._wait(work)

    def _wait_seconds(self, work: Work, parsed: Any) -> float:
        if parsed.duration is not None:
            return float(parsed.duration)
        try:
            until = datetime.fromisoformat(str(parsed.until).replace("Z", "+00:00"))
        except ValueError:
            raise _Failure(
                f"node {work.label!r}: until {parsed.until!r} is not an ISO 8601 time"
            ) from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        return (until - _parse(self._now)).total_seconds()

    def _wait(self, work: Work) -> None:
        work.waiting_since = self._now
        self._add(work)
        if work.purpose in ("node", "fallback", "compensation", "on_failure"):
            self.scheduler.node_waiting(work.node, self._now, True)
        if work.deadline is not None:
            self._arm_timer(work)

    def _arm_timer(self, work: Work) -> None:
        assert work.deadline is not None
        seconds = max((_parse(work.deadline) - _parse(self._now)).total_seconds(), 0.0)
        self._out.append(StartTimer(work.label, seconds))

    def _start_child(self, node: PlanNode, work: Work, config: dict[str, Any]) -> None:
        if node.child_plan is None:
            raise _Failure(f"node {work.label!r}: the child definition was not compiled in")
        inputs = config.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise _Failure(f"node {work.label!r}: inputs must be an object")
        work.kind = "child"
        self._add(work)
        queue = config.get("task_queue") or node.task_queue or self.identity.task_queue
        self._out.append(
            StartChild(
                label=work.label,
                node=node.id,
                workflow_id=f"{self.identity.workflow_id}-{work.label}",
                input=RunInput(plan=node.child_plan, inputs=inputs, origin=self.origin),
                task_queue=str(queue),
                summary=f"{node.summary} (child of {self.identity.workflow_id})",
            )
        )

    def _add(self, work: Work) -> None:
        self.work[work.label] = work
        if work.kind in ("activity", "child"):
            self._in_flight += 1
            if work.local:
                self._local_in_flight += 1

    def _take(self, label: str) -> Work | None:
        """The work an activity's or child's result belongs to, no longer in flight."""
        work = self.work.get(label)
        if work is None or work.kind not in ("activity", "child"):
            return None
        del self.work[label]
        self._in_flight -= 1
        if work.local:
            self._local_in_flight -= 1
        return work

    # -- outcomes of units -----------------------------------------------------------------

    def _completed(
        self, work: Work, output: Any, attempts: int, usage: dict[str, Any] | None
    ) -> None:
        if work.kind == "child" and work.purpose != "batch":
            output = _child_output(output)
        purpose = work.purpose
        if purpose == "notification":
            return
        if purpose == "item":
            self._item_ended(work, output, attempts, usage, None)
        elif purpose == "batch":
            self._batch_ended(work, output, None)
        elif purpose == "fallback":
            self.scheduler.node_completed(
                work.node, self._now, output, attempts=attempts, usage=usage
            )
            assert work.invoker is not None
            failed = self.scheduler.states[work.invoker]
            self.scheduler.node_failed(
                work.invoker,
                self._now,
                work.error or "",
                mode="handled",
                attempts=failed.attempts,
                output=output,
            )
        else:
            self.scheduler.node_completed(
                work.node, self._now, output, attempts=attempts, usage=usage
            )
            if purpose == "node" and self.plan.nodes[work.node].compensate:
                self.compensations.append(work.node)

    def _failed(self, work: Work, message: str, attempts: int) -> None:
        purpose = work.purpose
        if purpose == "notification":
            self.scheduler.note(self._now, "notification failed", message)
            return
        if purpose == "item":
            self._item_ended(work, None, attempts, None, message)
        elif purpose == "batch":
            self._batch_ended(work, None, message)
        elif purpose in ("compensation", "on_failure"):
            self.scheduler.node_failed(
                work.node, self._now, message, mode="fail", attempts=attempts
            )
        elif purpose == "fallback":
            self.scheduler.node_failed(
                work.node, self._now, message, mode="fail", attempts=attempts
            )
            assert work.invoker is not None
            original = self.scheduler.states[work.invoker]
            self.scheduler.node_failed(
                work.invoker, self._now, work.error or "", mode="fail", attempts=original.attempts
            )
            self._set_fatal(work.invoker, f"{work.error}; fallback failed: {message}")
        else:
            self._node_failed(self.plan.nodes[work.node], message, attempts)

    def _cancelled(self, work: Work) -> None:
        if work.purpose == "notification":
            return
        if work.purpose == "item":
            self._item_ended(work, None, 0, None, None, cancelled=True)
        elif work.purpose == "batch":
            self._batch_ended(work, None, None, cancelled=True)
        else:
            self.scheduler.node_cancelled(work.node, self._now)
            if work.purpose == "fallback" and work.invoker is not None:
                self.scheduler.node_cancelled(work.invoker, self._now)

    def _node_failed(self, node: PlanNode, message: str, attempts: int) -> None:
        """A node failed after its retries: apply its ``on_error``."""
        on_error = node.on_error
        if on_error == "continue":
            self.scheduler.node_failed(
                node.id, self._now, message, mode="continue", attempts=attempts
            )
        elif on_error == "pause" and self.phase != "winding_down":
            self.scheduler.node_failed(node.id, self._now, message, mode="pause", attempts=attempts)
            self.attention[node.id] = "error"
        elif node.fallback is not None and self.phase != "winding_down":
            self.scheduler.states[node.id].attempts = attempts
            self._invoke(node.fallback, "fallback", invoker=node.id, error=message)
        else:
            self.scheduler.node_failed(node.id, self._now, message, mode="fail", attempts=attempts)
            self._set_fatal(node.id, message)

    def _invoke(
        self, handler_id: str, purpose: HandlerPurpose, *, invoker: str | None, error: str
    ) -> None:
        """Run a handler node, with the failure and the invoking node in its scope. Each
        invocation has its own label (``handler``, ``handler~2``…) so none runs twice."""
        handler = self.plan.nodes[handler_id]
        count = self.invocations.get(handler_id, 0) + 1
        self.invocations[handler_id] = count
        label = handler_id if count == 1 else f"{handler_id}~{count}"
        scope = self._scope(handler, error=error, failed_node=invoker)
        self.scheduler.node_started(handler_id, self._now)
        self._start_unit(handler, label, scope, purpose, invoker=invoker, error=error)

    def _set_fatal(self, node_id: str | None, message: str) -> None:
        if self.fatal is None:
            self.fatal = (node_id, message)
        self._wind_down()

    # -- foreach ---------------------------------------------------------------------------

    def _start_foreach(self, node: PlanNode, scope: dict[str, Any]) -> None:
        batch = self.batch
        if batch is not None:
            items: Any = list(batch.items)
            offset, concurrency, fail_fast = batch.start, batch.concurrency, batch.fail_fast
        else:
            try:
                items = evaluate(node.foreach, scope)
            except ExpressionError as e:
                self._node_failed(node, f"node {node.id!r}: {e.message}", 0)
                return
            if not isinstance(items, list):
                self._node_failed(
                    node, f"node {node.id!r}: foreach must give a list, got {_kind(items)}", 0
                )
                return
            offset = 0
            concurrency = node.concurrency or DEFAULT_FOREACH_CONCURRENCY
            fail_fast = node.on_error not in ("continue", "pause")
        size = node.batch_size or DEFAULT_BATCH_SIZE
        batched = batch is None and len(items) > size
        state = Foreach(
            node=node.id,
            items=items,
            scope=scope,
            concurrency=concurrency,
            results=[None] * len(items),
            batch_size=size if batched else None,
            fail_fast=fail_fast,
            offset=offset,
        )
        if batched:
            children = min(math.ceil(len(items) / size), max(1, concurrency // CHILDREN_SHARE))
            state.child_concurrency = max(1, math.ceil(concurrency / children))
            state.concurrency = children
            state.pending.extend(_chunks(0, len(items), size))
        else:
            state.pending.extend((i, i + 1) for i in range(offset, offset + len(items)))
        self.foreach[node.id] = state
        self._foreach_settle(state)

    def _foreach_launch(self, state: Foreach) -> None:
        node = self.plan.nodes[state.node]
        while (
            state.pending
            and state.failure is None
            and not state.budget_stop
            and len(state.running) < state.concurrency
            and self._in_flight < MAX_IN_FLIGHT
            and self.phase == "running"
        ):
            first, end = state.pending.popleft()
            if state.batch_size is None:
                label = f"{node.id}[{first}]"
                state.running[label] = (first, end)
                item = state.items[first - state.offset]
                self._start_unit(
                    node, label, {**state.scope, "item": item, "index": first}, "item", item=first
                )
            else:
                state.batches_started += 1
                label = f"{node.id}#batch{state.batches_started}"
                state.running[label] = (first, end)
                self._start_batch(node, state, label, first, end)

    def _start_batch(
        self, node: PlanNode, state: Foreach, label: str, first: int, end: int
    ) -> None:
        work = Work(label=label, node=node.id, kind="child", purpose="batch", span=(first, end))
        self._add(work)
        rerun = self.reruns.get(node.id, 0)
        suffix = f"~{rerun}" if rerun else ""
        self._out.append(
            StartChild(
                label=label,
                node=node.id,
                workflow_id=f"{self.identity.workflow_id}-{label.replace('#', '-')}{suffix}",
                input=RunInput(
                    plan=_batch_plan(self.plan, node),
                    history_limit=self.history_limit,
                    origin=self.origin,
                    batch=BatchInput(
                        node=node.id,
                        items=state.items[first:end],
                        start=first,
                        scope=state.scope,
                        concurrency=state.child_concurrency,
                        fail_fast=state.fail_fast,
                    ),
                ),
                task_queue=node.task_queue or self.identity.task_queue,
                summary=f"{node.summary} items {first}-{end - 1}",
            )
        )

    def _item_ended(
        self,
        work: Work,
        output: Any,
        attempts: int,
        usage: dict[str, Any] | None,
        error: str | None,
        *,
        cancelled: bool = False,
    ) -> None:
        state = self.foreach.get(work.node)
        if state is None or work.item is None:
            return
        state.running.pop(work.label, None)
        state.attempts = max(state.attempts, attempts)
        state.usage = _add_usage(state.usage, usage)
        index = work.item
        if cancelled:
            state.errors.setdefault(index, "cancelled")
        elif error is not None:
            self._item_failed(state, index, error)
        else:
            state.errors.pop(index, None)
            state.results[index - state.offset] = output
        self._foreach_settle(state)

    def _item_failed(self, state: Foreach, index: int, error: str) -> None:
        state.errors[index] = error
        state.results[index - state.offset] = {"error": error}
        if state.fail_fast and state.failure is None:
            # TaskGroup semantics: the first failure cancels the items still running.
            state.failure = error
            for label in list(state.running):
                self._cancel(label)

    def _batch_ended(
        self, work: Work, output: Any, error: str | None, *, cancelled: bool = False
    ) -> None:
        state = self.foreach.get(work.node)
        if state is None:
            return
        state.running.pop(work.label, None)
        first, end = work.span or (0, 0)
        if cancelled:
            for index in range(first, end):
                state.errors.setdefault(index, "cancelled")
        elif error is not None:
            for index in range(first, end):
                self._item_failed(state, index, error)
        else:
            outputs = output.get("outputs", {}) if isinstance(output, dict) else {}
            results = outputs.get("results") or []
            for shift, value in enumerate(results[: end - first]):
                state.results[first + shift] = value
            state.attempts = max(state.attempts, int(outputs.get("attempts") or 0))
            state.usage = _add_usage(state.usage, outputs.get("usage"))
            if outputs.get("references"):
                self.ref_nodes.add(work.node)
            self._spend(work.node, outputs.get("usage"))
            errors = outputs.get("errors") or {}
            for key in sorted(errors, key=int):
                message = str(errors[key])
                if message == "cancelled":
                    state.errors.setdefault(int(key), message)
                else:
                    self._item_failed(state, int(key), message)
        self._foreach_settle(state)

    def _foreach_settle(self, state: Foreach) -> None:
        """End the foreach node once nothing of it runs and nothing more will start."""
        if self.foreach.get(state.node) is not state:
            return  # settled already (a cancelled sibling ended it)
        if state.running or (state.pending and state.failure is None and not state.budget_stop):
            return
        node = self.plan.nodes[state.node]
        del self.foreach[state.node]
        failed = sorted(i for i, e in state.errors.items() if e != "cancelled")
        attempts = state.attempts
        if self.batch is not None:
            # A batch reports every item to its parent, which decides.
            self.batch_outputs = {
                "results": state.results,
                "errors": {str(i): e for i, e in sorted(state.errors.items())},
                "attempts": attempts,
                "usage": state.usage,
                "failure": state.failure,
                "references": node.id in self.ref_nodes,
            }
            self.scheduler.node_completed(node.id, self._now, None, attempts=attempts)
            return
        if state.stopped and not failed:
            self.scheduler.node_cancelled(node.id, self._now)
            return
        if state.budget_stop and self.batch is None and self.phase != "winding_down":
            message = _item_message(node, failed[0], state.errors[failed[0]])
            self.scheduler.node_failed(node.id, self._now, message, mode="pause", attempts=attempts)
            self.scheduler.states[node.id].output = state.results
            left = [first for first, _ in state.pending]
            state.pending = deque((i, i + 1) for i in sorted({*failed, *left}))
            state.budget_stop = False
            self.paused_foreach[node.id] = state
            self.attention[node.id] = "budget"
            return
        if state.failure is not None or (failed and node.on_error not in ("continue", "pause")):
            first = failed[0] if failed else 0
            message = _item_message(node, first, state.errors.get(first, "cancelled"))
            self.scheduler.states[node.id].output = None
            self._node_failed(node, message, attempts)
            return
        if not failed:
            self.scheduler.node_completed(
                node.id, self._now, state.results, attempts=attempts, usage=state.usage
            )
            if node.compensate:
                self.compensations.append(node.id)
            return
        message = _item_message(node, failed[0], state.errors[failed[0]])
        if len(failed) > 1:
            message += f" (and {len(failed) - 1} more of {len(state.items)} items)"
        if node.on_error == "continue" or self.phase == "winding_down":
            self.scheduler.node_failed(
                node.id,
                self._now,
                message,
                mode="continue",
                attempts=attempts,
                output=state.results,
            )
            return
        # on_error: pause — an operator's retry runs the failed items again.
        self.scheduler.node_failed(node.id, self._now, message, mode="pause", attempts=attempts)
        self.scheduler.states[node.id].output = state.results
        state.pending = deque((i, i + 1) for i in failed)
        self.paused_foreach[node.id] = state
        self.attention[node.id] = "error"

    # -- waits, events, approvals ----------------------------------------------------------

    def _timer_fired(self, label: str) -> None:
        work = self.work.get(label)
        if work is None or work.deadline is None or work.kind not in _WAITS:
            return
        del self.work[label]
        self._unwait(work)
        if work.kind == "timer":
            since = _parse(work.waiting_since or work.deadline)
            waited = (_parse(work.deadline) - since).total_seconds()
            self._completed(work, {"waited_seconds": max(waited, 0.0)}, 1, None)
            return
        if work.kind == "approval" and work.on_timeout in ("approve", "reject"):
            answer = Approve(
                node=work.node,
                approved=work.on_timeout == "approve",
                comment="no answer before the timeout",
            )
            self._approval_result(work, answer)
            return
        what = f"event {work.event!r}" if work.kind == "event" else "approval"
        on_timeout = work.on_timeout if work.kind == "event" else "fail"
        if on_timeout == "continue":
            self._completed(work, None, 1, None)
        elif on_timeout == "skip" and work.purpose == "node":
            self.scheduler.skip_now(work.node, self._now, reason=f"timed out waiting for {what}")
        else:
            self._failed(work, f"node {work.label!r}: timed out waiting for {what}", 1)

    def _unwait(self, work: Work) -> None:
        if work.purpose != "item" and self.scheduler.status(work.node) == NodeStatus.WAITING:
            self.scheduler.node_waiting(work.node, self._now, False)

    def _match_events(self) -> None:
        for work in [w for w in self.work.values() if w.kind == "event"]:
            for event in self.events:
                if (
                    event.name == work.event
                    and (work.correlation is None or event.correlation == work.correlation)
                    and self._passes_filters(work, event)
                ):
                    self.events.remove(event)
                    self._end_wait(work)
                    output = {
                        "name": event.name,
                        "payload": event.payload,
                        "correlation": event.correlation,
                    }
                    self._completed(work, output, 1, None)
                    break

    def _passes_filters(self, work: Work, event: Event) -> bool:
        node = self.plan.nodes.get(work.node)
        if node is None or not node.filters:
            return True
        scope = {
            **self._scope(node),
            "event": {
                "name": event.name,
                "payload": event.payload,
                "correlation": event.correlation,
            },
        }
        try:
            return all(truthy(evaluate(f, scope)) for f in node.filters)
        except ExpressionError:
            return False  # an event a filter cannot read (a missing field) is not this node's

    def _answer(self, answer: Approve) -> None:
        work = self.work.get(answer.node)
        if work is None or work.kind != "approval":
            return
        self._end_wait(work)
        self._approval_result(work, answer)

    def _approval_result(self, work: Work, answer: Approve) -> None:
        if work.review is not None:
            if not answer.approved:
                who = f" by {answer.by}" if answer.by else ""
                why = f": {answer.comment}" if answer.comment else ""
                self._failed(work, f"node {work.label!r}: answer rejected{who}{why}", work.attempts)
                return
            self._completed(work, _reviewed(work.review, answer), work.attempts, work.usage)
            return
        if not answer.approved and work.on_reject == "fail":
            reason = f": {answer.comment}" if answer.comment else ""
            self._failed(work, f"node {work.node!r}: rejected{reason}", 1)
            return
        output = {"approved": answer.approved, "comment": answer.comment, "by": answer.by}
        self._completed(work, output, 1, None)

    def _end_wait(self, work: Work) -> None:
        """A wait ended before its timer: drop it, and cancel the timer."""
        self.work.pop(work.label, None)
        if work.deadline is not None:
            self._out.append(CancelWork(work.label))
        self._unwait(work)

    def _review(
        self,
        work: Work,
        review: dict[str, Any],
        output: Any,
        attempts: int,
        usage: dict[str, Any] | None,
    ) -> None:
        """The activity asks a person to confirm its answer: the node waits like an approval."""
        work.kind = "approval"
        work.review = {"proposed": output, **review}
        work.message = str(review.get("message") or "")
        work.approvers = list(review.get("approvers") or [])
        work.attempts, work.usage = attempts, usage
        self._wait(work)

    # -- budgets -----------------------------------------------------------------------------

    def _spend(self, node_id: str, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        tokens = int(usage.get("total_tokens") or 0) or int(usage.get("prompt_tokens") or 0) + int(
            usage.get("completion_tokens") or 0
        )
        usd = float(usage.get("cost_usd") or 0.0)
        self.spent_tokens += tokens
        self.spent_usd += usd
        before = self.node_spent.get(node_id, (0, 0.0))
        self.node_spent[node_id] = (before[0] + tokens, before[1] + usd)

    def _budget_left(self, node: PlanNode) -> BudgetLeft | None:
        """What ``node`` may still spend: the least of the run's and its own budget."""
        tokens: int | None = None
        usd: float | None = None
        run = self.plan.budget
        if run is not None:
            if run.tokens is not None:
                tokens = run.tokens + self.added_tokens - self.spent_tokens
            if run.cost_usd is not None:
                usd = run.cost_usd + self.added_usd - self.spent_usd
        own = node.budget
        if own is not None:
            node_tokens, node_usd = self.node_spent.get(node.id, (0, 0.0))
            if own.tokens is not None:
                left = own.tokens + self.added_tokens - node_tokens
                tokens = left if tokens is None else min(tokens, left)
            if own.cost_usd is not None:
                left_usd = own.cost_usd + self.added_usd - node_usd
                usd = left_usd if usd is None else min(usd, left_usd)
        if tokens is None and usd is None:
            return None
        return BudgetLeft(tokens=tokens, cost_usd=round(usd, 6) if usd is not None else None)

    def _spend_text(self) -> str:
        parts = [f"{self.spent_tokens} tokens"]
        if self.spent_usd:
            parts.append(f"${self.spent_usd:.4f}")
        return " and ".join(parts) + " spent"

    def _budget_stopped(self, work: Work, message: str, attempts: int) -> None:
        """A node would spend more than its budget: it waits for an operator's decision."""
        if work.purpose == "item":
            state = self.foreach.get(work.node)
            if state is not None and work.item is not None:
                # Stop starting items; those running finish; the node waits for an operator.
                state.budget_stop = True
                state.running.pop(work.label, None)
                state.errors[work.item] = message
                state.results[work.item - state.offset] = {"error": message}
                self._foreach_settle(state)
            return
        if work.purpose != "node" or self.phase == "winding_down":
            self._failed(work, message, attempts)
            return
        self.scheduler.node_failed(work.node, self._now, message, mode="pause", attempts=attempts)
        self.attention[work.node] = "budget"

    def _raise_budget(self, tokens: int, usd: float, by: str | None) -> None:
        self.added_tokens += tokens
        self.added_usd += usd
        who = f" by {by}" if by else ""
        detail = f"+{tokens} tokens, +${usd:g}{who}"
        self.scheduler.note(self._now, "budget raised", detail)
        for node_id, why in list(self.attention.items()):
            if why == "budget":
                del self.attention[node_id]
                self.reruns[node_id] = self.reruns.get(node_id, 0) + 1
                self.scheduler.retry(node_id, self._now)

    # -- lifecycle notifications and observers ---------------------------------------------

    def _notify(self, event: str) -> None:
        """Send the run's ``event`` to the definition's notification channels that want it."""
        for channel in self.plan.notifications:
            if event not in channel.on:
                continue
            self.notified += 1
            label = f"notify#{self.notified}"
            data = {**self._run_data(), "event": event, "status": self.status}
            if self.fatal is not None:
                data["error"] = self.fatal[1]
            if event in ("needs_attention", "budget"):
                data["nodes"] = sorted(self.scheduler.needs_attention)
            work = Work(label=label, node="", kind="activity", purpose="notification")
            self._add(work)
            self._out.append(
                StartActivity(
                    label=label,
                    node=None,
                    activity_id=label,
                    input=NodeInput(
                        node_id=label,
                        config={
                            "channel": {"type": channel.type, "config": channel.config},
                            "event": data,
                        },
                        origin=self.origin,
                    ),
                    activity_type="notify.lifecycle",
                )
            )

    def _run_data(self) -> dict[str, Any]:
        return {
            "workflow_id": self.identity.workflow_id,
            "run_id": self.identity.run_id,
            "definition": self.plan.name,
            "version": self.plan.version,
            "slug": self.plan.slug,
        }

    def _observe_transitions(self) -> None:
        history = self.scheduler.history
        for transition in history[self._observed :]:
            if transition.node is None:
                continue
            if transition.status == NodeStatus.RUNNING:
                event = "node_started"
            elif transition.status in ENDED or transition.status == NodeStatus.NEEDS_ATTENTION:
                event = "node_ended"
            else:
                continue
            node = self.plan.nodes.get(transition.node)
            data = {
                **self._run_data(),
                "node": transition.node,
                "type": node.type if node else "",
                "status": str(transition.status),
                "at": transition.at,
            }
            if event == "node_ended":
                state = self.scheduler.states[transition.node]
                data["attempts"] = state.attempts
                data["error"] = state.error
            self._out.append(Observe(event, data))
        self._observed = len(history)

    # -- operator fail -----------------------------------------------------------------------

    def _operator_fail(self, node_id: str, reason: str | None, by: str | None) -> None:
        who = f" ({by})" if by else ""
        why = f": {reason}" if reason else ""
        message = f"node {node_id!r} failed by an operator{who}{why}"
        self.paused_foreach.pop(node_id, None)
        state = self.scheduler.states[node_id]
        if state.status == NodeStatus.NEEDS_ATTENTION:
            # The node keeps its own failure; the run says who gave up on it.
            state.error = (
                f"{state.error}; failed by an operator{who}{why}" if state.error else message
            )
            self.scheduler.give_up(node_id, self._now)
            self._set_fatal(node_id, message)
            return
        for work in [w for w in self.work.values() if w.node == node_id]:
            self._end_wait(work)
        self.scheduler.node_failed(
            node_id, self._now, message, mode="fail", attempts=state.attempts
        )
        self._set_fatal(node_id, message)

    # -- ending the run ----------------------------------------------------------------------

    def _wind_down(self) -> None:
        """Stop everything in flight; compensation and on_failure follow once it has stopped."""
        if self.phase in ("winding_down", "ended"):
            return
        self.phase = "winding_down"
        self.paused_foreach.clear()
        for state in self.foreach.values():
            if state.pending or state.running:
                state.stopped = True
            state.pending.clear()
        for label, work in list(self.work.items()):
            if work.purpose != "notification":
                self._cancel(label)
        for state in list(self.foreach.values()):
            self._foreach_settle(state)

    def _cancel(self, label: str) -> None:
        work = self.work.get(label)
        if work is None or work.cancelling:
            return
        if work.kind in ("activity", "child"):
            work.cancelling = True
            self._out.append(CancelWork(label))
            return
        del self.work[label]  # a wait inside the workflow stops at once
        if work.deadline is not None:
            self._out.append(CancelWork(label))
        self._unwait(work)
        self._cancelled(work)

    def _wind_down_step(self) -> None:
        """Once nothing runs: cancel what never ran, then the handlers one at a time."""
        if any(w.purpose != "notification" for w in self.work.values()):
            return
        if not self.steps_planned:
            self.steps_planned = True
            for node_id in self.scheduler.pending_nodes():
                if self.scheduler.status(node_id) not in (NodeStatus.RUNNING, NodeStatus.WAITING):
                    self.scheduler.node_cancelled(node_id, self._now)
            failed_node = self.fatal[0] if self.fatal else None
            for node_id in reversed(self.compensations):
                handler = self.plan.nodes[node_id].compensate
                if handler:
                    self.steps.append(
                        Step(handler=handler, purpose="compensation", invoker=node_id)
                    )
            for handler in self.plan.on_failure:
                self.steps.append(Step(handler=handler, purpose="on_failure", invoker=failed_node))
        error = self.fatal[1] if self.fatal else "run cancelled"
        while self.steps and not self._handler_running():
            step = self.steps.popleft()
            self._invoke(step.handler, step.purpose, invoker=step.invoker, error=error)
        if self._handler_running():
            return
        if self.fatal is None:
            self._end("cancelled", CancelRun(self.report()))
        else:
            self._end("failed", FailRun(self.fatal[1], self.report()))

    def _handler_running(self) -> bool:
        return any(w.purpose != "notification" for w in self.work.values())

    def _end(self, status: RunStatusName, outcome: RunCommand) -> None:
        """End with ``outcome`` once the lifecycle notifications of ``status`` are sent."""
        self._set_status(status)
        outcome = _with_status(outcome, status)  # the report was made before the status was final
        before = self.notified
        if self.batch is None:
            self._notify(status)
        if self.observe:
            if self.observe_nodes:
                self._observe_transitions()
            data = {**self._run_data(), "status": status}
            data["error"] = self.fatal[1] if self.fatal else None
            self._out.append(Observe("run_ended", data))
        if self.notified > before or self.work:
            self.phase = "finishing"
            self._final = outcome
            return
        self._finish(outcome)

    def _finish(self, outcome: RunCommand) -> None:
        self.phase = "ended"
        self.outcome = outcome
        self._final = None
        self._out.append(outcome)

    # -- settling after every event --------------------------------------------------------

    def _settle(self) -> list[RunCommand]:
        """Start what may start and end the run if it is over; return the commands, the
        status upsert first (it describes the state the other commands leave)."""
        if self.phase == "running":
            self._pump()
        if self.phase == "winding_down":
            self._wind_down_step()
        elif self.phase in ("running", "draining") and self._finished():
            self._complete()
        if self.phase == "finishing" and not self.work and self._final is not None:
            self._finish(self._final)
        if self.phase in ("running", "draining"):
            self._refresh_status()
        if self.observe_nodes:
            self._observe_transitions()
        out = [*self._status_out, *self._out]
        self._status_out, self._out = [], []
        return out

    def _pump(self) -> None:
        """Start ready nodes and foreach items while the in-flight budget allows."""
        if self.scheduler.paused:
            return
        while self.phase == "running":
            for state in list(self.foreach.values()):
                self._foreach_launch(state)
            room = MAX_IN_FLIGHT - self._in_flight
            if room <= 0 or not self.scheduler.has_ready():
                return
            for node_id in self.scheduler.take_ready(room):
                self._start_node(node_id)

    def _finished(self) -> bool:
        return self.scheduler.finished and not self.work and not self.foreach

    def _complete(self) -> None:
        if self.batch is not None:
            report = self.report().model_copy(update={"outputs": self.batch_outputs or {}})
            self._end("completed", CompleteRun(report))
            return
        try:
            outputs = evaluate(self.plan.outputs, self._scope_for(self.plan.outputs_references))
        except ExpressionError as e:
            self.fatal = (None, f"outputs: {e.message}")
            self._end("failed", FailRun(self.fatal[1], self.report()))
            return
        report = self.report(outputs if isinstance(outputs, dict) else {})
        self._end("completed", CompleteRun(report))

    # -- status ----------------------------------------------------------------------------

    def _refresh_status(self) -> None:
        scheduler = self.scheduler
        status: RunStatusName
        if scheduler.paused:
            status = "paused"
        elif scheduler.needs_attention:
            status = "needs_attention"
        elif self._waiting_only():
            status = "waiting"
        else:
            status = "running"
        self._set_status(status)

    def _waiting_only(self) -> bool:
        # Work is activities and children (counted in flight) or waits: O(1), every event.
        return bool(self.work) and not self._in_flight and not self.scheduler.has_ready()

    def _set_status(self, status: RunStatusName) -> None:
        if status == self.status:
            return
        self.status = status
        # Plain runs never upsert (no extra history events); once a run has shown a state
        # that Temporal's ExecutionStatus cannot express, TideflowStatus is kept current.
        if self.status_upserted or status in ("paused", "waiting", "needs_attention"):
            self.status_upserted = True
            self._status_out.append(UpsertStatus(status))
        if status == "needs_attention" and self.batch is None:
            budget = "budget" in self.attention.values()
            self._notify("budget" if budget else "needs_attention")

    # -- scope -----------------------------------------------------------------------------

    def _scope(
        self, node: PlanNode, *, error: str | None = None, failed_node: str | None = None
    ) -> dict[str, Any]:
        """What the node's expressions may read: only the nodes they name."""
        if self.batch is not None:
            return dict(self.batch.scope)
        scope = self._scope_for(node.references)
        if node.handler:
            scope["error"] = error
            scope["failed_node"] = failed_node
        return scope

    def _scope_for(self, refs: References) -> dict[str, Any]:
        ids = self.scheduler.states if refs.all_nodes else refs.nodes
        scope: dict[str, Any] = {
            "inputs": self.inputs,
            "vars": self.vars,
            "nodes": {i: self._node_view(i) for i in ids if i in self.scheduler.states},
            "run": self._run_view(),
        }
        if self.ref_nodes:
            stored = self.ref_nodes if refs.all_nodes else self.ref_nodes & refs.nodes
            if stored:
                scope[SCOPE_MARK] = frozenset(stored)
        return scope

    def _code_scope(self, node: PlanNode, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope of a node running user code: the nodes its code names (every ended node
        when it picks them at run time), never more."""
        if self.batch is not None:
            return scope
        refs = node.code_references
        states = self.scheduler.states
        if refs is None:
            views = {i: self._node_view(i) for i, s in states.items() if s.status in ENDED}
        else:
            named = sorted(refs.nodes | node.references.nodes)
            views = {i: self._node_view(i) for i in named if i in states}
        return {**{k: v for k, v in scope.items() if k != SCOPE_MARK}, "nodes": views}

    def _node_view(self, node_id: str) -> dict[str, Any]:
        state = self.scheduler.states[node_id]
        return {
            "output": state.output,
            "status": state.status.value,
            "error": state.error,
            "attempts": state.attempts,
        }

    def _run_view(self) -> dict[str, Any]:
        return {
            "id": self.identity.workflow_id,
            "run_id": self.identity.run_id,
            "started_at": self.started_at,
            "definition": self.plan.name,
            "version": self.plan.version,
        }

    # -- state and report ------------------------------------------------------------------

    def waiting(self) -> dict[str, str]:
        """Unit label → what it waits for (``timer``, ``event:<name>``, ``approval``)."""
        out: dict[str, str] = {}
        for work in self.work.values():
            if work.kind == "timer":
                out[work.label] = "timer"
            elif work.kind == "event":
                out[work.label] = f"event:{work.event}"
            elif work.kind == "approval":
                out[work.label] = "approval"
        return out

    def state(self) -> RunState:
        """The live view the ``state`` query answers."""
        scheduler = self.scheduler
        return RunState(
            status=self.status,
            nodes={i: s.status.value for i, s in scheduler.states.items()},
            attempts={i: s.attempts for i, s in scheduler.states.items() if s.attempts},
            running=sorted(scheduler.active),
            needs_attention=sorted(scheduler.needs_attention),
            waiting=self.waiting(),
            vars=self.vars,
            paused=scheduler.paused,
            history=[Transition(**t.__dict__) for t in scheduler.history],
            error=self.fatal[1] if self.fatal else None,
            waiting_events={
                w.label: AwaitedEvent(event=w.event or "", correlation=w.correlation)
                for w in self.work.values()
                if w.kind == "event"
            },
            approvals={
                w.label: PendingApproval(
                    kind="review" if w.review is not None else "approval",
                    message=w.message,
                    approvers=list(w.approvers),
                    proposed=(w.review or {}).get("proposed"),
                    options=(w.review or {}).get("options"),
                    details=(w.review or {}).get("details") or {},
                )
                for w in self.work.values()
                if w.kind == "approval"
            },
            attention={
                node: self.attention.get(node, "error")
                for node in sorted(scheduler.needs_attention)
            },
            budget=self._budget_report(),
        )

    def report(self, outputs: dict[str, Any] | None = None) -> RunReport:
        """The run report (final once the run has ended)."""
        usage = RunUsage()
        nodes: dict[str, NodeReport] = {}
        for node_id, state in self.scheduler.states.items():
            nodes[node_id] = NodeReport(
                status=state.status.value,
                attempts=state.attempts,
                started_at=state.started_at,
                ended_at=state.ended_at,
                output=state.output,
                error=state.error,
                usage=state.usage,
            )
            if state.usage:
                usage.prompt_tokens += int(state.usage.get("prompt_tokens") or 0)
                usage.completion_tokens += int(state.usage.get("completion_tokens") or 0)
                cost = state.usage.get("cost_usd")
                if cost is not None:
                    usage.cost_usd = (usage.cost_usd or 0.0) + float(cost)
        usage.ai_tokens = usage.prompt_tokens + usage.completion_tokens
        return RunReport(
            workflow_id=self.identity.workflow_id,
            run_id=self.identity.run_id,
            definition=DefinitionRef(name=self.plan.name, version=self.plan.version),
            status=self.status,
            outputs=outputs or {},
            error=self.fatal[1] if self.fatal else None,
            usage=usage,
            nodes=nodes,
            reused=list(self.reused),
            budget=self._budget_report(),
        )

    def _budget_report(self) -> BudgetReport | None:
        budget = self.plan.budget
        if budget is None and not any(n.budget for n in self.plan.nodes.values()):
            return None
        return BudgetReport(
            tokens=budget.tokens + self.added_tokens if budget and budget.tokens else None,
            cost_usd=round(budget.cost_usd + self.added_usd, 6)
            if budget and budget.cost_usd
            else None,
            spent_tokens=self.spent_tokens,
            spent_usd=round(self.spent_usd, 6),
        )

    def details(self) -> str:
        """The Web UI's current details (Markdown)."""
        scheduler = self.scheduler
        counts = {n: scheduler.count(NodeStatus(n)) for n in ("completed", "failed", "skipped")}
        lines = [
            f"**{self.status}** · {sum(counts.values())}/{len(scheduler.states)} nodes ended "
            f"({counts['completed']} completed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped)"
        ]
        running = sorted(scheduler.active)
        if running:
            shown = ", ".join(f"`{n}`" for n in running[:8])
            more = f" and {len(running) - 8} more" if len(running) > 8 else ""
            lines.append(f"running: {shown}{more}")
        if scheduler.needs_attention:
            attention = ", ".join(f"`{n}`" for n in sorted(scheduler.needs_attention))
            lines.append(f"needs attention: {attention}")
        waiting = self.waiting()
        if waiting:
            lines.append(
                "waiting: " + ", ".join(f"`{n}` ({w})" for n, w in sorted(waiting.items()))
            )
        for state in self.foreach.values():
            left = len(state.running) + sum(b - a for a, b in state.pending)
            lines.append(f"`{state.node}`: {len(state.items) - left}/{len(state.items)} items done")
        return "\n\n".join(lines)


_NO_SCOPE: dict[str, Any] = {}
"""The scope of a node that reads nothing (never changed)."""


class _BudgetStop(Exception):
    """A node would spend more than the budget allows."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Failure(Exception):
    """A unit failed before it could start (bad config, a fail node, a missing input)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- pure helpers -------------------------------------------------------------------------------


def _when(node: PlanNode, scope: dict[str, Any]) -> bool:
    if node.when is None or isinstance(node.when, bool):
        return node.when is not False
    return truthy(evaluate(node.when, scope))


def _reviewed(review: dict[str, Any], answer: Approve) -> Any:
    """A reviewed node's output: the proposed answer, or the reviewer's in its place."""
    proposed = review.get("proposed")
    field = review.get("field")
    if answer.output is None:
        output = proposed
    elif field and isinstance(proposed, dict):
        output = {**proposed, field: answer.output}
    else:
        output = answer.output
    if isinstance(output, dict):
        output = {
            **output,
            "review": {
                "by": answer.by,
                "comment": answer.comment,
                "changed": answer.output is not None and answer.output != proposed,
            },
        }
    return output


def _with_status(outcome: RunCommand, status: str) -> RunCommand:
    if isinstance(outcome, CompleteRun | FailRun | CancelRun):
        report = outcome.report.model_copy(update={"status": status})
        if isinstance(outcome, CompleteRun):
            return CompleteRun(report)
        if isinstance(outcome, FailRun):
            return FailRun(outcome.message, report)
        return CancelRun(report)
    return outcome


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _add_seconds(moment: str, seconds: float) -> str:
    when = _parse(moment) + timedelta(seconds=seconds)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", str: "a string", bool: "a boolean", int: "a number"}
    return names.get(type(value), type(value).__name__)


def _one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return "; ".join(parts)


def _item_message(node: PlanNode, index: int, error: str) -> str:
    return error if f"{node.id}[{index}]" in error else f"node {node.id!r} item {index}: {error}"


def _child_output(report: Any) -> Any:
    if isinstance(report, dict):
        return {
            "workflow_id": report.get("workflow_id"),
            "status": report.get("status"),
            "outputs": report.get("outputs"),
        }
    return report


def _chunks(first: int, end: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, end)) for i in range(first, end, size)]


def _runs(indices: list[int], size: int) -> list[tuple[int, int]]:
    """Consecutive runs of the indices, each at most ``size`` long."""
    out: list[tuple[int, int]] = []
    for index in sorted(indices):
        if out and out[-1][1] == index and index - out[-1][0] < size:
            out[-1] = (out[-1][0], index + 1)
        else:
            out.append((index, index + 1))
    return out


def _batch_plan(plan: Plan, node: PlanNode) -> dict[str, Any]:
    """The plan of a batch child: the foreach node alone, its settings resolved."""
    raw = {
        k: v
        for k, v in plan.raw_nodes[node.id].items()
        if k not in ("depends_on", "handler", "compensate", "when", "join")
    }
    if node.fallback is not None:
        raw.pop("on_error", None)  # the parent applies the fallback
    if node.task_queue:
        raw["task_queue"] = node.task_queue
    return {
        "format": plan.format,
        "name": plan.name,
        "version": plan.version,
        "slug": plan.slug,
        "nodes": [raw],
    }


def _add_usage(total: dict[str, Any] | None, usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if usage is None:
        return total
    if total is None:
        return dict(usage)
    out = dict(total)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        out[key] = int(out.get(key) or 0) + int(usage.get(key) or 0)
    if usage.get("cost_usd") is not None:
        out["cost_usd"] = float(out.get("cost_usd") or 0.0) + float(usage["cost_usd"])
    return out
