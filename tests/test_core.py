"""The run's core (interpreter/core.py) without Temporal: policies as unit tests, and properties
that must hold for any graph, any outcomes and any order of completion (hypothesis).

A small driver plays Temporal: it keeps what the core started, answers in an order hypothesis
chooses, and feeds the answers back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interpreter.commands import (
    CancelRun,
    CancelWork,
    CompleteRun,
    ContinueAsNew,
    FailRun,
    RunCommand,
    StartActivity,
    StartChild,
    StartTimer,
    UpsertStatus,
)
from interpreter.control import Approve, Event
from interpreter.core import MAX_IN_FLIGHT, RunCore, RunIdentity
from interpreter.events import (
    ApprovalAnswered,
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
    WorkCancelled,
    WorkCompleted,
    WorkFailed,
)
from interpreter.plan import load_plan
from interpreter.report import RunReport
from interpreter.scheduler import ENDED

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"
IDENTITY = RunIdentity("wf-1", "run-1", "tideflow")


def plan(*nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A format-2 plan of ``nodes`` (activities unless their type says otherwise)."""
    return {
        "format": 2,
        "name": "Test",
        "version": "1",
        "slug": "test",
        "nodes": list(nodes),
        **top,
    }


def act(node_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    """An activity node."""
    out: dict[str, Any] = {"id": node_id, "type": "t.act", **fields}
    if deps:
        out["depends_on"] = list(deps)
    return out


def core_of(data: dict[str, Any], inputs: dict[str, Any] | None = None) -> RunCore:
    return RunCore(load_plan(data), inputs or {}, IDENTITY, started_at=NOW)


@dataclass
class Driver:
    """Plays Temporal for a core: records what it starts and feeds answers back."""

    core: RunCore
    activities: dict[str, StartActivity] = field(default_factory=dict)
    children: dict[str, StartChild] = field(default_factory=dict)
    timers: dict[str, StartTimer] = field(default_factory=dict)
    cancelling: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)
    """Activity ids in the order they were scheduled."""
    upserts: list[str] = field(default_factory=list)
    commands: list[RunCommand] = field(default_factory=list)
    now: str = NOW

    def __post_init__(self) -> None:
        self.take(self.core.start(self.now))

    def take(self, commands: list[RunCommand]) -> None:
        self.commands.extend(commands)
        for command in commands:
            if isinstance(command, StartActivity):
                assert command.label not in self.activities, f"{command.label} started twice"
                self.activities[command.label] = command
                self.started.append(command.activity_id)
            elif isinstance(command, StartChild):
                self.children[command.label] = command
            elif isinstance(command, StartTimer):
                self.timers[command.label] = command
            elif isinstance(command, CancelWork):
                if command.label in self.timers:
                    del self.timers[command.label]
                else:
                    self.cancelling.add(command.label)
            elif isinstance(command, UpsertStatus):
                self.upserts.append(command.status)

    def feed(self, event: RunEvent) -> None:
        self.take(self.core.feed(event, self.now))

    def complete(self, label: str, output: Any = None, attempts: int = 1) -> None:
        self.activities.pop(label, None) or self.children.pop(label)
        self.cancelling.discard(label)
        self.feed(WorkCompleted(label, output, attempts))

    def fail(self, label: str, message: str = "boom", attempts: int = 1) -> None:
        self.activities.pop(label, None) or self.children.pop(label)
        self.cancelling.discard(label)
        self.feed(WorkFailed(label, message, attempts))

    def cancelled(self, label: str) -> None:
        self.activities.pop(label, None) or self.children.pop(label)
        self.cancelling.discard(label)
        self.feed(WorkCancelled(label))

    def fire(self, label: str) -> None:
        del self.timers[label]
        self.feed(TimerFired(label))

    def settle_cancellations(self) -> None:
        for label in sorted(self.cancelling):
            self.cancelled(label)

    @property
    def outcome(self) -> RunCommand | None:
        return self.core.outcome

    @property
    def report(self) -> RunReport:
        outcome = self.core.outcome
        assert isinstance(outcome, CompleteRun | FailRun | CancelRun), outcome
        return outcome.report

    def status(self, node: str) -> str:
        return self.core.scheduler.states[node].status.value


