"""Answering nodes without running them: a worker interceptor that asks, for every node
activity, whether the run's answer book has an answer for it (an output, or an error that may
be retried), and runs the node for real otherwise.

A run's book is found by its workflow id; child runs (foreach batches, ``workflow`` nodes)
use their parent's book, since their ids start with the parent's. A unit's label is the node
id, ``node[3]`` for a foreach item or ``node~2`` for a handler's second invocation: books are
asked with the node id and the label.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from interpreter.node_io import NodeInput, NodeResult, Usage
from starter.testing.testfile import MockAnswer

_SUFFIX = re.compile(r"(\[\d+\]|~\d+)$")


def node_of(label: str) -> str:
    """The node id of a unit's label (``node[3]`` → ``node``, ``handler~2`` → ``handler``)."""
    while True:
        stripped = _SUFFIX.sub("", label)
        if stripped == label:
            return label
        label = stripped


@dataclass(frozen=True)
class Call:
    """A node activity the interceptor saw: what it was asked and how it was answered."""

    label: str
    node: str
    activity_type: str
    attempt: int
    config: dict[str, Any]
    mocked: bool


class AnswerBook(Protocol):
    """Answers the node activities of one run (and of its child runs)."""

    def answer(
        self, node: str, label: str, activity_type: str, input: NodeInput, attempt: int
    ) -> MockAnswer | None:
        """The answer for this attempt, or None to run the node for real."""
        ...


@dataclass
class MockTable:
    """A test case's mocks: node id → answers, one per attempt (the last one repeats).

    Attempts are counted per unit (a node, or one foreach item) over the whole run, so an
    operator's retry of a node that needs attention gets the next answer, like the next
    automatic retry would."""

    mocks: dict[str, list[MockAnswer]]
    suppress_notifications: bool = True
    """Lifecycle notifications (``notifications:``) are not sent from tests."""
    _tries: dict[str, int] = field(default_factory=dict)

    def answer(
        self, node: str, label: str, activity_type: str, input: NodeInput, attempt: int
    ) -> MockAnswer | None:
        """The mocked answer of the unit's next attempt (by its exact label, else its node)."""
        answers = self.mocks.get(label) or self.mocks.get(node)
        if answers:
            tries = self._tries[label] = self._tries.get(label, 0) + 1
            return answers[min(tries, len(answers)) - 1]
        if self.suppress_notifications and activity_type == "notify.lifecycle":
            return MockAnswer(
                output={"suppressed": "lifecycle notifications are not sent in tests"}
            )
        return None


@dataclass
class Switchboard:
    """The answer books of the runs a test worker serves, by workflow id, and the calls seen."""

    books: dict[str, AnswerBook] = field(default_factory=dict)
    calls: dict[str, list[Call]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, workflow_id: str, book: AnswerBook) -> None:
        """Answer the runs of ``workflow_id`` (and its children) from ``book``."""
        with self._lock:
            self.books[workflow_id] = book
            self.calls[workflow_id] = []

    def forget(self, workflow_id: str) -> list[Call]:
        """Stop answering a run; returns the calls it made."""
        with self._lock:
            self.books.pop(workflow_id, None)
            return self.calls.pop(workflow_id, [])

    def _owner(self, workflow_id: str) -> str | None:
        with self._lock:
            if workflow_id in self.books:
                return workflow_id
            owners = [w for w in self.books if workflow_id.startswith(w + "-")]
        return max(owners, key=len) if owners else None

    def lookup(
        self, workflow_id: str, label: str, activity_type: str, input: NodeInput, attempt: int
    ) -> MockAnswer | None:
        """The answer of the book owning ``workflow_id`` (recording the call)."""
        owner = self._owner(workflow_id)
        if owner is None:
            return None
        node = node_of(label)
        answer = self.books[owner].answer(node, label, activity_type, input, attempt)
        call = Call(label, node, activity_type, attempt, dict(input.config), answer is not None)
        with self._lock:
            self.calls.setdefault(owner, []).append(call)
        return answer


def answered(answer: MockAnswer, label: str, attempt: int) -> NodeResult:
    """The activity's result for a mocked answer; raises its error as the node's failure."""
    if answer.error is not None:
        raise ApplicationError(
            f"node {label!r}: {answer.error}",
            {"attempt": attempt, "node": label, "mocked": True},
            type=answer.error_type,
            non_retryable=not answer.retryable,
            # An expected failure: the SDK logs it at debug level, not as a warning.
            category=ApplicationErrorCategory.BENIGN,
        )
    usage = Usage.model_validate(answer.usage) if answer.usage else None
    return NodeResult(output=answer.output, attempt=attempt, usage=usage)


class MockInterceptor(Interceptor):
    """Worker interceptor answering node activities from a :class:`Switchboard`."""

    def __init__(self, switchboard: Switchboard) -> None:
        self.switchboard = switchboard

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity."""
        return _Inbound(next, self.switchboard.lookup)


Lookup = Callable[[str, str, str, NodeInput, int], MockAnswer | None]


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, lookup: Lookup) -> None:
        super().__init__(next)
        self._lookup = lookup

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        node_input = input.args[0] if input.args else None
        if isinstance(node_input, NodeInput):
            info = activity.info()
            label = node_input.node_id
            answer = self._lookup(
                info.workflow_id or "", label, info.activity_type, node_input, info.attempt
            )
            if answer is not None:
                return answered(answer, label, info.attempt)
        return await super().execute_activity(input)
