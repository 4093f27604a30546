"""What ``tideflow run`` and ``tideflow status`` print: live node progress on a terminal (rich),
plain lines otherwise, and readable tables of reports, states and run lists.

Everything that comes from a run (node ids, statuses, errors, outputs) is put on screen as
:class:`rich.text.Text`, never as console markup: a ``[`` in an error message or a status this
module has no colour for must not be able to break the rendering.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowFailureError

from interpreter import Definition
from interpreter.report import BudgetReport, RunReport, RunState

_STYLE = {
    "completed": "green",
    "failed": "red",
    "skipped": "dim",
    "pending": "dim",
    "ready": "cyan",
    "running": "cyan",
    "waiting": "yellow",
    "paused": "yellow",
    "needs_attention": "bold red",
    "cancelled": "magenta",
    "terminated": "magenta",
    "timed_out": "red",
}
"""Colours of known statuses; any other status is shown unstyled."""

PIPED_WIDTH = 200
"""Width of tables written to a file or a pipe: wide enough not to fold ids (rich would use 80)."""
_EXPLAINED = frozenset({"failed", "needs_attention", "skipped", "cancelled"})
"""Statuses whose transition detail (the error, the reason) the node table shows."""
POLL_SECONDS = 0.5
FINAL_QUERY_SECONDS = 5.0
"""How long the last look at an ended run may take (a worker replays it to answer)."""


def console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr): the terminal's width, or :data:`PIPED_WIDTH`."""
    terminal = Console(stderr=stderr).is_terminal
    return Console(stderr=stderr, width=None if terminal else PIPED_WIDTH)


def status_text(status: str, detail: str | None = None) -> Text:
    """A status (and what it waits for) in its colour; plain for statuses without one."""
    shown = f"{status} ({detail})" if detail else status
    return Text(shown, style=_STYLE.get(status, ""))


# --- retries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """A node's activity that failed and is being tried again (Temporal's pending activity)."""

    label: str
    """The node id, or ``node[index]`` for one item of a foreach."""
    attempt: int
    """The attempt now scheduled or running (2 for the first retry)."""
    max_attempts: int | None
    """None when the retry policy has no limit."""
    last_failure: str
    at: str
    """When the failed attempt ended (ISO 8601, UTC), or empty."""

    @property
    def node(self) -> str:
        """The node the label belongs to."""
        return self.label.partition("[")[0]

    @property
    def attempts(self) -> str:
        """``2/3``, or ``2`` without a limit."""
        return f"{self.attempt}/{self.max_attempts}" if self.max_attempts else str(self.attempt)

    def describe(self) -> str:
        """``attempt 2/3 after: <what the last attempt said>``."""
        return f"attempt {self.attempts} after: {self.last_failure}"


_RERUN = re.compile(r"~\d+$")
_NODE_PREFIX = re.compile(r"^node '[^']*' \([^)]*\): ")


async def retries(handle: Any, timeout: float = POLL_SECONDS * 4) -> list[Retry]:
    """The run's activities now on their second or later attempt (empty if Temporal cannot
    say: the workflow itself only learns of an activity's retries when it ends)."""
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=timeout))
    except Exception:  # gone, or the server is slow: progress goes on without
        return []
    found = []
    for pending in description.raw_description.pending_activities:
        if pending.attempt <= 1:
            continue
        failure = pending.last_failure.message if pending.HasField("last_failure") else ""
        # Node errors start with "node 'id' (type): "; the line already names the node.
        failure = _NODE_PREFIX.sub("", failure, count=1)
        ended = (
            _iso(pending.last_attempt_complete_time.ToDatetime(tzinfo=UTC))
            if pending.HasField("last_attempt_complete_time")
            else ""
        )
        found.append(
            Retry(
                label=_RERUN.sub("", pending.activity_id),
                attempt=pending.attempt,
                max_attempts=pending.maximum_attempts or None,
                last_failure=_one_line(failure) or "an error",
                at=ended,
            )
        )
    return found


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- following a run -------------------------------------------------------------------------


