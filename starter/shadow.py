"""Shadow runs: what a candidate definition would change, shown on the deployed version's own
recent runs before the candidate is deployed.

The inputs of the last completed runs of the deployed version are run again through the
candidate on a private time-skipping test server (:mod:`starter.testing.harness`). Every node
whose type has side effects — database writes, storage writes, notifications, HTTP other than
GET, node types Tideflow does not know — is answered with the original run's recorded output
instead of executing (a node the original did not run answers null, still without executing);
what only reads or computes (parsing, AI, code, HTTP GET, SELECT queries) runs for real. What
people did in the original run is done again: its approvals and events are sent to the
candidate. Then the nodes' statuses and outputs of the original and the candidate are
compared.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from interpreter import Definition
from interpreter.node_io import NodeInput
from interpreter.plan import compile_plan, plan_digest
from interpreter.report import RunReport
from starter.client import TideflowClient
from starter.client.listing import visibility_query
from starter.client.redrive import started_input
from starter.registry import Version
from starter.testing.harness import TestServer
from starter.testing.testfile import MockAnswer, Send

READ_ONLY_TYPES = frozenset(
    {
        "documents.parse",
        "ai.extract",
        "ai.classify",
        "ai.summarize",
        "ai.prompt",
        "code.python",
        "storage.read",
    }
)
"""Node types that only read or compute: they run for real in a shadow run. HTTP requests
and SQL queries are judged by what they send; every other type counts as a side effect."""

_READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ONE_SELECT = re.compile(r"^\s*select\b[^;]*;?\s*$", re.IGNORECASE | re.DOTALL)


def has_side_effects(activity_type: str, config: dict[str, Any]) -> bool:
    """Whether a node of this type, with this (evaluated) config, changes something outside
    the run."""
    if activity_type in READ_ONLY_TYPES:
        return False
    if activity_type == "http.request":
        return str(config.get("method") or "GET").upper() not in _READING_METHODS
    if activity_type == "database.query":
        return not _ONE_SELECT.match(str(config.get("sql") or ""))
    return True


class RecordedAnswers:
    """Answers a candidate's side-effecting nodes with the original run's recorded outputs."""

    def __init__(self, original: RunReport) -> None:
        self.original = original
        self.answered: set[str] = set()
        """Nodes answered from the recording."""
        self.unrecorded: set[str] = set()
        """Side-effecting nodes the original has no output for: answered null."""

    def answer(
        self, node: str, label: str, activity_type: str, input: NodeInput, attempt: int
    ) -> MockAnswer | None:
        """The recorded output for a side-effecting node; None (run it) for the others."""
        if not has_side_effects(activity_type, input.config):
            return None
        recorded = self.original.nodes.get(node)
        if recorded is not None and recorded.status == "completed":
            output = recorded.output
            item = re.fullmatch(r".*\[(\d+)\]", label)
            if item is not None:  # one item of a foreach: the item's recorded output
                index = int(item.group(1))
                if isinstance(output, list) and index < len(output):
                    self.answered.add(node)
                    return MockAnswer(output=output[index])
            elif label == node:
                self.answered.add(node)
                return MockAnswer(output=output)
        self.unrecorded.add(node if activity_type != "notify.lifecycle" else "notifications")
        return MockAnswer(output=None)


@dataclass
class NodeChange:
    """How one node differs between the original run and the candidate."""

    node: str
    original_status: str | None
    candidate_status: str | None
    original_output: Any = None
    candidate_output: Any = None

    @property
    def status_changed(self) -> bool:
        """Whether the node ended differently."""
        return self.original_status != self.candidate_status

    @property
    def output_changed(self) -> bool:
        """Whether the node's output differs."""
        return _canonical(self.original_output) != _canonical(self.candidate_output)


@dataclass
class ShadowRun:
    """One original run and the candidate's run of its inputs."""

    workflow_id: str
    inputs: dict[str, Any]
    original: RunReport
    candidate: RunReport | None = None
    changes: list[NodeChange] = field(default_factory=list)
    outputs_changed: bool = False
    answered: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def changed(self) -> bool:
        """Whether anything differs."""
        return bool(self.changes) or self.outputs_changed or self.problem is not None


