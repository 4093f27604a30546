"""The pure scheduler: joins, skip propagation, pause, operator actions; and properties that must
hold for any graph, any outcomes and any order of completion (hypothesis)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from interpreter.scheduler import ENDED, GraphNode, NodeStatus, Scheduler

NOW = "2024-01-01T00:00:00Z"


def scheduler(*nodes: GraphNode) -> Scheduler:
    """A started scheduler over ``nodes``."""
    s = Scheduler(list(nodes))
    s.start(NOW)
    return s


def run(s: Scheduler, node_id: str, output: object = None) -> None:
    """Start and complete a node."""
    s.node_started(node_id, NOW)
    s.node_completed(node_id, NOW, output, attempts=1)


def statuses(s: Scheduler) -> dict[str, str]:
    """Every node's status."""
    return {i: st_.status.value for i, st_ in s.states.items()}


# --------------------------------------------------------------------------------------------
# Unit tests


def test_nodes_without_dependencies_start_at_once_in_order() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b"), GraphNode("c", ("a",)))
    assert s.take_ready() == ["a", "b"]
    assert s.status("c") == NodeStatus.PENDING
    assert not s.finished


def test_sequence() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)), GraphNode("c", ("b",)))
    order = []
    while not s.finished:
        ready = s.take_ready()
        assert len(ready) == 1
        order.extend(ready)
        run(s, ready[0])
    assert order == ["a", "b", "c"]
    assert set(statuses(s).values()) == {"completed"}


def test_take_ready_respects_the_limit() -> None:
    s = scheduler(*(GraphNode(f"n{i}") for i in range(5)))
    assert s.take_ready(2) == ["n0", "n1"]
    assert s.has_ready()
    assert s.take_ready() == ["n2", "n3", "n4"]
    assert not s.has_ready()


def test_join_all_waits_for_every_dependency() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b"), GraphNode("join", ("a", "b")))
    s.take_ready()
    run(s, "a")
    assert s.take_ready() == []
    run(s, "b")
    assert s.take_ready() == ["join"]


def test_skip_propagates_only_when_every_dependency_was_skipped() -> None:
    s = scheduler(
        GraphNode("a"),
        GraphNode("b"),
        GraphNode("only_a", ("a",)),
        GraphNode("after_only_a", ("only_a",)),
        GraphNode("a_and_b", ("a", "b")),
    )
    s.take_ready()
    s.skip_now("a", NOW, reason="when is false")
    assert s.status("only_a") == NodeStatus.SKIPPED
    assert s.status("after_only_a") == NodeStatus.SKIPPED
    assert s.status("a_and_b") == NodeStatus.PENDING
    run(s, "b")
    assert s.take_ready() == ["a_and_b"]
    run(s, "a_and_b")
    assert s.finished


def test_failed_with_continue_lets_dependents_run() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)))
    s.take_ready()
    s.node_started("a", NOW)
    s.node_failed("a", NOW, "boom", mode="continue", attempts=3)
    assert s.take_ready() == ["b"]
    assert s.states["a"].status == NodeStatus.FAILED
    assert s.states["a"].attempts == 3
    assert s.states["a"].output is None


def test_fallback_output_stands_in() -> None:
    s = scheduler(GraphNode("a"), GraphNode("backup", handler=True), GraphNode("b", ("a",)))
    assert s.take_ready() == ["a"]
    s.node_started("a", NOW)
    s.node_started("backup", NOW)
    s.node_completed("backup", NOW, {"from": "backup"})
    s.node_failed("a", NOW, "boom", mode="handled", output={"from": "backup"})
    assert s.states["a"].output == {"from": "backup"}
    assert s.take_ready() == ["b"]


def test_a_failed_dependency_never_lets_its_dependents_run() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b"), GraphNode("c", ("a", "b")))
    s.take_ready()
    run(s, "b")
    s.node_started("a", NOW)
    s.node_failed("a", NOW, "boom", mode="fail")
    assert s.take_ready() == []
    assert s.status("c") != NodeStatus.READY


def test_join_any_runs_once_on_the_first_completion() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b"), GraphNode("first", ("a", "b"), join="any"))
    s.take_ready()
    run(s, "b")
    assert s.take_ready() == ["first"]
    run(s, "first")
    run(s, "a")
    assert s.take_ready() == []
    assert s.finished
    assert s.states["first"].status == NodeStatus.COMPLETED


def test_join_any_is_skipped_when_every_dependency_was_skipped() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b"), GraphNode("first", ("a", "b"), join="any"))
    s.take_ready()
    s.skip_now("a", NOW)
    assert s.status("first") == NodeStatus.PENDING
    s.skip_now("b", NOW)
    assert s.status("first") == NodeStatus.SKIPPED
    assert s.finished