# ----------------------------------------------------------------------------------------------
# Policies


def test_a_sequence_runs_in_order_and_completes_with_its_outputs() -> None:
    d = Driver(
        core_of(
            plan(
                act("a", config={"v": 1}),
                act("b", "a", config={"v": "${{ nodes.a.output.x }}"}),
                outputs={"x": "${{ nodes.b.output }}"},
            )
        )
    )
    assert list(d.activities) == ["a"]
    d.complete("a", {"x": 7})
    assert d.activities["b"].input.config == {"v": 7}
    d.complete("b", "done")
    assert isinstance(d.outcome, CompleteRun)
    assert d.report.status == "completed" and d.report.outputs == {"x": "done"}
    assert d.upserts == []  # a plain run upserts nothing


def test_cancel_with_a_failing_compensation_ends_cancelled_with_the_failure_recorded() -> None:
    d = Driver(
        core_of(
            plan(
                act("reserve", compensate="release"),
                act("long", "reserve"),
                act("release", handler=True),
                act("other_undo", handler=True),
                on_failure=["other_undo"],
            )
        )
    )
    d.complete("reserve")
    d.feed(CancelRequested())
    assert d.cancelling == {"long"}
    d.settle_cancellations()
    assert list(d.activities) == ["release"]
    d.fail("release", "the undo endpoint is down")
    assert list(d.activities) == ["other_undo"]  # a failed compensation stops nothing
    d.complete("other_undo")
    assert isinstance(d.outcome, CancelRun)
    report = d.report
    assert report.status == "cancelled"
    assert report.nodes["long"].status == "cancelled"
    assert report.nodes["release"].status == "failed"
    assert report.nodes["release"].error == "the undo endpoint is down"
    assert report.nodes["other_undo"].status == "completed"


def test_compensations_run_newest_first_then_on_failure_with_their_scopes() -> None:
    d = Driver(
        core_of(
            plan(
                act("one", compensate="undo_one"),
                act("two", "one", compensate="undo_two"),
                act("three", "two"),
                act("undo_one", handler=True, config={"who": "${{ failed_node }}"}),
                act("undo_two", handler=True, config={"who": "${{ failed_node }}"}),
                act("notify", handler=True, config={"msg": "${{ failed_node }}: ${{ error }}"}),
                on_failure=["notify"],
            )
        )
    )
    d.complete("one")
    d.complete("two")
    d.fail("three", "card declined")
    d.complete("undo_two")
    d.complete("undo_one")
    assert d.activities["notify"].input.config == {"msg": "three: card declined"}
    d.complete("notify")
    assert d.started == ["one", "two", "three", "undo_two", "undo_one", "notify"]
    assert isinstance(d.outcome, FailRun) and d.outcome.message == "card declined"


def test_a_failing_foreach_item_cancels_its_running_siblings() -> None:
    d = Driver(core_of(plan(act("each", foreach=[1, 2, 3, 4], concurrency=3))))
    assert list(d.activities) == ["each[0]", "each[1]", "each[2]"]
    d.fail("each[1]", "item two broke")
    assert d.cancelling == {"each[0]", "each[2]"}
    assert "each[3]" not in d.activities  # nothing new starts
    d.complete("each[0]", "raced")  # a sibling that finished before its cancel took
    d.cancelled("each[2]")
    assert isinstance(d.outcome, FailRun)
    assert d.report.nodes["each"].status == "failed"
    assert "item two broke" in (d.report.nodes["each"].error or "")


def test_foreach_with_continue_records_every_item_and_goes_on() -> None:
    d = Driver(
        core_of(
            plan(
                act("each", foreach=[1, 2, 3], on_error="continue"),
                act("after", "each", config={"seen": "${{ nodes.each.output }}"}),
            )
        )
    )
    d.complete("each[0]", "a")
    d.fail("each[1]", "no")
    d.complete("each[2]", "c")
    assert d.activities["after"].input.config == {"seen": ["a", {"error": "no"}, "c"]}
    d.complete("after")
    assert d.report.status == "completed"
    assert d.report.nodes["each"].status == "failed"