@dataclass
class ShadowReport:
    """Every shadowed run."""

    name: str
    version: int
    runs: list[ShadowRun] = field(default_factory=list)

    def summary(self) -> str:
        """The last line: how many runs changed, and that no side effect was executed."""
        changed = [r for r in self.runs if r.changed]
        nodes = sum(len(r.changes) for r in self.runs)
        failed = sum(
            1 for r in self.runs if r.problem or (r.candidate and r.candidate.status != "completed")
        )
        answered = sum(len(r.answered) for r in self.runs)
        return (
            f"{len(self.runs)} run(s) of {self.name} version {self.version}: "
            f"{len(changed)} changed ({nodes} node(s)), {len(self.runs) - len(changed)} "
            f"unchanged, {failed} not completed by the candidate; {answered} side-effecting "
            "node(s) answered from the original runs, none executed"
        )

    def as_json(self) -> dict[str, Any]:
        """For ``tideflow shadow --json``."""
        return {
            "name": self.name,
            "version": self.version,
            "runs": [
                {
                    "workflow_id": r.workflow_id,
                    "inputs": r.inputs,
                    "original_status": r.original.status,
                    "candidate_status": r.candidate.status if r.candidate else None,
                    "problem": r.problem,
                    "outputs_changed": r.outputs_changed,
                    "original_outputs": r.original.outputs,
                    "candidate_outputs": r.candidate.outputs if r.candidate else None,
                    "changes": [
                        {
                            "node": c.node,
                            "original_status": c.original_status,
                            "candidate_status": c.candidate_status,
                            "original_output": c.original_output,
                            "candidate_output": c.candidate_output,
                        }
                        for c in r.changes
                    ],
                    "answered_from_original": r.answered,
                    "unrecorded": r.unrecorded,
                }
                for r in self.runs
            ],
            "summary": self.summary(),
        }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --- finding the runs ----------------------------------------------------------------------------


async def recent_runs(
    client: TideflowClient, version: Version, count: int, *, scan: int = 500
) -> list[str]:
    """The workflow ids of the last ``count`` completed runs of ``version``: runs whose memo
    names it, or whose plan is its plan (started from the same file), newest first."""
    digest = plan_digest(compile_plan(version.definition()))
    found: list[str] = []
    query = visibility_query(version.name, "completed")
    for summary in await client.list_runs_matching(query, limit=scan):
        run = client.get_run(summary.workflow_id, summary.run_id)
        memo = await (await run.describe()).memo()
        named = (memo.get("tideflow_registry") or {}).get("version")
        if named is None:
            try:
                started = await started_input(client, summary.workflow_id, summary.run_id)
            except Exception:  # not a Tideflow input
                continue
            plan = started.plan
            if plan is None or plan_digest(plan) != digest:
                continue
        elif named != version.version:
            continue
        found.append(summary.workflow_id)
        if len(found) >= count:
            break
    return found


# --- running the candidate -----------------------------------------------------------------------


def _sends(original: RunReport, candidate: Definition) -> list[Send]:
    """What people did in the original run, to do again: its approvals and events."""
    types = {node.id: node.type for node in candidate.graph()}
    out = []
    for node_id, node in original.nodes.items():
        output = node.output if isinstance(node.output, dict) else {}
        if node.status != "completed" or types.get(node_id) is None:
            continue
        if types[node_id] == "approval" and "approved" in output:
            out.append(
                Send(
                    verb="approve" if output.get("approved") else "reject",
                    node=node_id,
                    value=output.get("comment"),
                    by=output.get("by"),
                )
            )
        elif types[node_id] == "wait_for_event" and output.get("name"):
            out.append(
                Send(
                    verb="event",
                    name=str(output["name"]),
                    value=output.get("payload"),
                    correlation=output.get("correlation"),
                )
            )
    return out


async def shadow(
    client: TideflowClient,
    server: TestServer,
    version: Version,
    candidate: Definition,
    *,
    runs: int = 10,
    timeout: float = 120.0,
) -> ShadowReport:
    """Run the inputs of the last ``runs`` completed runs of ``version`` through ``candidate``
    on ``server`` and compare them node by node."""
    report = ShadowReport(version.name, version.version)
    for workflow_id in await recent_runs(client, version, runs):
        original_run = client.get_run(workflow_id)
        original = await original_run.report()
        started = await started_input(client, workflow_id, original.run_id)
        shadowed = ShadowRun(workflow_id, dict(started.inputs), original)
        book = RecordedAnswers(original)
        outcome = await server.run(
            candidate,
            shadowed.inputs,
            book,
            send=_sends(original, candidate),
            timeout=timeout,
            sends_may_miss=True,
        )
        shadowed.answered = sorted(book.answered)
        shadowed.unrecorded = sorted(book.unrecorded)
        shadowed.problem = outcome.problem
        shadowed.candidate = outcome.report
        if outcome.report is not None:
            shadowed.changes = compare(original, outcome.report)
            shadowed.outputs_changed = _canonical(original.outputs) != _canonical(
                outcome.report.outputs
            )
        report.runs.append(shadowed)
    return report


