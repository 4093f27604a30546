"""Test files: the cases a definition must pass before it is deployed, read strictly.

``NAME.test.yaml`` tests ``NAME.yaml`` beside it unless it names ``definition: FILE`` (relative
to the test file). Each case gives inputs, mocked node outputs or errors (per attempt), what to
send the run, and what to expect::

    cases:
      - name: a flaky endpoint is retried
        inputs: {amount: 120.0}
        mocks:
          fetch: [{error: "503 from upstream", retryable: true}, {output: {status_code: 200}}]
          store: {output: {rows: 1}}
        send:
          - approve: review
        expect:
          status: completed
          outputs: {ok: true}
          nodes: {fetch: {status: completed, attempts: 2}, store: completed}

Every problem of a file is reported at once, located (``FILE:LINE:COL: message``): unknown keys,
a mock or an expectation naming a node the definition does not have, a mock of a node the
workflow runs itself, inputs the definition refuses. A file with problems runs nothing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import activities
from interpreter import Definition, DefinitionError, Problem, load_file
from interpreter.inputs import InputError, resolve_inputs
from interpreter.loader import Document, PathKey, read_yaml
from interpreter.model import parse_duration
from interpreter.node_types import WORKFLOW_TYPES

TEST_SUFFIXES = (".test.yaml", ".test.yml")
"""How a test file's name ends."""

DEFAULT_CASE_TIMEOUT = 60.0
"""How long (real seconds) a case may take before it fails as stuck."""

RUN_STATUSES = ("completed", "failed", "cancelled")
NODE_STATUSES = (
    "pending",
    "running",
    "waiting",
    "needs_attention",
    "completed",
    "failed",
    "skipped",
    "cancelled",
)

SendVerb = Literal[
    "approve", "reject", "event", "set_vars", "skip", "retry", "fail", "pause", "resume", "cancel"
]
_NODE_VERBS = ("approve", "reject", "skip", "retry", "fail")
_BARE_VERBS = ("pause", "resume", "cancel")
_VERBS: tuple[str, ...] = (*_NODE_VERBS, "event", "set_vars", *_BARE_VERBS)


class TestFileError(Exception):
    """A test file (or the definition it tests) with problems; nothing was run."""

    __test__ = False  # not a pytest class

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class MockAnswer:
    """What a mocked node answers on one attempt: an output, or an error."""

    output: Any = None
    error: str | None = None
    retryable: bool = True
    """For an error: whether Temporal may try the node again (its retry policy permitting)."""
    error_type: str = "MockedError"
    """For an error: its type (what ``retry.non_retryable_errors`` names)."""
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class Send:
    """One thing sent to the run, once the run is ready for it."""

    verb: SendVerb
    node: str | None = None
    value: Any = None
    """approve: the comment; event: the payload; set_vars: the values; skip: the output;
    fail: the reason."""
    name: str | None = None
    """event: its name."""
    correlation: str | None = None
    by: str | None = None
    line: int = 0


@dataclass(frozen=True)
class NodeExpectation:
    """What one node must end as; None means "not checked"."""

    status: str | None = None
    attempts: int | None = None
    output: Any = None
    has_output: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Expectation:
    """What the run must end as; unset parts are not checked."""

    status: str | None = None
    error: str | None = None
    outputs: dict[str, Any] | None = None
    nodes: dict[str, NodeExpectation] = field(default_factory=dict)
    vars: dict[str, Any] | None = None


@dataclass(frozen=True)
class TestCase:
    """One case of a test file."""

    __test__ = False  # not a pytest class

    name: str
    line: int
    inputs: dict[str, Any] = field(default_factory=dict)
    mocks: dict[str, list[MockAnswer]] = field(default_factory=dict)
    send: list[Send] = field(default_factory=list)
    expect: Expectation = field(default_factory=Expectation)
    timeout: float = DEFAULT_CASE_TIMEOUT


@dataclass(frozen=True)
class TestFile:
    """A test file, its definition and its cases."""

    __test__ = False  # not a pytest class

    path: Path
    definition_path: Path
    definition: Definition
    cases: list[TestCase]


def test_file_for(definition_path: str | Path) -> Path | None:
    """``NAME.test.yaml`` (or ``.test.yml``) beside ``NAME.yaml``, if there is one."""
    path = Path(definition_path)
    for suffix in TEST_SUFFIXES:
        candidate = path.with_name(path.name.rsplit(".", 1)[0] + suffix)
        if candidate.is_file():
            return candidate
    return None


def is_test_file(path: str | Path) -> bool:
    """Whether the file's name says it is a test file."""
    return Path(path).name.endswith(TEST_SUFFIXES)