async def follow(client: Client, workflow_id: str, definition: Definition | None = None) -> None:
    """Show the run's progress until it ends: a live table on a terminal, lines otherwise.

    Retries come from Temporal's pending activities; the last transitions of a run that ends
    between two polls are printed from a final look at its state (or its report).
    """
    handle = client.get_workflow_handle(workflow_id)
    done = asyncio.ensure_future(handle.result())
    screen = Console(stderr=True)
    try:
        if screen.is_terminal:
            await _follow_live(handle, done, screen)
        else:
            await _follow_lines(handle, done)
    finally:
        if not done.done():
            done.cancel()
        await asyncio.gather(done, return_exceptions=True)


async def _follow_live(handle: Any, done: asyncio.Future[Any], screen: Console) -> None:
    with Live(console=screen, refresh_per_second=4, transient=False) as live:
        while not done.done():
            state, pending = await asyncio.gather(_state(handle), retries(handle))
            if state is not None:
                live.update(state_table(state, pending))
            await asyncio.wait([done], timeout=POLL_SECONDS)
        final = await _state(handle, FINAL_QUERY_SECONDS)
        if final is not None:
            live.update(state_table(final))


async def _follow_lines(handle: Any, done: asyncio.Future[Any]) -> None:
    printer = LinePrinter()
    while not done.done():
        state, pending = await asyncio.gather(_state(handle), retries(handle))
        printer.retries(pending)
        if state is not None:
            printer.transitions(state)
        await asyncio.wait([done], timeout=POLL_SECONDS)
    final = await _state(handle, FINAL_QUERY_SECONDS)
    if final is not None:
        printer.transitions(final)
        return
    report = _report_of(done)
    if report is not None:
        printer.final_statuses(report)