def compare(original: RunReport, candidate: RunReport) -> list[NodeChange]:
    """The nodes whose status or output differ (a node only one of them has included), in the
    original's order, then the candidate's new nodes."""
    order = list(original.nodes) + [n for n in candidate.nodes if n not in original.nodes]
    out = []
    for node_id in order:
        before, after = original.nodes.get(node_id), candidate.nodes.get(node_id)
        change = NodeChange(
            node=node_id,
            original_status=before.status if before else None,
            candidate_status=after.status if after else None,
            original_output=before.output if before else None,
            candidate_output=after.output if after else None,
        )
        if change.status_changed or change.output_changed:
            out.append(change)
    return out


# --- printing ------------------------------------------------------------------------------------


def report_lines(report: ShadowReport, *, max_diff_lines: int = 20) -> list[str]:
    """What ``tideflow shadow`` prints: each run's changed nodes with a diff of their outputs,
    then the summary line."""
    lines: list[str] = []
    for run in report.runs:
        status = run.candidate.status if run.candidate else "did not finish"
        head = f"run {run.workflow_id}: original {run.original.status}, candidate {status}"
        if not run.changed:
            lines.append(f"{head}: no change")
            continue
        lines.append(f"{head}: {len(run.changes)} node(s) changed")
        if run.problem:
            lines.append(f"  candidate: {run.problem}")
        for change in run.changes:
            lines.extend(_change_lines(change, max_diff_lines))
        if run.outputs_changed and run.candidate is not None:
            lines.append("  outputs changed:")
            lines.extend(_diff(run.original.outputs, run.candidate.outputs, "    ", max_diff_lines))
        if run.answered:
            lines.append("  answered from the original run: " + ", ".join(run.answered))
        if run.unrecorded:
            lines.append(
                "  not executed, no recorded output (answered null): " + ", ".join(run.unrecorded)
            )
    if not report.runs:
        lines.append(f"no completed runs of {report.name} version {report.version} to shadow")
    lines.append(report.summary())
    return lines


def _change_lines(change: NodeChange, limit: int) -> list[str]:
    if change.original_status is None:
        return [f"  {change.node}: new in the candidate ({change.candidate_status})"]
    if change.candidate_status is None:
        return [f"  {change.node}: not in the candidate (was {change.original_status})"]
    parts = []
    if change.status_changed:
        parts.append(f"status {change.original_status} → {change.candidate_status}")
    if change.output_changed:
        parts.append("output changed")
    out = [f"  {change.node}: {', '.join(parts)}"]
    if change.output_changed:
        out.extend(_diff(change.original_output, change.candidate_output, "    ", limit))
    return out


def _diff(before: Any, after: Any, indent: str, limit: int) -> list[str]:
    old = json.dumps(before, indent=2, sort_keys=True, default=str).splitlines()
    new = json.dumps(after, indent=2, sort_keys=True, default=str).splitlines()
    if len(old) == 1 and len(new) == 1:
        return [f"{indent}- {old[0]}", f"{indent}+ {new[0]}"]
    lines = [
        line
        for line in difflib.unified_diff(old, new, "original", "candidate", lineterm="", n=1)
        if not line.startswith(("---", "+++", "@@"))
    ]
    shown = [f"{indent}{line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"{indent}… {len(lines) - limit} more line(s) (--json shows all)")
    return shown


async def shadow_runs(
    client: TideflowClient,
    version: Version,
    candidate: Definition,
    *,
    runs: int = 10,
    extra_file_roots: Sequence[Any] = (),
) -> ShadowReport:
    """:func:`shadow` on a test server of its own whose worker has this machine's settings
    (its databases and files, for what the candidate reads)."""
    from activities import WorkerSettings
    from starter.testing.harness import test_server

    async with test_server(WorkerSettings.from_env(), file_roots=extra_file_roots) as server:
        return await shadow(client, server, version, candidate, runs=runs)
