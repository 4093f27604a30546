"""Running test files: every case through the real ``TideflowWorkflow`` on the test server, its
mocked nodes answered by the test worker, and the outcome checked against what it expects."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interpreter.report import RunReport, RunState
from starter.testing.harness import CaseRun, TestServer, test_server
from starter.testing.mocks import MockTable
from starter.testing.testfile import (
    TEST_SUFFIXES,
    Expectation,
    TestCase,
    TestFile,
    TestFileError,
    is_test_file,
    load_test_file,
    test_file_for,
)


@dataclass
class CaseResult:
    """One case's outcome: passed when ``problems`` is empty."""

    file: str
    line: int
    name: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: RunReport | None = None

    @property
    def passed(self) -> bool:
        """Whether the case met every expectation."""
        return not self.problems

    def line_text(self) -> str:
        """The case's one line: ``PASS FILE:LINE: name (0.4 s)`` or ``FAIL …: what differed``."""
        where = f"{self.file}:{self.line}: {self.name}"
        if self.passed:
            return f"PASS {where} ({self.seconds:.1f} s)"
        return f"FAIL {where}: " + "; ".join(self.problems)

    def as_json(self) -> dict[str, Any]:
        """For ``tideflow test --json``."""
        return {
            "file": self.file,
            "line": self.line,
            "name": self.name,
            "passed": self.passed,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
            "report": self.report.model_dump(mode="json") if self.report else None,
        }


@dataclass
class TestReport:
    """Every case of a test run."""

    __test__ = False  # not a pytest class

    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(case.passed for case in self.cases)

    @property
    def failed(self) -> int:
        """How many cases failed."""
        return len(self.cases) - self.passed

    def summary(self) -> str:
        """``N passed, N failed``."""
        return f"{self.passed} passed, {self.failed} failed"

    def as_json(self) -> dict[str, Any]:
        """For ``tideflow test --json``."""
        return {
            "cases": [case.as_json() for case in self.cases],
            "passed": self.passed,
            "failed": self.failed,
        }


def find_test_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The test files ``paths`` name: test files themselves, the test file beside a definition,
    every test file in a folder. Returns them and a problem line for each path naming none."""
    found: list[Path] = []
    missing: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for s in TEST_SUFFIXES for p in path.glob(f"*{s}"))
            if not inside:
                missing.append(f"{path}: no test files (NAME.test.yaml) in this folder")
            found.extend(inside)
        elif is_test_file(path):
            if path.is_file():
                found.append(path)
            else:
                missing.append(f"{path}:1:1: no such file")
        elif path.is_file():
            beside = test_file_for(path)
            if beside is None:
                missing.append(f"{path}: no test file beside it (write {path.stem}.test.yaml)")
            else:
                found.append(beside)
        else:
            missing.append(f"{path}:1:1: no such file")
    return list(dict.fromkeys(found)), missing


def load_all(paths: Sequence[Path], *, definition: str | Path | None = None) -> list[TestFile]:
    """Every test file, checked; :class:`TestFileError` with the problems of all of them."""
    loaded: list[TestFile] = []
    problems = []
    for path in paths:
        try:
            loaded.append(load_test_file(path, definition=definition))
        except TestFileError as e:
            problems.extend(e.problems)
    if problems:
        raise TestFileError(problems)
    return loaded


async def run_test_files(files: Sequence[TestFile], server: TestServer | None = None) -> TestReport:
    """Run every case of ``files`` on ``server`` (or a test server of its own)."""
    if server is None:
        roots = {f.path.parent.resolve() for f in files} | {
            f.definition_path.parent.resolve() for f in files
        }
        async with test_server(file_roots=sorted(roots)) as own:
            return await run_test_files(files, own)
    report = TestReport()
    for test_file in files:
        for case in test_file.cases:
            report.cases.append(await run_case(server, test_file, case))
    return report


async def run_case(server: TestServer, test_file: TestFile, case: TestCase) -> CaseResult:
    """Run one case and check what it expects."""
    started = time.monotonic()
    outcome = await server.run(
        test_file.definition,
        files_beside(case.inputs, test_file.path.parent),
        MockTable(case.mocks),
        send=case.send,
        timeout=case.timeout,
    )
    result = CaseResult(
        file=str(test_file.path),
        line=case.line,
        name=case.name,
        report=outcome.report,
        seconds=time.monotonic() - started,
    )
    result.problems = check(case.expect, outcome)
    return result


def files_beside(inputs: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``inputs`` with each relative path naming a file beside the test file made absolute, so
    a test file runs the same from any working directory."""
    out = dict(inputs)
    for name, value in inputs.items():
        if not isinstance(value, str) or not value.strip() or "://" in value:
            continue
        if Path(value).is_absolute() or "\n" in value:
            continue
        try:
            candidate = folder / value
            if candidate.is_file():
                out[name] = str(candidate.resolve())
        except (OSError, ValueError):  # a name too long for the system, a NUL byte…
            continue
    return out


