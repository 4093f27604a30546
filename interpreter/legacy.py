"""The first engine's workflow body (plan format 1), frozen.

Runs started by format-1 code carry their source definition, validated and compiled by the
worker, and their histories hold the commands that code gave, in its order. To replay them —
and go on with them after an upgrade, exactly as that code would have — the workflow hands
them to :class:`LegacyRun`, this module's unchanged copy of that code (only its Temporal
decorators are gone: :class:`interpreter.workflow.TideflowWorkflow` delegates to it). New runs
never come here, whatever format their input is (``workflow.patched`` tells them apart). Do not
change this module: a change can break the replay of a run in flight.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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

from interpreter.control import (
    Approve,
    ControlAnswer,
    Event,
    RetryNode,
    RunInput,
    SetVars,
    SkipNode,
)
from interpreter.expressions import (
    ExpressionError,
    References,
    compile_value,
    evaluate,
    references_of,
    truthy,
)
from interpreter.inputs import InputError, resolve_inputs, var_type_problem
from interpreter.model import Definition, Fallback, Node, OnError, RetrySpec
from interpreter.node_io import NodeInput, NodeResult
from interpreter.node_types import (
    RAW_CONFIG_KEYS,
    SCOPED_TYPES,
    WORKFLOW_TYPE_CONFIGS,
    WORKFLOW_TYPES,
    ApprovalConfig,
    WaitForEventConfig,
)
from interpreter.report import (
    DefinitionRef,
    NodeReport,
    RunReport,
    RunState,
    RunUsage,
    Transition,
)
from interpreter.scheduler import ENDED, GraphNode, NodeStatus, Scheduler
from interpreter.validate import DefinitionError

_WORKFLOW_NAME = "TideflowWorkflow"
MAX_IN_FLIGHT = 500
RUN_FAILED = "TideflowRunFailed"
STATUS_KEY = SearchAttributeKey.for_keyword("TideflowStatus")


def _load_data(data: object) -> Definition:
    from interpreter import load_data

    return load_data(data, "<workflow input>")


DEFAULT_TIMEOUT_SECONDS = 600.0
"""Start-to-close timeout of an activity node that sets none (Temporal requires one)."""
DEFAULT_HEARTBEAT_SECONDS = 60.0
"""Heartbeat timeout of an activity node that sets none: the registry heartbeats every few
seconds while a node runs, so a worker that dies mid-node is noticed after this long and the
node is retried elsewhere, instead of after the whole start-to-close timeout."""


@dataclass(frozen=True)
class PlanNode:
    """One node, ready to run."""

    id: str
    type: str
    name: str | None
    depends_on: tuple[str, ...]
    join: str
    handler: bool
    config: Any
    when: Any
    foreach: Any
    concurrency: int | None
    retry: RetrySpec
    timeout: float
    heartbeat_timeout: float | None
    task_queue: str | None
    on_error: OnError
    compensate: str | None
    cache_ttl: float | None
    references: References
    in_workflow: bool
    scoped: bool

    @property
    def summary(self) -> str:
        """How the node reads in the Temporal Web UI."""
        return f"{self.id} — {self.name}" if self.name else self.id


@dataclass(frozen=True)
class Plan:
    """A whole definition, compiled."""

    definition: Definition
    nodes: dict[str, PlanNode]
    outputs: Any
    outputs_references: References
    on_failure: tuple[str, ...]
    awaited_events: frozenset[str] | None
    """Event names ``wait_for_event`` nodes wait for (None: some name is an expression)."""


def compile_plan(definition: Definition) -> Plan:
    """Compile a validated definition (expressions must already have been checked)."""
    handlers = definition.handler_ids()
    nodes = {
        node.id: _plan_node(definition, node, node.id in handlers) for node in definition.graph()
    }
    outputs = compile_value(definition.outputs)
    events: set[str] | None = set()
    for node in nodes.values():
        if node.type == "wait_for_event" and events is not None:
            name = node.config.get("event") if isinstance(node.config, dict) else None
            events = events | {name} if isinstance(name, str) else None
    return Plan(
        definition=definition,
        nodes=nodes,
        outputs=outputs,
        outputs_references=references_of(outputs),
        on_failure=tuple(definition.error_handling.on_failure),
        awaited_events=frozenset(events) if events is not None else None,
    )


def _plan_node(definition: Definition, node: Node, handler: bool) -> PlanNode:
    defaults = definition.defaults
    raw = RAW_CONFIG_KEYS.get(node.type, frozenset())
    config = {k: v if k in raw else compile_value(v) for k, v in node.config.items()}
    when = compile_value(node.when) if isinstance(node.when, str) else node.when
    foreach = compile_value(node.foreach) if node.foreach is not None else None
    refs = references_of(config) | references_of(when) | references_of(foreach)
    on_error: OnError = node.on_error or definition.default_on_error()
    if isinstance(on_error, Fallback) and on_error.fallback == node.id:
        on_error = "fail"  # a fallback's own default fallback would be itself
    return PlanNode(
        id=node.id,
        type=node.type,
        name=node.name,
        depends_on=tuple(dict.fromkeys(node.depends_on)),
        join=node.join,
        handler=handler,
        config=config,
        when=when,
        foreach=foreach,
        concurrency=node.concurrency,
        retry=node.retry or definition.default_retry(),
        timeout=node.timeout or defaults.timeout or DEFAULT_TIMEOUT_SECONDS,
        heartbeat_timeout=(
            node.heartbeat_timeout or defaults.heartbeat_timeout or DEFAULT_HEARTBEAT_SECONDS
        ),
        task_queue=node.task_queue or defaults.task_queue or definition.task_queue,
        on_error=on_error,
        compensate=node.compensate,
        cache_ttl=node.cache.ttl if node.cache else None,
        references=refs,
        in_workflow=node.type in WORKFLOW_TYPES,
        scoped=node.type in SCOPED_TYPES,
    )


class _PlanCache:
    """Plans by the hash of their definition JSON, so a worker validates and compiles a
    definition once, not on every run and every replay. A plan is a pure function of its
    definition, so sharing it between runs cannot change what any run does."""

    def __init__(self, size: int = 64) -> None:
        self._plans: OrderedDict[str, tuple[Definition, Plan]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # workflow tasks run on several threads

    def get(self, data: dict[str, Any]) -> tuple[Definition, Plan]:
        """The validated definition and plan of ``data``; raises ``DefinitionError``."""

        key = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                return found
        definition = _load_data(data)
        made = (definition, compile_plan(definition))
        with self._lock:
            self._plans[key] = made
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return made


plans = _PlanCache()
"""The worker-wide plan cache the workflow uses."""


class NodeFailure(Exception):
    """A node ended in failure after its retries (or could not start: bad expression)."""

    def __init__(self, message: str, attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class _ApprovalState:
    def __init__(self) -> None:
        self.answer: Approve | None = None


class LegacyRun:
    """The first engine's workflow body, kept as it was: it replays the runs that format-1
    code started and continues them exactly as that code would have."""

    def __init__(self, input: RunInput) -> None:
        self._problem: str | None = None
        self._problem_type = "InvalidDefinition"
        self._definition: Definition | None = None
        self._plan: Plan | None = None
        self._inputs: dict[str, Any] = {}
        self._vars: dict[str, Any] = {}
        nodes: list[GraphNode] = []
        try:
            self._definition, self._plan = plans.get(input.definition or {})
            self._vars = dict(self._definition.vars)
            nodes = [
                GraphNode(n.id, n.depends_on, "any" if n.join == "any" else "all", n.handler)
                for n in self._plan.nodes.values()
            ]
            self._inputs = resolve_inputs(self._definition, input.inputs)
        except DefinitionError as e:
            self._problem = "invalid definition:\n" + "\n".join(str(p) for p in e.problems)
        except InputError as e:
            self._problem_type = "InvalidInputs"
            self._problem = "invalid inputs: " + "; ".join(e.problems)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._fatal: str | None = None
        self._fatal_node: str | None = None
        self._waiting: dict[str, str] = {}
        self._approvals: dict[str, _ApprovalState] = {}
        self._info = workflow.info()
        self._history_limit = input.history_limit
        self._draining = False
        self._details_due = False
        self._crash: Exception | None = None
        self._now_cache: tuple[datetime | None, str] = (None, "")
        resume = input.resume or {}
        self._resumed = bool(resume)
        self._scheduler = (
            Scheduler.restore(nodes, resume["scheduler"]) if resume else Scheduler(nodes)
        )
        self._vars = resume.get("vars", self._vars)
        self._events: list[Event] = [Event.model_validate(e) for e in resume.get("events", [])]
        self._compensations: list[str] = list(resume.get("compensations", []))
        self._reruns: dict[str, int] = dict(resume.get("reruns", {}))
        self._status: str = resume.get("status", "running")
        self._status_upserted: bool = resume.get("status_upserted", False)
        self._started_at: str = resume.get("started_at") or _iso(self._info.start_time)

    # -- the run ---------------------------------------------------------------------------

    async def run(self, input: RunInput) -> RunReport:
        """Run the graph to the end; a failed run raises with the report as failure detail."""
        if self._problem is not None or self._plan is None:
            problem = self._problem or "invalid definition"
            raise ApplicationError(problem, type=self._problem_type, non_retryable=True)
        if not self._resumed:
            self._scheduler.start(self._now())
        self._launch_ready()
        try:
            await workflow.wait_condition(
                lambda: (
                    self._fatal is not None
                    or self._crash is not None
                    or self._scheduler.finished
                    or (self._draining and not self._tasks)
                )
            )
            if self._crash is not None:
                raise self._crash
        except asyncio.CancelledError:
            await self._wind_down("run cancelled")
            self._set_status("cancelled")
            raise
        if self._draining and self._fatal is None and not self._scheduler.finished:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                RunInput(
                    definition=input.definition,
                    inputs=input.inputs,
                    history_limit=input.history_limit,
                    resume=self._snapshot(),
                )
            )
        if self._fatal is not None:
            await self._wind_down(self._fatal)
            return self._fail(self._fatal)
        try:
            outputs = self._outputs()
        except ExpressionError as e:
            return self._fail(f"outputs: {e.message}")
        self._set_status("completed")
        return self._report("completed", outputs=outputs)

    def _fail(self, error: str) -> RunReport:
        self._set_status("failed")
        report = self._report("failed", error=error)
        raise ApplicationError(error, report, type=RUN_FAILED, non_retryable=True)

    async def _wind_down(self, error: str) -> None:
        """Stop what runs, then compensate (newest first) and run the on_failure handlers."""
        for task in list(self._tasks.values()):
            if not task.done():
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        now = self._now()
        for node_id in self._scheduler.pending_nodes():
            if self._scheduler.status(node_id) not in (NodeStatus.RUNNING, NodeStatus.WAITING):
                self._scheduler.node_cancelled(node_id, now)
        failed_node = self._fatal_node
        for node_id in reversed(self._compensations):
            handler = self._plan_node(node_id).compensate
            if handler:
                await self._invoke_handler(handler, error, node_id)
        assert self._plan is not None
        for handler in self._plan.on_failure:
            await self._invoke_handler(handler, error, failed_node)

    # -- scheduling ----------------------------------------------------------------------------

    def _launch_ready(self) -> None:
        if self._fatal is not None:
            return
        if self._draining or self._history_is_long():
            # Start nothing new; once running nodes end, the run continues as new.
            self._draining = True
            self._refresh_status()
            return
        room = MAX_IN_FLIGHT - len(self._tasks)
        if room > 0:
            for node_id in self._scheduler.take_ready(room):
                self._tasks[node_id] = asyncio.create_task(self._run_node(node_id))
        self._refresh_status()

    async def _run_node(self, node_id: str) -> None:
        node = self._plan_node(node_id)
        try:
            scope = self._scope(node)
            if node.when is not None and not isinstance(node.when, bool):
                run_it = truthy(evaluate(node.when, scope))
            else:
                run_it = node.when is not False
            if not run_it:
                self._scheduler.skip_now(node_id, self._now(), reason="when is false")
                return
            self._scheduler.node_started(node_id, self._now())
            output, attempts, usage = await self._execute(node, scope)
            self._scheduler.node_completed(
                node_id, self._now(), output, attempts=attempts, usage=usage
            )
            if node.compensate:
                self._compensations.append(node_id)
        except asyncio.CancelledError:
            self._scheduler.node_cancelled(node_id, self._now())
        except _SkipNode as e:
            self._scheduler.skip_now(node_id, self._now(), reason=str(e))
        except ExpressionError as e:
            await self._node_failed(node, NodeFailure(f"node {node_id!r}: {e.message}"))
        except NodeFailure as e:
            await self._node_failed(node, e)
        except Exception as e:
            # A bug, not a node failure: surface it from the main task so the workflow task
            # fails and is retried (visible in the Web UI) instead of the node hanging unseen.
            self._crash = self._crash or e
        finally:
            self._tasks.pop(node_id, None)
            self._launch_ready()

    async def _node_failed(self, node: PlanNode, failure: NodeFailure) -> None:
        now = self._now()
        on_error = node.on_error
        if on_error == "continue":
            self._scheduler.node_failed(
                node.id, now, failure.message, mode="continue", attempts=failure.attempts
            )
        elif on_error == "pause":
            self._scheduler.node_failed(
                node.id, now, failure.message, mode="pause", attempts=failure.attempts
            )
        elif isinstance(on_error, Fallback):
            try:
                output = await self._invoke_handler(on_error.fallback, failure.message, node.id)
            except NodeFailure as e:
                self._scheduler.node_failed(
                    node.id, self._now(), failure.message, mode="fail", attempts=failure.attempts
                )
                self._set_fatal(node.id, f"{failure.message}; fallback failed: {e.message}")
                return
            self._scheduler.node_failed(
                node.id,
                self._now(),
                failure.message,
                mode="handled",
                attempts=failure.attempts,
                output=output,
            )
        else:
            self._scheduler.node_failed(
                node.id, now, failure.message, mode="fail", attempts=failure.attempts
            )
            self._set_fatal(node.id, failure.message)

    def _set_fatal(self, node_id: str, message: str) -> None:
        if self._fatal is None:
            self._fatal = message
            self._fatal_node = node_id

    async def _invoke_handler(self, handler_id: str, error: str, failed_node: str | None) -> Any:
        """Run a handler node once; raise NodeFailure if it fails. Compensation and on_failure
        failures are recorded on the handler and do not stop the other handlers."""
        node = self._plan_node(handler_id)
        scope = self._scope(node, error=error, failed_node=failed_node)
        self._scheduler.node_started(handler_id, self._now())
        try:
            output, attempts, usage = await self._execute(node, scope)
        except (NodeFailure, ExpressionError) as e:
            message = e.message
            self._scheduler.node_failed(handler_id, self._now(), message, mode="fail")
            if failed_node is not None and self._fatal is None:
                raise NodeFailure(message) from None
            return None
        self._scheduler.node_completed(
            handler_id, self._now(), output, attempts=attempts, usage=usage
        )
        return output

    def _history_is_long(self) -> bool:
        info = workflow.info()
        if self._history_limit is not None:
            return info.get_current_history_length() >= self._history_limit
        return info.is_continue_as_new_suggested()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "scheduler": self._scheduler.snapshot(),
            "vars": self._vars,
            "events": [e.model_dump(mode="json") for e in self._events],
            "compensations": self._compensations,
            "reruns": self._reruns,
            "status": self._status,
            "status_upserted": self._status_upserted,
            "started_at": self._started_at,
        }

    # -- executing one node ----------------------------------------------------------------------

    async def _execute(
        self, node: PlanNode, scope: dict[str, Any]
    ) -> tuple[Any, int, dict[str, Any] | None]:
        """Run a node (every item of a foreach): its output, attempts and AI usage."""
        if node.foreach is None:
            return await self._execute_once(node, scope, node.id)
        items = evaluate(node.foreach, scope)
        if not isinstance(items, list):
            raise NodeFailure(
                f"node {node.id!r}: foreach must give a list, got {type(items).__name__}"
            )
        limit = asyncio.Semaphore(node.concurrency or len(items) or 1)
        usage_total: dict[str, Any] | None = None
        attempts = 0

        async def one(index: int, item: Any) -> Any:
            nonlocal usage_total, attempts
            async with limit:
                item_scope = {**scope, "item": item, "index": index}
                output, tries, usage = await self._execute_once(
                    node, item_scope, f"{node.id}[{index}]"
                )
                attempts = max(attempts, tries)
                usage_total = _add_usage(usage_total, usage)
                return output

        outputs = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return list(outputs), attempts, usage_total

    async def _execute_once(
        self, node: PlanNode, scope: dict[str, Any], label: str
    ) -> tuple[Any, int, dict[str, Any] | None]:
        if node.in_workflow:
            return await self._in_workflow(node, scope, label), 1, None
        node_input = NodeInput(
            node_id=label,
            config=evaluate(node.config, scope),
            scope=self._full_scope(scope) if node.scoped else None,
            cache_ttl_seconds=node.cache_ttl,
        )
        rerun = self._reruns.get(node.id, 0)
        try:
            result = await workflow.execute_activity(
                node.type,
                node_input,
                result_type=NodeResult,
                activity_id=label if not rerun else f"{label}~{rerun}",
                summary=node.summary if label == node.id else f"{node.summary} {label}",
                task_queue=node.task_queue,
                start_to_close_timeout=timedelta(seconds=node.timeout),
                heartbeat_timeout=(
                    timedelta(seconds=node.heartbeat_timeout) if node.heartbeat_timeout else None
                ),
                retry_policy=_retry_policy(node.retry),
            )
        except ActivityError as e:
            if isinstance(e.cause, CancelledError):
                raise asyncio.CancelledError() from None  # the run cancelled it: not a failure
            raise NodeFailure(_activity_message(label, node, e), _attempts(e, node.retry)) from None
        usage = result.usage.model_dump() if result.usage else None
        return result.output, result.attempt, usage

    async def _in_workflow(self, node: PlanNode, scope: dict[str, Any], label: str) -> Any:
        kind = node.type
        config = evaluate(node.config, scope)
        model = WORKFLOW_TYPE_CONFIGS[kind]
        try:
            parsed = model.model_validate(config)
        except Exception as e:  # pydantic ValidationError after expressions were evaluated
            raise NodeFailure(f"node {label!r} ({kind}): bad config: {e}") from None
        if kind == "set":
            return self._set(node, config)
        if kind == "fail":
            raise NodeFailure(f"node {label!r}: {config.get('message', 'failed by a fail node')}")
        if kind == "input":
            missing = [f for f in config.get("required_fields", []) if f not in self._inputs]
            if missing:
                raise NodeFailure(f"node {label!r}: missing required input(s) {', '.join(missing)}")
            return {name: self._inputs[name] for name in config.get("required_fields", [])}
        if kind == "wait":
            return await self._wait(node, parsed)
        if kind == "wait_for_event":
            assert isinstance(parsed, WaitForEventConfig)
            return await self._wait_for_event(node, parsed)
        if kind == "approval":
            assert isinstance(parsed, ApprovalConfig)
            return await self._approval(node, parsed)
        if kind == "workflow":
            return await self._child(node, config, label)
        raise NodeFailure(f"node {label!r}: type {kind!r} cannot run inside the workflow")

    def _set(self, node: PlanNode, values: dict[str, Any]) -> dict[str, Any]:
        for name, value in values.items():
            problem = var_type_problem(self._definition_vars, name, value)
            if problem:
                raise NodeFailure(f"node {node.id!r}: {problem}")
        self._vars.update(values)
        return values

    async def _wait(self, node: PlanNode, config: Any) -> dict[str, Any]:
        if config.duration is not None:
            seconds = float(config.duration)
        else:
            try:
                until = datetime.fromisoformat(str(config.until).replace("Z", "+00:00"))
            except ValueError:
                raise NodeFailure(
                    f"node {node.id!r}: until {config.until!r} is not an ISO 8601 time"
                ) from None
            if until.tzinfo is None:
                until = until.replace(tzinfo=UTC)
            seconds = (until - workflow.now()).total_seconds()
        if seconds > 0:
            with self._waiting_on(node.id, "timer"):
                await workflow.sleep(seconds)
        return {"waited_seconds": max(seconds, 0.0)}

    async def _wait_for_event(self, node: PlanNode, config: WaitForEventConfig) -> Any:
        def match() -> Event | None:
            for event in self._events:
                if event.name == config.event and (
                    config.correlation is None or event.correlation == config.correlation
                ):
                    return event
            return None

        with self._waiting_on(node.id, f"event:{config.event}"):
            try:
                await workflow.wait_condition(lambda: match() is not None, timeout=config.timeout)
            except builtins.TimeoutError:
                return self._timed_out(node, config.on_timeout, f"event {config.event!r}")
        event = match()
        assert event is not None
        self._events.remove(event)
        return {"name": event.name, "payload": event.payload, "correlation": event.correlation}

    async def _approval(self, node: PlanNode, config: ApprovalConfig) -> Any:
        state = self._approvals.setdefault(node.id, _ApprovalState())
        state.answer = None
        with self._waiting_on(node.id, "approval"):
            try:
                await workflow.wait_condition(
                    lambda: state.answer is not None, timeout=config.timeout
                )
            except builtins.TimeoutError:
                if config.on_timeout in ("approve", "reject"):
                    state.answer = Approve(
                        node=node.id,
                        approved=config.on_timeout == "approve",
                        comment="no answer before the timeout",
                    )
                else:
                    return self._timed_out(node, "fail", "approval")
        answer = state.answer
        assert answer is not None
        output = {"approved": answer.approved, "comment": answer.comment, "by": answer.by}
        if not answer.approved and config.on_reject == "fail":
            reason = f": {answer.comment}" if answer.comment else ""
            raise NodeFailure(f"node {node.id!r}: rejected{reason}")
        return output

    def _timed_out(self, node: PlanNode, on_timeout: str, what: str) -> Any:
        if on_timeout == "continue":
            return None
        if on_timeout == "skip":
            raise _SkipNode(f"timed out waiting for {what}")
        raise NodeFailure(f"node {node.id!r}: timed out waiting for {what}")

    async def _child(self, node: PlanNode, config: dict[str, Any], label: str) -> Any:
        definition = config.get("definition")
        if not isinstance(definition, dict):
            raise NodeFailure(f"node {label!r}: the child definition was not inlined")
        try:
            report = await workflow.execute_child_workflow(
                _WORKFLOW_NAME,
                RunInput(definition=definition, inputs=config.get("inputs") or {}),
                id=f"{self._info.workflow_id}-{label}",
                task_queue=config.get("task_queue") or node.task_queue or self._info.task_queue,
                result_type=RunReport,
                static_summary=f"{node.summary} (child of {self._info.workflow_id})",
            )
        except ChildWorkflowError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, FailureError) else str(e)
            raise NodeFailure(f"node {label!r}: child run failed: {message}") from None
        return {
            "workflow_id": report.workflow_id,
            "status": report.status,
            "outputs": report.outputs,
        }

    # -- signals, updates, queries ----------------------------------------------------------------

    def pause(self) -> None:
        """Start nothing new until resumed; running nodes finish, timers keep counting."""
        self._scheduler.pause(self._now())
        self._refresh_status()

    def resume(self) -> None:
        """Start the nodes that became ready while paused."""
        self._scheduler.resume(self._now())
        self._launch_ready()

    def event(self, event: Event) -> None:
        """Deliver an event to a waiting (or later) ``wait_for_event`` node; events no node of
        this run waits for are dropped, so broadcasting an event costs runs nothing."""
        awaited = self._plan.awaited_events if self._plan else frozenset()
        if awaited is None or event.name in awaited:
            self._events.append(event)

    def skip_node(self, request: SkipNode) -> ControlAnswer:
        """Skip a pending or failed node; downstream nodes see ``output`` if given."""
        self._scheduler.skip(request.node, self._now(), request.output)
        self._launch_ready()
        status = self._scheduler.status(request.node).value
        later = "it will be skipped when it is reached" if status == "pending" else None
        return ControlAnswer(node=request.node, status=status, message=later)

    def _validate_skip(self, request: SkipNode) -> None:
        _reject_if(self._scheduler.skip_problem(request.node) if self._plan else "no graph")

    def retry_node(self, request: RetryNode) -> ControlAnswer:
        """Run a node that needs attention again; the graph resumes from it."""
        self._reruns[request.node] = self._reruns.get(request.node, 0) + 1
        self._scheduler.retry(request.node, self._now())
        self._launch_ready()
        return ControlAnswer(node=request.node, status=self._scheduler.status(request.node).value)

    def _validate_retry(self, request: RetryNode) -> None:
        _reject_if(self._scheduler.retry_problem(request.node) if self._plan else "no graph")

    def set_vars(self, request: SetVars) -> ControlAnswer:
        """Change vars; later ``when`` conditions and configs see the new values."""
        self._vars.update(request.values)
        return ControlAnswer(message=f"set {', '.join(sorted(request.values))}")

    def _validate_set_vars(self, request: SetVars) -> None:
        if not request.values:
            raise ValueError("no values given")
        for name, value in request.values.items():
            _reject_if(var_type_problem(self._definition_vars, name, value))

    def approve(self, request: Approve) -> ControlAnswer:
        """Approve or reject a waiting approval node."""
        self._approvals[request.node].answer = request
        return ControlAnswer(
            node=request.node, message="approved" if request.approved else "rejected"
        )

    def _validate_approve(self, request: Approve) -> None:
        if self._plan is None or request.node not in self._plan.nodes:
            raise ValueError(f"unknown node {request.node!r}")
        if self._plan.nodes[request.node].type != "approval":
            raise ValueError(f"{request.node!r} is not an approval node")
        state = self._approvals.get(request.node)
        if self._waiting.get(request.node) != "approval" or state is None or state.answer:
            raise ValueError(f"{request.node!r} is not waiting for an approval")

    def state(self) -> RunState:
        """The run's live state: status, per-node status and attempts, vars, history."""
        scheduler = self._scheduler
        return RunState(
            status=self._status,  # type: ignore[arg-type]  # (frozen module; the values are the same)
            nodes={i: s.status.value for i, s in scheduler.states.items()},
            attempts={i: s.attempts for i, s in scheduler.states.items() if s.attempts},
            running=sorted(scheduler.active),
            needs_attention=sorted(scheduler.needs_attention),
            waiting=dict(self._waiting),
            vars=self._vars,
            paused=scheduler.paused,
            history=[Transition(**t.__dict__) for t in scheduler.history],
            error=self._fatal,
        )

    def report(self) -> RunReport:
        """The run report so far (final once the run has ended)."""
        return self._report(self._status, error=self._fatal)

    # -- status, search attributes and Web UI details ------------------------------------------

    def _refresh_status(self) -> None:
        """Bring the run status and its search attribute up to date (at once: the upsert's
        place among the run's commands is part of its history), and the Web UI details once
        per workflow task, however many nodes changed in it."""
        scheduler = self._scheduler
        if self._fatal is not None or self._status in ("completed", "failed", "cancelled"):
            return
        if scheduler.paused:
            status = "paused"
        elif scheduler.needs_attention:
            status = "needs_attention"
        elif self._waiting and len(self._waiting) == len(scheduler.active):
            status = "waiting"
        else:
            status = "running"
        self._set_status(status)
        if not self._details_due:
            # The loop runs this after the task's other work, before the task completes.
            self._details_due = True
            asyncio.get_running_loop().call_soon(self._set_details)

    def _set_status(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        # Plain runs never upsert (no extra history events); once a run has shown a state
        # that ExecutionStatus cannot express, TideflowStatus is kept current to the end.
        if self._status_upserted or status in ("paused", "waiting", "needs_attention"):
            workflow.upsert_search_attributes([STATUS_KEY.value_set(status)])
            self._status_upserted = True

    def _set_details(self) -> None:
        self._details_due = False
        scheduler = self._scheduler
        counts: dict[str, int] = {}
        for name in ("completed", "failed", "skipped"):
            counts[name] = scheduler.count(NodeStatus(name))
        total = len(scheduler.states)
        running = sorted(scheduler.active)
        lines = [
            f"**{self._status}** · {sum(counts.values())}/{total} nodes ended "
            f"({counts['completed']} completed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped)"
        ]
        if running:
            shown = ", ".join(f"`{n}`" for n in running[:8])
            more = f" and {len(running) - 8} more" if len(running) > 8 else ""
            lines.append(f"running: {shown}{more}")
        if scheduler.needs_attention:
            lines.append(
                "needs attention: " + ", ".join(f"`{n}`" for n in sorted(scheduler.needs_attention))
            )
        if self._waiting:
            lines.append(
                "waiting: " + ", ".join(f"`{n}` ({w})" for n, w in sorted(self._waiting.items()))
            )
        workflow.set_current_details("\n\n".join(lines))

    class _Waiting:
        def __init__(self, owner: LegacyRun, node_id: str, what: str) -> None:
            self.owner, self.node_id, self.what = owner, node_id, what

        def __enter__(self) -> None:
            self.owner._waiting[self.node_id] = self.what
            self.owner._scheduler.node_waiting(self.node_id, self.owner._now(), True)
            self.owner._refresh_status()

        def __exit__(self, *exc: object) -> None:
            self.owner._waiting.pop(self.node_id, None)
            if self.owner._scheduler.status(self.node_id) == NodeStatus.WAITING:
                self.owner._scheduler.node_waiting(self.node_id, self.owner._now(), False)
            self.owner._refresh_status()

    def _waiting_on(self, node_id: str, what: str) -> LegacyRun._Waiting:
        return LegacyRun._Waiting(self, node_id, what)

    # -- scope and report ----------------------------------------------------------------------

    def _scope(
        self, node: PlanNode, *, error: str | None = None, failed_node: str | None = None
    ) -> dict[str, Any]:
        """What the node's expressions may read; only the nodes they name are included."""
        scope = self._scope_for(node.references)
        if node.handler:
            scope["error"] = error
            scope["failed_node"] = failed_node
        return scope

    def _scope_for(self, refs: References) -> dict[str, Any]:
        """The scope of expressions reading ``refs``: the nodes they name (all if dynamic)."""
        ids = self._scheduler.states if refs.all_nodes else refs.nodes
        return {
            "inputs": self._inputs,
            "vars": self._vars,
            "nodes": {i: self._node_view(i) for i in ids if i in self._scheduler.states},
            "run": self._run_view(),
        }

    def _full_scope(self, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope of nodes that run user code: every node that has ended is visible."""
        views = {
            node_id: self._node_view(node_id)
            for node_id, state in self._scheduler.states.items()
            if state.status in ENDED
        }
        return {**scope, "nodes": views}

    def _node_view(self, node_id: str) -> dict[str, Any]:
        state = self._scheduler.states[node_id]
        return {
            "output": state.output,
            "status": state.status.value,
            "error": state.error,
            "attempts": state.attempts,
        }

    def _run_view(self) -> dict[str, Any]:
        return {
            "id": self._info.workflow_id,
            "run_id": self._info.run_id,
            "started_at": self._started_at,
            "definition": self._definition_name,
            "version": self._definition_version,
        }

    def _outputs(self) -> dict[str, Any]:
        assert self._plan is not None
        outputs = evaluate(self._plan.outputs, self._scope_for(self._plan.outputs_references))
        return outputs if isinstance(outputs, dict) else {}

    def _report(
        self, status: str, *, outputs: dict[str, Any] | None = None, error: str | None = None
    ) -> RunReport:
        usage = RunUsage()
        nodes: dict[str, NodeReport] = {}
        for node_id, state in self._scheduler.states.items():
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
            workflow_id=self._info.workflow_id,
            run_id=self._info.run_id,
            definition=DefinitionRef(name=self._definition_name, version=self._definition_version),
            status=status,  # type: ignore[arg-type]  # (frozen module; the values are the same)
            outputs=outputs or {},
            error=error,
            usage=usage,
            nodes=nodes,
        )

    # -- small helpers ---------------------------------------------------------------------------

    @property
    def _definition_name(self) -> str:
        return (self._definition.display_name if self._definition else None) or ""

    @property
    def _definition_version(self) -> str:
        return self._definition.display_version if self._definition else ""

    @property
    def _definition_vars(self) -> dict[str, Any]:
        return self._definition.vars if self._definition else {}

    def _plan_node(self, node_id: str) -> PlanNode:
        assert self._plan is not None
        return self._plan.nodes[node_id]

    def _now(self) -> str:
        # The time only moves between workflow tasks: format it once per value.
        moment = workflow.now()
        if moment != self._now_cache[0]:
            self._now_cache = (moment, _iso(moment))
        return self._now_cache[1]


class _SkipNode(Exception):
    """A waiting node timed out with ``on_timeout: skip``."""


def _reject_if(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _retry_policy(spec: RetrySpec) -> RetryPolicy:
    coefficient = spec.backoff_coefficient or (2.0 if spec.backoff == "exponential" else 1.0)
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_interval),
        backoff_coefficient=coefficient,
        maximum_interval=timedelta(seconds=spec.max_interval) if spec.max_interval else None,
        maximum_attempts=spec.max_attempts,
        non_retryable_error_types=list(spec.non_retryable_errors) or None,
    )


def _activity_message(label: str, node: PlanNode, error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"node {label!r} ({node.type}): timed out ({kind})"
    if isinstance(cause, CancelledError):
        return f"node {label!r} ({node.type}): cancelled"
    if isinstance(cause, FailureError):
        return f"node {label!r} ({node.type}): {cause.message}"
    return f"node {label!r} ({node.type}): {error}"


def _attempts(error: ActivityError, retry: RetrySpec) -> int:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.details:
        detail = cause.details[0]
        if isinstance(detail, dict) and isinstance(detail.get("attempt"), int):
            return int(detail["attempt"])
    if error.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return retry.max_attempts
    return 1


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

    return None