def test_foreach_concurrency_defaults_to_a_bound() -> None:
    d = Driver(core_of(plan(act("each", foreach=list(range(300))))))
    assert len(d.activities) == 100


def test_foreach_with_pause_retries_only_the_failed_items() -> None:
    d = Driver(core_of(plan(act("each", foreach=["a", "b", "c"], on_error="pause"))))
    d.complete("each[0]", "A")
    d.fail("each[1]", "flaky")
    d.complete("each[2]", "C")
    assert d.status("each") == "needs_attention"
    assert d.core.status == "needs_attention" and d.upserts == ["needs_attention"]
    d.feed(RetryRequested("each"))
    assert list(d.activities) == ["each[1]"]
    assert d.started[-1] == "each[1]~1"
    d.complete("each[1]", "B")
    assert d.report.nodes["each"].output == ["A", "B", "C"]
    assert d.report.status == "completed"


def test_a_large_foreach_runs_in_batches_of_child_workflows() -> None:
    d = Driver(
        core_of(plan(act("each", foreach=list(range(2500)), batch_size=1000, concurrency=100)))
    )
    assert list(d.children) == ["each#batch1", "each#batch2"]
    first = d.children["each#batch1"].input.batch
    assert first is not None and (first.start, len(first.items), first.concurrency) == (0, 1000, 50)
    assert not d.activities
    d.complete(
        "each#batch1",
        {"outputs": {"results": [i * 2 for i in range(1000)], "errors": {}, "attempts": 1}},
    )
    assert list(d.children) == ["each#batch2", "each#batch3"]
    d.complete("each#batch2", {"outputs": {"results": [0] * 1000, "errors": {}, "attempts": 1}})
    d.complete("each#batch3", {"outputs": {"results": [1] * 500, "errors": {}, "attempts": 2}})
    output = d.report.nodes["each"].output
    assert len(output) == 2500 and output[:3] == [0, 2, 4] and output[-1] == 1
    assert d.report.nodes["each"].attempts == 2


def test_a_batch_run_reports_its_items_to_its_parent() -> None:
    from interpreter.control import BatchInput

    node = act("each", foreach="${{ inputs.items }}", on_error="continue")
    core = RunCore(
        load_plan(plan(node)),
        {},
        IDENTITY,
        started_at=NOW,
        batch=BatchInput(node="each", items=["x", "y"], start=10, scope={}, fail_fast=False),
    )
    d = Driver(core)
    assert list(d.activities) == ["each[10]"]  # concurrency 1, numbered in the whole list
    d.complete("each[10]", "X")
    d.fail("each[11]", "nope")
    assert isinstance(d.outcome, CompleteRun)
    assert d.report.outputs["results"] == ["X", {"error": "nope"}]
    assert d.report.outputs["errors"] == {"11": "nope"}


def test_the_in_flight_budget_caps_what_starts() -> None:
    d = Driver(core_of(plan(*(act(f"n{i}") for i in range(MAX_IN_FLIGHT + 20)))))
    assert len(d.activities) == MAX_IN_FLIGHT
    d.complete("n0")
    assert len(d.activities) == MAX_IN_FLIGHT


def test_fallback_stands_in_and_a_failing_fallback_fails_the_run() -> None:
    d = Driver(
        core_of(
            plan(
                act("a", on_error={"fallback": "fb"}),
                act("b", on_error={"fallback": "fb"}),
                act("fb", handler=True, config={"e": "${{ error }}"}),
                act("after", "a", "b", config={"x": "${{ nodes.a.output }}"}),
            )
        )
    )
    d.fail("a", "a broke")
    assert d.activities["fb"].input.config == {"e": "a broke"}
    d.fail("b", "b broke")
    assert "fb~2" in d.activities  # a second invocation, its own label: none runs twice
    d.complete("fb", "stand-in")
    d.fail("fb~2", "no luck")
    assert isinstance(d.outcome, FailRun)
    assert d.outcome.message == "b broke; fallback failed: no luck"
    assert d.report.nodes["a"].output == "stand-in"


