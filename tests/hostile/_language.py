"""Helpers of the hostile language tests: run the loader and validator on a definition and
check that the outcome is well formed, in this process or in a child held to limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import tests.testing_node_types  # noqa: F401  (test.* types in the catalog)
from activities import registry
from interpreter.loader import Problem, from_data, parse_yaml
from interpreter.model import Definition
from interpreter.node_types import WORKFLOW_TYPES
from interpreter.validate import check

REPO = Path(__file__).resolve().parents[2]
"""The checkout under test (a child process imports the same code)."""

NODE_TYPES = sorted({*registry.names(), *WORKFLOW_TYPES})
"""Every node type a definition may name: registered activities, their aliases, and the types
the workflow runs itself."""


def outcome(text: str, file: str = "fuzz.yaml") -> tuple[Definition | None, list[Problem]]:
    """Load and validate YAML text as ``tideflow validate`` does; the outcome is checked."""
    definition, problems = check(parse_yaml(text, file), registry)
    assert_well_formed(definition, problems, file)
    return definition, problems


def outcome_of_data(data: Any) -> tuple[Definition | None, list[Problem]]:
    """Validate already-parsed data as the API and the workflow do; the outcome is checked."""
    definition, problems = check(from_data(data, "<data>"), registry)
    assert_well_formed(definition, problems, "<data>")
    return definition, problems


def assert_well_formed(definition: Definition | None, problems: list[Problem], file: str) -> None:
    """A valid definition and no problems, or no definition and located one-line problems."""
    if definition is not None and not problems:
        return
    assert problems, "no definition and no problem: the user would be told nothing"
    for problem in problems:
        assert problem.file == file
        assert problem.line >= 1 and problem.column >= 1, problem
        assert problem.message.strip(), problem
        assert "\n" not in problem.message and "\r" not in problem.message, problem
        assert "Traceback" not in problem.message, problem


_CHILD = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import tests.testing_node_types
    from activities import registry
    from interpreter.loader import parse_yaml
    from interpreter.validate import check
    for line in sys.stdin:
        definition, problems = check(parse_yaml(json.loads(line), "child.yaml"), registry)
        print(json.dumps({
            "valid": definition is not None and not problems,
            "problems": [[p.line, p.column, p.message] for p in problems],
        }), flush=True)
""")


def outcomes_in_child(
    texts: list[str], *, memory_mb: int = 1024, timeout: float = 120
) -> list[dict[str, Any]]:
    """Validate each text in a child process held to ``memory_mb`` of address space, so a
    crash, a runaway allocation or a hang fails the test instead of killing the test run."""
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(memory_mb * 2**20)],
        input="".join(json.dumps(t) + "\n" for t in texts),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, (
        f"the validator's process ended with {completed.returncode}: {completed.stderr[-2000:]}"
    )
    return [json.loads(line) for line in completed.stdout.splitlines()]


def run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``tideflow ARGV`` in a child process (a crash is its exit code, not ours)."""
    return subprocess.run(
        [sys.executable, "-m", "starter.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=timeout,
        check=False,
    )