def _default_definition(path: Path) -> Path | None:
    for suffix in TEST_SUFFIXES:
        if path.name.endswith(suffix):
            stem = path.name[: -len(suffix)]
            return path.with_name(stem + suffix.replace(".test", ""))
    return None


def load_test_file(path: str | Path, *, definition: str | Path | None = None) -> TestFile:
    """Read and check a test file (``definition`` overrides the file it names); raise
    :class:`TestFileError` with every problem."""
    path = Path(path)
    document = read_yaml(path)
    if document.problems:
        raise TestFileError(document.problems)
    reader = _Reader(document)
    data = document.data
    if not isinstance(data, dict):
        raise TestFileError([document.problem((), "a test file is a mapping with `cases`")])
    reader.keys((), data, ("definition", "cases"))
    target = _definition_path(reader, path, data, definition)
    loaded: Definition | None = None
    if target is not None:
        activities.load_extensions()
        try:
            loaded = load_file(target, activities.registry)
        except DefinitionError as e:
            reader.problems.extend(e.problems)
    cases_data = data.get("cases")
    if not isinstance(cases_data, list) or not cases_data:
        reader.add(("cases",), "cases: give a list of cases (name, inputs, mocks, expect)")
        cases_data = []
    cases = [
        case
        for index, item in enumerate(cases_data)
        if (case := reader.case(("cases", index), item, loaded)) is not None
    ]
    names: dict[str, int] = {}
    for index, case in enumerate(cases):
        if case.name in names:
            reader.add(("cases", index, "name"), f"a second case named {case.name!r}")
        names.setdefault(case.name, index)
    if reader.problems or loaded is None or target is None:
        raise TestFileError(reader.problems)
    return TestFile(path=path, definition_path=target, definition=loaded, cases=cases)


def _definition_path(
    reader: _Reader, path: Path, data: dict[str, Any], given: str | Path | None
) -> Path | None:
    if given is not None:
        return Path(given)
    named = data.get("definition")
    if named is not None:
        if not isinstance(named, str) or not named.strip():
            reader.add(("definition",), "definition: give the definition file's path")
            return None
        target = (path.parent / named).resolve()
        if not target.is_file():
            reader.add(("definition",), f"definition: no file {named!r} beside the test file")
            return None
        return target
    default = _default_definition(path)
    if default is None:
        reader.add(
            (),
            "name the definition this file tests (definition: FILE), or name the test file "
            "NAME.test.yaml beside NAME.yaml",
        )
        return None
    if not default.is_file():
        reader.add((), f"no definition {default.name} beside the test file (or give definition:)")
        return None
    return default