def test_handlers_never_run_as_part_of_the_graph() -> None:
    s = scheduler(GraphNode("a"), GraphNode("undo", handler=True))
    assert s.take_ready() == ["a"]
    run(s, "a")
    assert s.finished
    assert s.status("undo") == NodeStatus.PENDING
    assert s.pending_nodes() == []


def test_pause_holds_ready_nodes_until_resume() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)), GraphNode("c", ("a",)))
    assert s.take_ready() == ["a"]
    s.pause(NOW)
    run(s, "a")  # a running node finishes while paused
    assert s.status("b") == NodeStatus.READY
    assert not s.has_ready()
    assert s.take_ready() == []
    s.resume(NOW)
    assert s.has_ready()
    assert s.take_ready() == ["b", "c"]
    assert [t.status for t in s.history if t.node is None] == ["running", "paused", "resumed"]


def test_pause_on_error_needs_attention_then_retry() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)))
    s.take_ready()
    s.node_started("a", NOW)
    s.node_failed("a", NOW, "boom", mode="pause", attempts=3)
    assert s.needs_attention == {"a"}
    assert s.status("a") == NodeStatus.NEEDS_ATTENTION
    assert not s.finished
    assert s.retry_problem("b") == "'b' is pending: only a node that needs attention can be retried"
    assert s.retry_problem("a") is None
    s.retry("a", NOW)
    assert s.needs_attention == frozenset()
    assert s.take_ready() == ["a"]
    run(s, "a")
    assert s.take_ready() == ["b"]


def test_operator_skips_a_node_that_needs_attention() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)), GraphNode("c", ("b",)))
    s.take_ready()
    s.node_started("a", NOW)
    s.node_failed("a", NOW, "boom", mode="pause")
    assert s.skip_problem("a") is None
    s.skip("a", NOW, output={"stand": "in"})
    assert s.status("a") == NodeStatus.SKIPPED
    assert s.states["a"].output == {"stand": "in"}
    # With an output the skip lets dependents run and see it.
    assert s.take_ready() == ["b"]


def test_operator_skips_a_pending_node_when_it_is_reached() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)), GraphNode("c", ("b",)))
    s.take_ready()
    s.skip("b", NOW)
    assert s.status("b") == NodeStatus.PENDING
    run(s, "a")
    assert s.status("b") == NodeStatus.SKIPPED
    # Without an output the skip propagates like any skip.
    assert s.status("c") == NodeStatus.SKIPPED
    assert s.finished


def test_operator_skip_of_a_pending_node_with_output() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)), GraphNode("c", ("b",)))
    s.take_ready()
    s.skip("b", NOW, output=42)
    run(s, "a")
    assert s.states["b"].output == 42
    assert s.take_ready() == ["c"]


def test_operator_actions_are_refused_when_they_make_no_sense() -> None:
    s = scheduler(GraphNode("a"), GraphNode("h", handler=True))
    s.take_ready()
    s.node_started("a", NOW)
    assert s.skip_problem("a") == ("'a' is running: only a pending or failed node can be skipped")
    assert s.skip_problem("zz") == "unknown node 'zz'"
    assert s.retry_problem("zz") == "unknown node 'zz'"
    assert s.skip_problem("h") == "'h' is a handler: it only runs when invoked"
    s.node_completed("a", NOW, None)
    assert s.skip_problem("a") == ("'a' is completed: only a pending or failed node can be skipped")


def test_give_up_fails_a_node_that_needs_attention() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)))
    s.take_ready()
    s.node_started("a", NOW)
    s.node_failed("a", NOW, "boom", mode="pause")
    s.give_up("a", NOW)
    assert s.status("a") == NodeStatus.FAILED
    assert s.states["a"].error == "boom"
    assert s.take_ready() == []


def test_waiting_and_cancelled() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b", ("a",)))
    s.take_ready()
    s.node_started("a", NOW, waiting=True)
    assert s.status("a") == NodeStatus.WAITING
    assert s.active == {"a"}
    s.node_waiting("a", NOW, False)
    assert s.status("a") == NodeStatus.RUNNING
    s.node_cancelled("a", NOW)
    assert s.status("a") == NodeStatus.CANCELLED
    assert s.active == frozenset()
    assert s.pending_nodes() == ["b"]