class LinePrinter:
    """Prints a run's transitions and retries as plain lines on stderr, each once."""

    def __init__(self) -> None:
        self._seen = 0
        self._last: dict[str, str] = {}
        self._retries: set[tuple[str, int]] = set()

    def transitions(self, state: RunState) -> None:
        """Print the transitions of ``state.history`` not printed yet."""
        for transition in state.history[self._seen :]:
            if transition.node is None:
                continue
            self._last[transition.node] = transition.status
            detail = f" ({transition.detail})" if transition.detail else ""
            self._print(f"{transition.at} {transition.node}: {transition.status}{detail}")
        self._seen = max(self._seen, len(state.history))

    def retries(self, pending: Iterable[Retry]) -> None:
        """Print each retry (node and attempt) once."""
        for retry in pending:
            if (retry.label, retry.attempt) in self._retries:
                continue
            self._retries.add((retry.label, retry.attempt))
            self._print(f"{retry.at} {retry.label}: {retry.describe()}".lstrip())

    def final_statuses(self, report: RunReport) -> None:
        """When the final state cannot be asked for: each node whose last printed status is
        not its final one, from the report."""
        for node_id, node in report.nodes.items():
            if self._last.get(node_id) == node.status:
                continue
            self._last[node_id] = node.status
            detail = f" ({_one_line(node.error)})" if node.error else ""
            self._print(f"{node.ended_at or ''} {node_id}: {node.status}{detail}".lstrip())

    @staticmethod
    def _print(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _report_of(done: asyncio.Future[Any]) -> RunReport | None:
    from starter.client import report_from_failure

    if done.cancelled():
        return None
    error = done.exception()
    if error is None:
        result = done.result()
        return result if isinstance(result, RunReport) else None
    if isinstance(error, WorkflowFailureError):
        return report_from_failure(error)
    return None


async def _state(handle: Any, timeout: float = POLL_SECONDS * 4) -> RunState | None:
    from interpreter.workflow import TideflowWorkflow

    try:
        # Short: a run no worker has picked up yet cannot answer, and the result may come first.
        state: RunState = await handle.query(
            TideflowWorkflow.state, rpc_timeout=timedelta(seconds=timeout)
        )
        return state
    except Exception:  # not started yet, or already closed: the result will tell
        return None


# --- tables ----------------------------------------------------------------------------------


def state_table(state: RunState, pending: Sequence[Retry] = ()) -> Table:
    """A table of nodes: status (and what it waits for), attempts, retries in progress."""
    title = f"status: {state.status}" + (" (paused)" if state.paused else "")
    table = Table(title=Text(title, style=_STYLE.get(state.status, "")))
    table.add_column("node", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("detail", overflow="fold", max_width=80)
    by_node: dict[str, list[Retry]] = {}
    for retry in pending:
        by_node.setdefault(retry.node, []).append(retry)
    why: dict[str, str] = {}  # the detail of each node's latest transition (an error, a reason)
    for transition in state.history:
        if transition.node is not None:
            why[transition.node] = transition.detail or ""
    for node_id, status in state.nodes.items():
        node_retries = by_node.get(node_id, [])
        attempts = str(state.attempts.get(node_id, ""))
        notes = []
        if node_id in state.waiting:
            notes.append(f"waiting for {state.waiting[node_id]}")
        elif state.attention.get(node_id) == "budget":
            notes.append("stopped by the budget: raise it with `tideflow budget`")
        elif status in _EXPLAINED and why.get(node_id):
            notes.append(why[node_id])
        for retry in node_retries:
            prefix = "" if retry.label == node_id else f"{retry.label} "
            notes.append(prefix + retry.describe())
        if len(node_retries) == 1 and node_retries[0].label == node_id:
            attempts = node_retries[0].attempts
        table.add_row(Text(node_id), status_text(status), attempts, Text("; ".join(notes)))
    return table


def print_state(
    workflow_id: str,
    state: RunState,
    pending: Sequence[Retry] = (),
    web_ui: str | None = None,
) -> None:
    """``tideflow status``: the node table, vars, the error and the Web UI link."""
    out = console()
    out.print(Text(workflow_id, style="bold"))
    out.print(state_table(state, pending))
    if state.vars:
        out.print(Text("vars: " + json.dumps(state.vars, default=str)))
    if state.budget is not None:
        out.print(Text(budget_line(state.budget)))
    if state.error:
        out.print(Text.assemble(("error: ", "red"), state.error))
    if web_ui:
        out.print(Text(f"Web UI: {web_ui}"), soft_wrap=True)


def print_report(report: RunReport) -> None:
    """A run report as a table plus outputs."""
    out = console()
    out.print(
        Text.assemble(
            (report.definition.name, "bold"),
            f" {report.definition.version} · {report.workflow_id} · ",
            status_text(report.status),
        )
    )
    table = Table()
    table.add_column("node", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("output / error", overflow="fold", max_width=80)
    for node_id, node in report.nodes.items():
        shown = node.error if node.error else _short(node.output)
        table.add_row(Text(node_id), status_text(node.status), str(node.attempts), Text(shown))
    out.print(table)
    if report.reused:
        out.print(Text("reused from the redriven run: " + ", ".join(report.reused)))
    if report.outputs:
        out.print(Text("outputs: " + json.dumps(report.outputs, indent=2, default=str)))
    if report.usage.ai_tokens:
        cost = f", ${report.usage.cost_usd:.4f}" if report.usage.cost_usd is not None else ""
        out.print(Text(f"AI tokens: {report.usage.ai_tokens}{cost}"))
    if report.budget is not None:
        out.print(Text(budget_line(report.budget)))
    if report.error:
        out.print(Text.assemble(("error: ", "red"), report.error))


def budget_line(budget: BudgetReport) -> str:
    """Spend against budget: ``budget: $0.0150 of $0.0100 spent (over), 900 of 5,000 tokens``.
    A node's own budget (without a run budget) shows as the spend alone."""
    parts = []
    if budget.cost_usd is not None:
        over = " (over)" if budget.spent_usd > budget.cost_usd else ""
        parts.append(f"${budget.spent_usd:.4f} of ${budget.cost_usd:.4f} spent{over}")
    elif budget.spent_usd:
        parts.append(f"${budget.spent_usd:.4f} spent")
    if budget.tokens is not None:
        over = " (over)" if budget.spent_tokens > budget.tokens else ""
        parts.append(f"{budget.spent_tokens:,} of {budget.tokens:,} tokens{over}")
    else:
        parts.append(f"{budget.spent_tokens:,} tokens")
    return "budget: " + ", ".join(parts)


def print_runs(runs: Sequence[Any]) -> None:
    """``tideflow list``."""
    table = Table()
    # Ids and statuses whole (ids are copied, statuses read); the rest folds.
    table.add_column("workflow id", no_wrap=True)
    table.add_column("definition", overflow="fold")
    table.add_column("version", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("started", overflow="fold")
    for run in runs:
        table.add_row(
            Text(run.workflow_id),
            Text(run.definition),
            Text(run.version),
            status_text(run.status),
            Text(run.started_at.replace("T", " ")[:19]),
        )
    console().print(table)


def _short(value: Any, limit: int = 120) -> str:
    if value is None:
        return ""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_stats(stats: Any) -> None:
    """``tideflow stats``: runs per definition, then node attempts per node type."""
    out = console()
    span = stats.until - stats.since
    window = f"runs started in the last {_span(span)}" + (
        f", definition {stats.definition}" if stats.definition else ""
    )
    out.print(Text(window, style="bold"))
    runs = Table(title="runs by definition", title_justify="left")
    for name in ("definition", "started", "completed", "failed", "cancelled", "running"):
        runs.add_column(name, justify="left" if name == "definition" else "right")
    for name in ("success", "p50", "p95", "retries", "errors", "AI tokens", "cost"):
        runs.add_column(name, justify="left" if name == "errors" else "right")
    for entry in stats.definitions:
        counts, nodes = entry.runs, entry.nodes
        runs.add_row(
            Text(entry.definition or "(unnamed)"),
            str(counts.started),
            str(counts.completed),
            str(counts.failed),
            str(counts.cancelled),
            str(counts.running),
            _rate(entry.success_rate),
            _seconds(entry.duration_p50),
            _seconds(entry.duration_p95),
            str(nodes.retries),
            Text(_errors(nodes.errors)),
            f"{nodes.ai_tokens:,}",
            f"${nodes.cost_usd:.4f}",
        )
    out.print(runs)
    nodes_table = Table(title="node attempts by type", title_justify="left")
    for name in ("node type", "attempts", "completed", "failed", "retries", "success"):
        nodes_table.add_column(name, justify="left" if name == "node type" else "right")
    for name in ("p50", "p95", "errors", "AI tokens", "cost", "CPU s", "peak MiB"):
        nodes_table.add_column(name, justify="left" if name == "errors" else "right")
    for entry in stats.node_types:
        nodes_table.add_row(
            Text(entry.node_type),
            str(entry.attempts),
            str(entry.completed),
            str(entry.failed),
            str(entry.retries),
            _rate(entry.success_rate),
            _seconds(entry.duration_p50),
            _seconds(entry.duration_p95),
            Text(_errors(entry.errors)),
            f"{entry.ai_tokens:,}",
            f"${entry.cost_usd:.4f}",
            f"{entry.cpu_seconds:.2f}",
            f"{entry.peak_rss_mb:.0f}" if entry.peak_rss_mb is not None else "",
        )
    out.print(nodes_table)
    if stats.runs_truncated:
        out.print(Text("note: only the most recent runs were read (narrow --since)", style="dim"))


def _span(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.0f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in list(errors.items())[:3])