def test_operator_fail_of_a_node_that_needs_attention_fails_the_run_and_compensates() -> None:
    d = Driver(
        core_of(
            plan(
                act("book", compensate="unbook"),
                act("charge", "book", on_error="pause"),
                act("unbook", handler=True),
            )
        )
    )
    d.complete("book")
    d.fail("charge", "declined")
    assert d.core.fail_problem("charge") is None
    assert d.core.fail_problem("book") is not None
    d.feed(FailRequested("charge", "card expired", by="ana"))
    d.complete("unbook")
    assert isinstance(d.outcome, FailRun)
    assert d.outcome.message == "node 'charge' failed by an operator (ana): card expired"
    assert d.report.nodes["charge"].status == "failed"


def test_operator_fail_of_a_waiting_approval_cancels_its_timer() -> None:
    d = Driver(core_of(plan({"id": "ok", "type": "approval", "config": {"timeout": "1h"}})))
    assert list(d.timers) == ["ok"]
    assert d.core.status == "waiting"
    d.feed(FailRequested("ok"))
    assert not d.timers
    assert d.report.status == "failed"


def test_pause_starts_nothing_and_resume_releases() -> None:
    d = Driver(core_of(plan(act("a"), act("b", "a"))))
    d.feed(PauseRequested())
    d.complete("a")
    assert not d.activities and d.status("b") == "ready"
    d.feed(ResumeRequested())
    assert list(d.activities) == ["b"]
    assert d.upserts == ["paused", "running"]


def test_skip_a_pending_node_with_an_output() -> None:
    d = Driver(
        core_of(plan(act("a"), act("b", "a"), act("c", "b", config={"v": "${{ nodes.b.output }}"})))
    )
    assert d.core.skip_problem("b") is None
    d.feed(SkipRequested("b", {"k": 1}))
    d.complete("a")
    assert d.activities["c"].input.config == {"v": {"k": 1}}


def test_approval_answer_and_timeout() -> None:
    d = Driver(
        core_of(
            plan(
                {"id": "ok", "type": "approval", "config": {"timeout": "1h", "approvers": ["ana"]}},
                {
                    "id": "late",
                    "type": "approval",
                    "config": {"timeout": "1m", "on_timeout": "reject", "on_reject": "continue"},
                },
            )
        )
    )
    assert d.core.approvers("ok") == ["ana"]
    assert d.core.approve_problem(Approve(node="nope")) is not None
    d.feed(ApprovalAnswered(Approve(node="ok", approved=True, comment="fine", by="ana")))
    assert "ok" not in d.timers
    d.fire("late")
    report = d.report
    assert report.nodes["ok"].output == {"approved": True, "comment": "fine", "by": "ana"}
    assert report.nodes["late"].output["approved"] is False


def test_events_buffer_until_a_node_waits_and_match_their_correlation() -> None:
    d = Driver(
        core_of(
            plan(
                act("first"),
                {
                    "id": "wait",
                    "type": "wait_for_event",
                    "depends_on": ["first"],
                    "config": {"event": "paid", "correlation": "42"},
                },
            )
        )
    )
    d.feed(EventArrived(Event(name="paid", correlation="7")))
    d.feed(EventArrived(Event(name="other")))  # nobody waits for it: dropped
    d.feed(EventArrived(Event(name="paid", correlation="42", payload={"eur": 5})))
    assert [e.correlation for e in d.core.events] == ["7", "42"]
    d.complete("first")
    assert d.report.nodes["wait"].output["payload"] == {"eur": 5}