def _close(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Reader:
    """Reads a test file's values, collecting located problems."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.problems: list[Problem] = []

    def add(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.problems.append(self.document.problem(path, message, key=key))

    def line(self, path: PathKey) -> int:
        return self.document.position(path).line

    def keys(self, path: PathKey, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
        where = f"{path[-1]}: " if path and isinstance(path[-1], str) else ""
        for key in data:
            if key not in allowed:
                hint = _close(str(key), list(allowed))
                self.add(
                    (*path, key),
                    f"{where}unknown key {key!r}{hint}; one of {', '.join(allowed)}",
                    key=True,
                )

    def mapping(self, path: PathKey, value: Any, what: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping")
            return None
        return value

    # -- a case ------------------------------------------------------------------------------

    def case(self, path: PathKey, data: Any, definition: Definition | None) -> TestCase | None:
        if not isinstance(data, dict):
            self.add(path, "a case is a mapping: name, inputs, mocks, send, expect")
            return None
        self.keys(path, data, ("name", "inputs", "mocks", "send", "expect", "timeout"))
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            self.add(path, "the case needs a name")
            name = f"case {path[-1]}"
        nodes = _node_types(definition) if definition is not None else None
        inputs = self.mapping((*path, "inputs"), data.get("inputs"), "inputs") or {}
        if definition is not None:
            try:
                resolve_inputs(definition, inputs)
            except InputError as e:
                for field_name, message in e.fields:
                    where = (*path, "inputs", field_name) if field_name in inputs else (*path,)
                    unknown = message.startswith("not declared")  # the name is what is wrong
                    self.add(where, f"input {field_name!r}: {message}", key=unknown)
        mocks = self.mocks((*path, "mocks"), data.get("mocks"), nodes)
        send = self.sends((*path, "send"), data.get("send"), nodes)
        expect = self.expectation((*path, "expect"), data.get("expect"), nodes)
        timeout = DEFAULT_CASE_TIMEOUT
        if data.get("timeout") is not None:
            try:
                timeout = parse_duration(data["timeout"])
            except ValueError as e:
                self.add((*path, "timeout"), f"timeout: {e}")
        return TestCase(
            name=name.strip(),
            line=self.line(path),
            inputs=inputs,
            mocks=mocks,
            send=send,
            expect=expect,
            timeout=timeout,
        )

    def node(self, path: PathKey, node: Any, nodes: dict[str, str] | None, what: str) -> bool:
        """Whether ``node`` names a node of the definition (a located problem if not)."""
        if not isinstance(node, str):
            self.add(path, f"{what}: give a node id")
            return False
        if nodes is not None and node not in nodes:
            hint = _close(node, list(nodes))
            self.add(path, f"{what}: the definition has no node {node!r}{hint}", key=True)
            return False
        return True

    # -- mocks ------------------------------------------------------------------------------

    def mocks(
        self, path: PathKey, data: Any, nodes: dict[str, str] | None
    ) -> dict[str, list[MockAnswer]]:
        found = self.mapping(path, data, "mocks")
        out: dict[str, list[MockAnswer]] = {}
        for node, answers in (found or {}).items():
            where = (*path, node)
            if not self.node(where, node, nodes, "mock"):
                continue
            kind = nodes.get(node) if nodes is not None else None
            if kind in WORKFLOW_TYPES:
                self.add(
                    where,
                    f"mock: node {node!r} is of type {kind}, which the workflow runs itself: "
                    + _workflow_type_hint(kind),
                    key=True,
                )
                continue
            items = answers if isinstance(answers, list) else [answers]
            if not items:
                self.add(where, f"mock {node!r}: give an answer ({{output: …}} or {{error: …}})")
                continue
            parsed = [
                self.answer((*where, i) if isinstance(answers, list) else where, item, node)
                for i, item in enumerate(items)
            ]
            out[node] = [answer for answer in parsed if answer is not None]
        return out

    def answer(self, path: PathKey, data: Any, node: str) -> MockAnswer | None:
        if not isinstance(data, dict):
            self.add(path, f"mock {node!r}: an answer is {{output: …}} or {{error: …}}")
            return None
        self.keys(path, data, ("output", "error", "retryable", "type", "usage"))
        has_output, has_error = "output" in data, "error" in data
        if has_output == has_error:
            self.add(path, f"mock {node!r}: give exactly one of output or error")
            return None
        if has_error:
            message = data.get("error")
            if not isinstance(message, str) or not message:
                self.add((*path, "error"), f"mock {node!r}: error is the message (text)")
                return None
            retryable = data.get("retryable", True)
            if not isinstance(retryable, bool):
                self.add((*path, "retryable"), f"mock {node!r}: retryable is true or false")
                retryable = True
            error_type = data.get("type", "MockedError")
            if not isinstance(error_type, str) or not error_type:
                self.add((*path, "type"), f"mock {node!r}: type is an error type name")
                error_type = "MockedError"
            return MockAnswer(error=message, retryable=retryable, error_type=error_type)
        usage = data.get("usage")
        if usage is not None and not isinstance(usage, dict):
            self.add((*path, "usage"), f"mock {node!r}: usage is a mapping (prompt_tokens, …)")
            usage = None
        return MockAnswer(output=data.get("output"), usage=usage)

    # -- sends ------------------------------------------------------------------------------

    def sends(self, path: PathKey, data: Any, nodes: dict[str, str] | None) -> list[Send]:
        if data is None:
            return []
        if not isinstance(data, list):
            self.add(path, "send: give a list (- approve: NODE, - event: NAME, - pause…)")
            return []
        out = []
        for index, item in enumerate(data):
            found = self.send((*path, index), item, nodes)
            if found is not None:
                out.append(found)
        return out

    def send(self, path: PathKey, item: Any, nodes: dict[str, str] | None) -> Send | None:
        line = self.line(path)
        if isinstance(item, str):
            if item in _BARE_VERBS:
                return Send(verb=item, line=line)  # type: ignore[arg-type]
            hint = _close(item, list(_VERBS))
            self.add(path, f"send: unknown action {item!r}{hint}; one of {', '.join(_VERBS)}")
            return None
        if not isinstance(item, dict) or len(item) != 1:
            self.add(path, "send: each item is one action (- approve: NODE, - event: NAME…)")
            return None
        ((verb, value),) = item.items()
        where = (*path, verb)
        if verb not in _VERBS:
            hint = _close(str(verb), list(_VERBS))
            self.add(
                where, f"send: unknown action {verb!r}{hint}; one of {', '.join(_VERBS)}", key=True
            )
            return None
        if verb in _BARE_VERBS:
            return Send(verb=verb, line=line)
        if verb == "set_vars":
            values = self.mapping(where, value, "set_vars")
            return Send(verb="set_vars", value=values or {}, line=line) if values else None
        if verb == "event":
            return self._event(where, value, line)
        return self._node_send(where, verb, value, nodes, line)

    def _event(self, where: PathKey, value: Any, line: int) -> Send | None:
        if isinstance(value, str):
            return Send(verb="event", name=value, line=line)
        spec = self.mapping(where, value, "event")
        if spec is None:
            return None
        self.keys(where, spec, ("name", "payload", "correlation"))
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            self.add(where, "event: give its name")
            return None
        correlation = spec.get("correlation")
        return Send(
            verb="event",
            name=name,
            value=spec.get("payload"),
            correlation=None if correlation is None else str(correlation),
            line=line,
        )

    def _node_send(
        self, where: PathKey, verb: str, value: Any, nodes: dict[str, str] | None, line: int
    ) -> Send | None:
        extra = {
            "approve": ("node", "comment", "by"),
            "reject": ("node", "comment", "by"),
            "skip": ("node", "output"),
            "retry": ("node",),
            "fail": ("node", "reason"),
        }[verb]
        if isinstance(value, dict):
            self.keys(where, value, extra)
            node = value.get("node")
            detail = value.get({"skip": "output", "fail": "reason"}.get(verb, "comment"))
            by = value.get("by")
        else:
            node, detail, by = value, None, None
        if not self.node(where, node, nodes, verb):
            return None
        return Send(
            verb=verb,  # type: ignore[arg-type]
            node=node,
            value=detail,
            by=None if by is None else str(by),
            line=line,
        )

    # -- expectations ----------------------------------------------------------------------

    def expectation(self, path: PathKey, data: Any, nodes: dict[str, str] | None) -> Expectation:
        found = self.mapping(path, data, "expect")
        if not found:
            return Expectation()
        self.keys(path, found, ("status", "error", "outputs", "nodes", "vars"))
        status = found.get("status")
        if status is not None and status not in RUN_STATUSES:
            hint = _close(str(status), list(RUN_STATUSES))
            self.add((*path, "status"), f"status: one of {', '.join(RUN_STATUSES)}{hint}")
            status = None
        error = found.get("error")
        if error is not None and not isinstance(error, str):
            self.add((*path, "error"), "error: text the run's error contains")
            error = None
        outputs = self.mapping((*path, "outputs"), found.get("outputs"), "outputs")
        variables = self.mapping((*path, "vars"), found.get("vars"), "vars")
        expected_nodes: dict[str, NodeExpectation] = {}
        for node, spec in (
            self.mapping((*path, "nodes"), found.get("nodes"), "nodes") or {}
        ).items():
            where = (*path, "nodes", node)
            if not self.node(where, node, nodes, "expect"):
                continue
            parsed = self._node_expectation(where, spec)
            if parsed is not None:
                expected_nodes[node] = parsed
        return Expectation(
            status=status,
            error=error,
            outputs=outputs if "outputs" in found else None,
            nodes=expected_nodes,
            vars=variables if "vars" in found else None,
        )

    def _node_expectation(self, where: PathKey, spec: Any) -> NodeExpectation | None:
        if isinstance(spec, str):
            spec = {"status": spec}
        if not isinstance(spec, dict):
            self.add(where, "a node's expectation is a status or {status, attempts, output, error}")
            return None
        self.keys(where, spec, ("status", "attempts", "output", "error"))
        status = spec.get("status")
        if status is not None and status not in NODE_STATUSES:
            hint = _close(str(status), list(NODE_STATUSES))
            self.add(
                (*where, "status") if "status" in spec else where,
                f"status: one of {', '.join(NODE_STATUSES)}{hint}",
            )
            return None
        attempts = spec.get("attempts")
        if attempts is not None and (not isinstance(attempts, int) or isinstance(attempts, bool)):
            self.add((*where, "attempts"), "attempts: a whole number")
            return None
        error = spec.get("error")
        if error is not None and not isinstance(error, str):
            self.add((*where, "error"), "error: text the node's error contains")
            return None
        return NodeExpectation(
            status=status,
            attempts=attempts,
            output=spec.get("output"),
            has_output="output" in spec,
            error=error,
        )


def _node_types(definition: Definition) -> dict[str, str]:
    """Every node of the definition (handlers included) → its canonical type."""
    out = {}
    for node in definition.graph():
        canonical = activities.registry.canonical(node.type) or node.type
        out[node.id] = canonical
    return out


def _workflow_type_hint(kind: str) -> str:
    return {
        "approval": "answer it with `send: [approve: NODE]` (or reject)",
        "wait_for_event": "send the event with `send: [event: NAME]`",
        "wait": "its timer passes at once on the test server",
        "workflow": "mock the child definition's nodes in its own test file",
    }.get(kind, "it cannot be mocked")