def test_counts_follow_statuses() -> None:
    s = scheduler(GraphNode("a"), GraphNode("b"), GraphNode("c", ("a",)))
    assert s.count(NodeStatus.READY) == 2
    assert s.count(NodeStatus.PENDING) == 1
    s.take_ready()
    run(s, "a")
    s.skip_now("b", NOW)
    assert s.count(NodeStatus.COMPLETED) == 1
    assert s.count(NodeStatus.SKIPPED) == 1
    assert s.count(NodeStatus.READY) == 1


# --------------------------------------------------------------------------------------------
# Properties over random graphs, outcomes and completion orders

Outcome = Literal["complete", "skip", "fail_continue"]


@dataclass(frozen=True)
class _Case:
    nodes: list[GraphNode]
    outcomes: dict[str, Outcome]


@st.composite
def _cases(draw: st.DrawFn) -> _Case:
    count = draw(st.integers(min_value=1, max_value=12))
    nodes = []
    for i in range(count):
        deps = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=4)) if i else set()
        join: Literal["all", "any"] = draw(st.sampled_from(["all", "any"]))
        nodes.append(GraphNode(f"n{i}", tuple(f"n{d}" for d in sorted(deps)), join))
    choices: list[Outcome] = ["complete", "skip", "fail_continue"]
    outcomes = {n.id: draw(st.sampled_from(choices)) for n in nodes}
    return _Case(nodes, outcomes)


def _expected(case: _Case) -> dict[str, str]:
    """The final status of every node, worked out independently in topological order."""
    final: dict[str, str] = {}
    for node in case.nodes:  # dependencies always come first
        lets_run = [final[d] in ("completed", "failed") for d in node.depends_on]
        if node.depends_on and not any(lets_run):
            final[node.id] = "skipped"
            continue
        final[node.id] = {"complete": "completed", "skip": "skipped", "fail_continue": "failed"}[
            case.outcomes[node.id]
        ]
    return final


@settings(max_examples=300, deadline=None, database=None)
@given(case=_cases(), data=st.data())
def test_any_order_of_completion(case: _Case, data: st.DataObject) -> None:
    s = scheduler(*case.nodes)
    graph = {n.id: n for n in case.nodes}
    running: list[str] = []
    started: Counter[str] = Counter()
    steps = 0
    while not s.finished:
        steps += 1
        assert steps < 1000, "the scheduler made no progress"
        can_take = s.has_ready()
        assert can_take or running, f"stuck: {statuses(s)}"
        if can_take and (not running or data.draw(st.booleans())):
            limit = data.draw(st.integers(min_value=1, max_value=3))
            for node_id in s.take_ready(limit):
                node = graph[node_id]
                ended = [s.status(d) in ENDED for d in node.depends_on]
                if node.join == "all":
                    assert all(ended), f"{node_id} started before its dependencies ended"
                else:
                    assert not node.depends_on or any(
                        s.status(d) in (NodeStatus.COMPLETED, NodeStatus.FAILED)
                        for d in node.depends_on
                    ), f"{node_id} (join any) started before any dependency completed"
                started[node_id] += 1
                outcome = case.outcomes[node_id]
                if outcome == "skip":  # `when` was false: never started
                    s.skip_now(node_id, NOW, reason="when is false")
                else:
                    s.node_started(node_id, NOW)
                    running.append(node_id)
            continue
        node_id = running.pop(data.draw(st.integers(min_value=0, max_value=len(running) - 1)))
        if case.outcomes[node_id] == "complete":
            s.node_completed(node_id, NOW, {"from": node_id}, attempts=1)
        else:
            s.node_failed(node_id, NOW, "boom", mode="continue", attempts=1)

    assert not running
    assert all(count == 1 for count in started.values()), "a node started twice"
    # Every node ends exactly once, with the status the join rules give.
    ends = Counter(
        t.node for t in s.history if t.node is not None and t.status in {e.value for e in ENDED}
    )
    assert ends == Counter(n.id for n in case.nodes)
    assert statuses(s) == _expected(case)
    assert s.pending_nodes() == []
    assert s.count(NodeStatus.PENDING) == 0 and s.count(NodeStatus.READY) == 0


@settings(max_examples=100, deadline=None, database=None)
@given(case=_cases(), data=st.data())
def test_paused_scheduler_starts_nothing(case: _Case, data: st.DataObject) -> None:
    s = scheduler(*case.nodes)
    first = s.take_ready(1)
    s.pause(NOW)
    assert s.take_ready() == []
    for node_id in first:
        s.node_started(node_id, NOW)
        s.node_completed(node_id, NOW, None)
    assert s.take_ready() == []
    assert not s.has_ready()
    held = {i for i, state in s.states.items() if state.status == NodeStatus.READY}
    s.resume(NOW)
    assert set(s.take_ready()) == held