def test_continue_as_new_carries_waits_and_rearms_their_timers() -> None:
    d = Driver(
        core_of(
            plan(
                act("a"),
                {"id": "nap", "type": "wait", "config": {"duration": "10m"}},
                act("b", "a"),
            )
        )
    )
    d.feed(HistoryLong())
    assert not d.core.may_continue_as_new  # `a` is in flight: wait for it
    d.complete("a", 1)
    assert d.core.may_continue_as_new
    snapshot = d.core.continue_as_new().snapshot
    restored = RunCore.restore(
        load_plan(
            plan(
                act("a"),
                {"id": "nap", "type": "wait", "config": {"duration": "10m"}},
                act("b", "a"),
            )
        ),
        {},
        IDENTITY,
        snapshot,
    )
    d2 = Driver.__new__(Driver)
    Driver.__init__(d2, restored, now=LATER)
    assert list(d2.timers) == ["nap"] and d2.timers["nap"].seconds == 300.0
    assert list(d2.activities) == ["b"]
    d2.complete("b")
    d2.fire("nap")
    assert d2.report.status == "completed"
    assert d2.report.nodes["a"].output == 1


# ----------------------------------------------------------------------------------------------
# Properties


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A random plan: activities with random dependencies, joins, `when`, on_error, foreach,
    compensations and waits."""
    count = draw(st.integers(1, 9))
    nodes: list[dict[str, Any]] = []
    handlers: list[dict[str, Any]] = []
    for i in range(count):
        deps = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=3, unique=True)) if i else []
        node: dict[str, Any] = {"id": f"n{i}", "type": "t.act"}
        if deps:
            node["depends_on"] = [f"n{d}" for d in deps]
            node["join"] = draw(st.sampled_from(["all", "all", "any"]))
        kind = draw(st.sampled_from(["act", "act", "act", "foreach", "wait", "set"]))
        if kind == "foreach":
            node["foreach"] = list(range(draw(st.integers(0, 3))))
            node["concurrency"] = draw(st.integers(1, 3))
        elif kind == "wait":
            node["type"] = "wait"
            node["config"] = {"duration": "1m"}
        elif kind == "set":
            node["type"] = "set"
            node["config"] = {}
        if draw(st.booleans()) and draw(st.booleans()):
            node["when"] = draw(st.booleans())
        on_error = draw(st.sampled_from(["fail", "continue", "continue", "fallback"]))
        if on_error == "fallback":
            handlers.append({"id": f"fb{i}", "type": "t.act", "handler": True})
            node["on_error"] = {"fallback": f"fb{i}"}
        elif on_error != "fail":
            node["on_error"] = on_error
        if draw(st.booleans()) and node["type"] == "t.act":
            handlers.append({"id": f"undo{i}", "type": "t.act", "handler": True})
            node["compensate"] = f"undo{i}"
        nodes.append(node)
    return plan(*nodes, *handlers)


def run_to_end(
    data: dict[str, Any],
    choose: Callable[[int], int],
    fails: Callable[[str], bool],
    *,
    long_at: int | None = None,
) -> Driver:
    """Drive a run to its end: ``choose(n)`` picks which of n outstanding answers comes next,
    ``fails(label)`` whether an activity fails; with ``long_at``, the history grows long after
    that many answers and the run continues as new (restored from its snapshot)."""
    d = Driver(core_of(data))
    answers = 0
    for _ in range(500):
        if d.core.may_continue_as_new:
            d.core.continue_as_new()
        if d.core.ended:
            outcome = d.core.outcome
            if not isinstance(outcome, ContinueAsNew):
                return d
            restored = RunCore.restore(load_plan(data), {}, IDENTITY, outcome.snapshot)
            assert restored.snapshot() == outcome.snapshot  # restore(snapshot(s)) == s
            started = d.started
            d = Driver(restored)
            d.started = started + d.started
            continue
        if long_at is not None and answers == long_at:
            d.feed(HistoryLong())
            long_at = None
            continue
        outstanding = sorted(d.activities) + sorted(d.timers)
        assert outstanding, "the run waits for nothing but has not ended"
        label = outstanding[choose(len(outstanding))]
        answers += 1
        if label in d.timers:
            d.fire(label)
        elif label in d.cancelling:
            d.cancelled(label)
        elif fails(label):
            d.fail(label, f"{label} failed")
        else:
            d.complete(label, {"from": label})
    raise AssertionError("the run did not end")


def _shape(report: RunReport) -> dict[str, Any]:
    return {
        "status": report.status,
        "error": report.error,
        "nodes": {i: (n.status, n.output, n.error) for i, n in report.nodes.items()},
    }


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(graphs(), st.data(), st.sets(st.text("n0123456789[]", max_size=4), max_size=4))
def test_every_run_ends_and_every_regular_node_ends_exactly_once(
    data: dict[str, Any], draw: st.DataObject, failing: set[str]
) -> None:
    d = run_to_end(data, lambda n: draw.draw(st.integers(0, n - 1)), lambda label: label in failing)
    regular = [n["id"] for n in data["nodes"] if not n.get("handler")]
    ended = [t.node for t in d.core.scheduler.history if t.node and t.status in ENDED]
    for node_id in regular:
        assert d.core.scheduler.states[node_id].status in ENDED
        assert ended.count(node_id) == 1, (node_id, ended)
    # Handlers run at most once per invocation, and no activity id is used twice.
    assert len(d.started) == len(set(d.started))
    assert isinstance(d.outcome, CompleteRun | FailRun)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    graphs(), st.randoms(use_true_random=False), st.sets(st.sampled_from(["n0", "n1", "n2", "n3"]))
)
def test_any_completion_order_gives_the_same_report(
    data: dict[str, Any], rng: Any, failing: set[str]
) -> None:
    # Failures that fail the run race with what else runs (what gets cancelled depends on
    # timing, as in any engine); failures that are handled do not.
    for node in data["nodes"]:
        if node["id"] in failing and node.get("on_error") is None:
            node["on_error"] = "continue"
    first = run_to_end(data, lambda n: 0, lambda label: label in failing)
    other = run_to_end(data, lambda n: rng.randrange(n), lambda label: label in failing)
    assert _shape(first.report) == _shape(other.report)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(graphs(), st.data(), st.integers(0, 6))
def test_continuing_as_new_anywhere_changes_nothing(
    data: dict[str, Any], draw: st.DataObject, long_at: int
) -> None:
    for node in data["nodes"]:
        node.setdefault("on_error", "continue")
    choices: list[int] = []

    def choose(n: int) -> int:
        choice = draw.draw(st.integers(0, n - 1))
        choices.append(choice)
        return choice

    plain = run_to_end(data, lambda n: 0, lambda label: False)
    continued = run_to_end(data, choose, lambda label: False, long_at=long_at)
    assert _shape(plain.report) == _shape(continued.report)


def test_restore_of_a_snapshot_is_the_same_core() -> None:
    d = Driver(
        core_of(
            plan(
                act("a", compensate="undo"),
                {"id": "ask", "type": "approval", "config": {"timeout": "1h"}},
                act("each", "a", foreach=[1, 2, 3], on_error="pause"),
                act("undo", handler=True),
                vars={"n": 0},
            )
        )
    )
    d.complete("a")
    d.complete("each[0]")
    d.fail("each[1]", "x")
    d.complete("each[2]")
    d.feed(EventArrived(Event(name="unused")))
    d.feed(HistoryLong())
    snapshot = d.core.continue_as_new().snapshot
    restored = RunCore.restore(d.core.plan, {}, IDENTITY, snapshot)
    assert restored.snapshot() == snapshot
    assert restored.state() == d.core.state()
    assert restored.report() == d.core.report()


# ----------------------------------------------------------------------------------------------
# Redrive, approvers, reviews, budgets, notifications, filters, observers


def test_reused_nodes_keep_their_output_and_do_not_run() -> None:
    from interpreter.control import ReusedNode

    data = plan(
        act("a", compensate="undo"), act("b", "a"), act("c", "b"), act("undo", handler=True)
    )
    core = RunCore(
        load_plan(data),
        {},
        IDENTITY,
        started_at=NOW,
        reuse={"a": ReusedNode(output=1), "b": ReusedNode(output=2, attempts=3)},
    )
    d = Driver(core)
    assert list(d.activities) == ["c"]
    d.fail("c", "still broken")
    assert list(d.activities) == ["undo"]  # a reused node did its work: it is compensated
    d.complete("undo")
    report = d.report
    assert report.reused == ["a", "b"]
    assert (report.nodes["b"].output, report.nodes["b"].attempts) == (2, 3)


def test_approvers_are_enforced_by_name_or_role() -> None:
    d = Driver(
        core_of(plan({"id": "ok", "type": "approval", "config": {"approvers": ["ana", "finance"]}}))
    )
    assert "only ana, finance may answer" in (d.core.approve_problem(Approve(node="ok")) or "")
    assert "mallory may not answer 'ok'" in (
        d.core.approve_problem(Approve(node="ok", by="mallory")) or ""
    )
    assert d.core.approve_problem(Approve(node="ok", by="ana")) is None
    assert d.core.approve_problem(Approve(node="ok", by="bo", roles=["finance"])) is None
    assert d.core.state().approvals["ok"].approvers == ["ana", "finance"]


def test_a_doubtful_answer_waits_for_a_review_and_the_reviewer_label_wins() -> None:
    d = Driver(
        core_of(
            plan(
                act("classify"),
                act("after", "classify", config={"l": "${{ nodes.classify.output.label }}"}),
            )
        )
    )
    d.take(
        d.core.feed(
            WorkCompleted(
                "classify",
                {"label": "invoice", "confidence": 0.41},
                1,
                {"total_tokens": 10},
                {
                    "message": "is this an invoice?",
                    "options": ["invoice", "article"],
                    "field": "label",
                },
            ),
            NOW,
        )
    )
    del d.activities["classify"]
    state = d.core.state()
    assert state.status == "waiting" and state.approvals["classify"].kind == "review"
    assert state.approvals["classify"].proposed == {"label": "invoice", "confidence": 0.41}
    assert d.core.approve_problem(Approve(node="classify", output="memo")) is not None
    d.feed(ApprovalAnswered(Approve(node="classify", output="article", by="ana")))
    assert d.activities["after"].input.config == {"l": "article"}
    d.complete("after")
    output = d.report.nodes["classify"].output
    assert output["label"] == "article" and output["review"]["changed"] is True


def test_a_spent_budget_stops_ai_nodes_until_an_operator_raises_it() -> None:
    from interpreter.control import RaiseBudget
    from interpreter.events import BudgetRaised

    ai = {"type": "ai.extract"}
    d = Driver(
        core_of(
            plan(
                {"id": "one", **ai},
                {"id": "two", **ai, "depends_on": ["one"]},
                budget={"cost_usd": 0.01},
            )
        )
    )
    assert d.activities["one"].input.budget is not None
    assert d.activities["one"].input.budget.cost_usd == 0.01
    d.take(d.core.feed(WorkCompleted("one", {}, 1, {"total_tokens": 500, "cost_usd": 0.012}), NOW))
    del d.activities["one"]
    assert not d.activities
    state = d.core.state()
    assert state.status == "needs_attention" and state.attention == {"two": "budget"}
    assert state.budget is not None and state.budget.spent_usd == 0.012
    d.feed(BudgetRaised(RaiseBudget(add_usd=0.05, by="ops")))
    left = d.activities["two"].input.budget
    assert left is not None and left.cost_usd == 0.048
    d.complete("two")
    assert d.report.status == "completed"
    assert d.report.budget is not None and d.report.budget.cost_usd == 0.06


def test_a_call_the_activity_refuses_for_its_budget_needs_attention() -> None:
    d = Driver(core_of(plan({"id": "big", "type": "ai.summarize", "budget": {"tokens": 100}})))
    d.activities.pop("big")
    d.feed(WorkFailed("big", "this call needs ~4000 tokens, 100 are left", 1, budget=True))
    assert d.core.state().attention == {"big": "budget"}


def test_lifecycle_notifications_are_sent_before_the_run_ends() -> None:
    notifications = [
        {"on": ["started", "completed"], "type": "notify.webhook", "config": {"url": "http://x"}},
        {"on": ["failed"], "type": "notify.slack", "config": {}},
    ]
    d = Driver(core_of(plan(act("a"), notifications=notifications)))
    started = d.activities["notify#1"]
    assert started.activity_type == "notify.lifecycle" and started.node is None
    assert started.input.config["event"]["event"] == "started"
    d.complete("notify#1")
    d.complete("a")
    assert d.outcome is None  # the completed notification goes first
    assert d.activities["notify#2"].input.config["event"]["event"] == "completed"
    d.fail("notify#2", "hook down")  # a failed notification does not fail the run
    assert isinstance(d.outcome, CompleteRun)
    assert any(t.status == "notification failed" for t in d.core.scheduler.history)


def test_event_filters_pick_the_events_a_node_waits_for() -> None:
    d = Driver(
        core_of(
            plan(
                {
                    "id": "big_payment",
                    "type": "wait_for_event",
                    "config": {"event": "paid", "filters": ["${{ event.payload.eur > 100.0 }}"]},
                }
            )
        )
    )
    d.feed(EventArrived(Event(name="paid", payload={"eur": 5.0})))
    assert not d.core.ended
    d.feed(EventArrived(Event(name="paid", payload={"eur": 500.0})))
    assert d.report.nodes["big_payment"].output["payload"] == {"eur": 500.0}
    assert [e.payload for e in d.core.events] == [{"eur": 5.0}]


def test_observers_hear_the_run_and_every_node_start_and_end() -> None:
    from interpreter.commands import Observe

    core = RunCore(
        load_plan(plan(act("a"), act("b", "a"))),
        {},
        IDENTITY,
        started_at=NOW,
        observe=True,
        origin="api",
    )
    d = Driver(core)
    assert d.activities["a"].input.origin == "api"
    d.complete("a")
    d.complete("b")
    seen = [(c.event, c.data.get("node")) for c in d.commands if isinstance(c, Observe)]
    assert seen == [
        ("run_started", None),
        ("node_started", "a"),
        ("node_ended", "a"),
        ("node_started", "b"),
        ("node_ended", "b"),
        ("run_ended", None),
    ]


def test_observers_of_the_run_alone_cost_no_event_per_node() -> None:
    from interpreter import observers
    from interpreter.commands import Observe

    core = RunCore(
        load_plan(plan(act("a"), act("b", "a"))),
        {},
        IDENTITY,
        started_at=NOW,
        observe=True,
        observe_nodes=False,
    )
    d = Driver(core)
    d.complete("a")
    d.complete("b")
    seen = [c.event for c in d.commands if isinstance(c, Observe)]
    assert seen == ["run_started", "run_ended"]

    heard: list[tuple[str, str]] = []
    runs_only: observers.Sink = lambda event, data: heard.append(("run", event))  # noqa: E731
    every: observers.Sink = lambda event, data: heard.append(("all", event))  # noqa: E731
    observers.add_sink(runs_only, nodes=False)
    assert observers.active() and not observers.wants_nodes()
    observers.add_sink(every)
    try:
        assert observers.wants_nodes()
        observers.emit("node_started", {})
        observers.emit("run_ended", {})
    finally:
        observers.remove_sink(runs_only)
        observers.remove_sink(every)
    assert heard == [("all", "node_started"), ("run", "run_ended"), ("all", "run_ended")]
    observers.emit("run_started", {})  # removed: neither hears any more
    assert len(heard) == 3


def test_a_wide_fan_out_of_local_nodes_runs_its_overflow_as_regular_activities() -> None:
    from interpreter.core import MAX_LOCAL_IN_FLIGHT

    d = Driver(core_of(plan(*(act(f"n{i}", execution="local") for i in range(80)))))
    started = [c for c in d.commands if isinstance(c, StartActivity)]
    assert len(started) == 80
    assert sum(c.local for c in started) == MAX_LOCAL_IN_FLIGHT
    d.complete("n0")
    assert d.core._local_in_flight == MAX_LOCAL_IN_FLIGHT - 1
