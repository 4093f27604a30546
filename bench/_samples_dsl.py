"""The DSL interpreter of temporalio/samples-python (``dsl/``), re-implemented for the comparison.

The sample is not a package, so its approach is rewritten here from its public description,
keeping what makes its cost: one workflow receives the whole parsed YAML as its input — a tree of
``sequence`` (``elements`` run one after another), ``parallel`` (``branches`` run at once with
``asyncio.gather``) and ``activity`` leaves (an activity name, the names of the variables passed
as its arguments, the variable its result goes to) — walks it recursively, and returns the
variables, which hold the initial values and every result. Activities run with a one-minute
start-to-close timeout and the server's default retry policy, as in the sample.

As in the sample, a failing branch of a ``parallel`` fails the run while its sibling branches
are not cancelled: ``asyncio.gather`` raises the first error and cancels nothing. That is the
behaviour being compared against, so it is kept (a TaskGroup would cancel them).

For the benchmark the leaves call ``bench.noop`` (:mod:`bench._noop`), and each argument
variable holds the very ``NodeInput`` the other engines send (``{"node_id", "config"}``), so the
activity does the same work on the same payload.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow

SAMPLES_DSL_NAME = "BenchSamplesDSL"


@dataclass
class ActivityInvocation:
    """An activity call: its type, the variables passed as arguments, where the result goes."""

    name: str
    arguments: list[str] = field(default_factory=list)
    result: str | None = None


@dataclass
class ActivityStatement:
    """``activity: {name, arguments, result}``."""

    activity: ActivityInvocation


@dataclass
class Elements:
    """The statements of a sequence, in order."""

    elements: list[Statement]


@dataclass
class SequenceStatement:
    """``sequence: {elements: [...]}``: one statement after another."""

    sequence: Elements


@dataclass
class Branches:
    """The statements of a parallel block."""

    branches: list[Statement]


@dataclass
class ParallelStatement:
    """``parallel: {branches: [...]}``: every branch at once."""

    parallel: Branches


Statement = ActivityStatement | SequenceStatement | ParallelStatement


@dataclass
class DSLInput:
    """The workflow's input: the statement tree and the initial variables."""

    root: Statement
    variables: dict[str, Any] = field(default_factory=dict)


def parse(text: str) -> DSLInput:
    """The workflow input from the YAML text (the sample does this with dacite)."""
    import yaml

    data = yaml.safe_load(text)
    return DSLInput(root=_statement(data["root"]), variables=dict(data.get("variables") or {}))


def _statement(data: dict[str, Any]) -> Statement:
    if "activity" in data:
        call = data["activity"]
        return ActivityStatement(
            ActivityInvocation(
                name=call["name"],
                arguments=list(call.get("arguments") or []),
                result=call.get("result"),
            )
        )
    if "sequence" in data:
        return SequenceStatement(Elements([_statement(s) for s in data["sequence"]["elements"]]))
    if "parallel" in data:
        return ParallelStatement(Branches([_statement(s) for s in data["parallel"]["branches"]]))
    raise ValueError(f"not a statement: {sorted(data)}")


@workflow.defn(name=SAMPLES_DSL_NAME)
class SamplesDSLWorkflow:
    """Interprets a :class:`DSLInput`; returns the variables."""

    def __init__(self) -> None:
        self.variables: dict[str, Any] = {}

    @workflow.run
    async def run(self, input: DSLInput) -> dict[str, Any]:
        """Execute the root statement."""
        self.variables = dict(input.variables)
        workflow.logger.info("Running DSL workflow")
        await self.execute_statement(input.root)
        workflow.logger.info("DSL workflow completed")
        return self.variables

    async def execute_statement(self, statement: Statement) -> None:
        """One statement, recursively."""
        if isinstance(statement, ActivityStatement):
            call = statement.activity
            result = await workflow.execute_activity(
                call.name,
                args=[self.variables.get(name, "") for name in call.arguments],
                start_to_close_timeout=timedelta(minutes=1),
            )
            if call.result:
                self.variables[call.result] = result
        elif isinstance(statement, SequenceStatement):
            for element in statement.sequence.elements:
                await self.execute_statement(element)
        elif isinstance(statement, ParallelStatement):
            # As the sample: the first failure is raised, the other branches keep running.
            await asyncio.gather(
                *(self.execute_statement(branch) for branch in statement.parallel.branches)
            )