def check(expect: Expectation, outcome: CaseRun) -> list[str]:
    """What differs between ``expect`` and how the run went (empty: it passed)."""
    if outcome.problem is not None:
        return [outcome.problem]
    report = outcome.report
    assert report is not None
    problems: list[str] = []
    error = f" ({report.error})" if report.error else ""
    if expect.status is not None and report.status != expect.status:
        problems.append(f"status: expected {expect.status}, got {report.status}{error}")
    elif expect.status is None and report.status != "completed" and not expect.error:
        problems.append(f"the run {report.status}{error} (expect status: to test a failure)")
    if expect.error is not None and expect.error not in (report.error or ""):
        problems.append(f"error: expected it to contain {expect.error!r}, got {report.error!r}")
    if expect.outputs is not None:
        problems.extend(differences("outputs", expect.outputs, report.outputs))
    for node_id, wanted in expect.nodes.items():
        got = report.nodes.get(node_id)
        status = got.status if got else "pending"
        where = f"node {node_id}"
        if wanted.status is not None and status != wanted.status:
            detail = f" ({got.error})" if got and got.error else ""
            problems.append(f"{where}: expected {wanted.status}, got {status}{detail}")
        if wanted.attempts is not None and (got.attempts if got else 0) != wanted.attempts:
            problems.append(
                f"{where} attempts: expected {wanted.attempts}, got {got.attempts if got else 0}"
            )
        if wanted.has_output:
            problems.extend(
                differences(f"{where} output", wanted.output, got.output if got else None)
            )
        if wanted.error is not None and wanted.error not in ((got.error if got else None) or ""):
            problems.append(
                f"{where} error: expected it to contain {wanted.error!r}, "
                f"got {(got.error if got else None)!r}"
            )
    if expect.vars is not None:
        state: RunState | None = outcome.state
        if state is None:
            problems.append("vars: the run's final state could not be read")
        else:
            problems.extend(differences("vars", expect.vars, state.vars))
    return problems


def differences(where: str, expected: Any, got: Any) -> list[str]:
    """Where ``got`` differs from ``expected``: mappings match when every key given matches
    (others are ignored), lists item by item, other values by equality."""
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected a mapping, got {_short(got)}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in got:
                out.append(f"{where}.{key}: missing")
            else:
                out.extend(differences(f"{where}.{key}", value, got[key]))
        return out
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{where}: expected {_short(expected)}, got {_short(got)}"]
        return [
            problem
            for index, (e, g) in enumerate(zip(expected, got, strict=True))
            for problem in differences(f"{where}[{index}]", e, g)
        ]
    if expected != got or isinstance(expected, bool) != isinstance(got, bool):
        return [f"{where}: expected {_short(expected)}, got {_short(got)}"]
    return []


def _short(value: Any, limit: int = 80) -> str:
    import json

    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
