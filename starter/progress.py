"""What ``tideflow run`` and ``tideflow status`` print: live node progress on a terminal (rich),
plain lines otherwise, and readable tables of reports, states and run lists."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from temporalio.client import Client

from interpreter import Definition
from interpreter.report import RunReport, RunState

_STYLE = {
    "completed": "green",
    "failed": "red",
    "skipped": "dim",
    "running": "cyan",
    "waiting": "yellow",
    "needs_attention": "bold red",
    "cancelled": "magenta",
    "ready": "cyan",
}
POLL_SECONDS = 0.5


async def follow(client: Client, workflow_id: str, definition: Definition) -> None:
    """Show the run's progress until it ends: a live table on a terminal, lines otherwise."""
    handle = client.get_workflow_handle(workflow_id)
    done = asyncio.ensure_future(handle.result())
    console = Console(stderr=True)
    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                while not done.done():
                    state = await _state(handle)
                    if state is not None:
                        live.update(state_table(state))
                    await asyncio.wait([done], timeout=POLL_SECONDS)
        else:
            seen = 0
            while not done.done():
                state = await _state(handle)
                if state is not None:
                    for transition in state.history[seen:]:
                        if transition.node is not None:
                            print(
                                f"{transition.at} {transition.node}: {transition.status}"
                                + (f" ({transition.detail})" if transition.detail else ""),
                                file=sys.stderr,
                            )
                    seen = len(state.history)
                await asyncio.wait([done], timeout=POLL_SECONDS)
    finally:
        if not done.done():
            done.cancel()
        await asyncio.gather(done, return_exceptions=True)


async def _state(handle: Any) -> RunState | None:
    from interpreter.workflow import TideflowWorkflow

    try:
        # Short: a run no worker has picked up yet cannot answer, and the result may come first.
        state: RunState = await handle.query(
            TideflowWorkflow.state, rpc_timeout=timedelta(seconds=POLL_SECONDS * 4)
        )
        return state
    except Exception:  # not started yet, or already closed: the result will tell
        return None


def state_table(state: RunState) -> Table:
    """A table of nodes with their status and attempts."""
    table = Table(title=f"status: {state.status}" + (" (paused)" if state.paused else ""))
    table.add_column("node")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    for node_id, status in state.nodes.items():
        detail = state.waiting.get(node_id)
        shown = f"{status} ({detail})" if detail else status
        table.add_row(
            node_id, f"[{_STYLE.get(status, '')}]{shown}[/]", str(state.attempts.get(node_id, ""))
        )
    return table


def print_state(workflow_id: str, state: RunState) -> None:
    """``tideflow status``: the node table, vars and the latest transitions."""
    console = Console()
    console.print(f"[bold]{workflow_id}[/]")
    console.print(state_table(state))
    if state.vars:
        console.print("vars: " + json.dumps(state.vars, default=str))
    if state.error:
        console.print(f"[red]error:[/] {state.error}")


def print_report(report: RunReport) -> None:
    """A run report as a table plus outputs."""
    console = Console()
    style = _STYLE.get(report.status, "")
    console.print(
        f"[bold]{report.definition.name}[/] {report.definition.version} · "
        f"{report.workflow_id} · [{style}]{report.status}[/]"
    )
    table = Table()
    table.add_column("node")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("output / error", overflow="fold", max_width=80)
    for node_id, node in report.nodes.items():
        shown = node.error if node.error else _short(node.output)
        table.add_row(
            node_id,
            f"[{_STYLE.get(node.status, '')}]{node.status}[/]",
            str(node.attempts),
            shown,
        )
    console.print(table)
    if report.outputs:
        console.print("outputs: " + json.dumps(report.outputs, indent=2, default=str))
    if report.usage.ai_tokens:
        cost = f", ${report.usage.cost_usd:.4f}" if report.usage.cost_usd is not None else ""
        console.print(f"AI tokens: {report.usage.ai_tokens}{cost}")
    if report.error:
        console.print(f"[red]error:[/] {report.error}")


def print_runs(runs: Sequence[Any]) -> None:
    """``tideflow list``."""
    table = Table()
    for column in ("workflow id", "definition", "version", "status", "started"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run.workflow_id,
            run.definition,
            run.version,
            f"[{_STYLE.get(run.status, '')}]{run.status}[/]",
            run.started_at,
        )
    Console().print(table)


def _short(value: Any, limit: int = 120) -> str:
    if value is None:
        return ""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
