"""``tideflow`` on a pseudo-terminal, as a person sees it: the real script runs under pexpect
(so rich draws its live tables and colours), its output goes through a VT100 emulator (pyte),
and the tests read the screen, against the session's dev server and worker."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest
from rich.console import Console

from interpreter.report import (
    DefinitionRef,
    NodeReport,
    RunReport,
    RunState,
    Transition,
)
from starter import client as tideflow_client
from starter.client import RunSummary
from starter.progress import print_report, print_runs, print_state, state_table
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer
from tests.test_cli import OPERATED, RETRIED, script_flaky_endpoint, write

REPO = Path(__file__).resolve().parent.parent
TIDEFLOW = Path(sys.executable).parent / "tideflow"
COLUMNS, ROWS = 140, 80


class Terminal:
    """One ``tideflow`` command on a pseudo-terminal of COLUMNS x ROWS, read through pyte."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self._stream = pyte.Stream(self.screen)
        self.raw: list[str] = []
        command = [str(TIDEFLOW)] if TIDEFLOW.exists() else [sys.executable, "-m", "starter.cli"]
        self.child = pexpect.spawn(
            command[0],
            command[1:] + args,
            cwd=str(REPO),
            env={**os.environ, **env, "TERM": "xterm-256color"},
            dimensions=(ROWS, COLUMNS),
            encoding="utf-8",
            codec_errors="replace",
        )
        self.child.logfile_read = self

    def write(self, data: str) -> None:
        """pexpect's log of what the command printed: feed the emulator."""
        self.raw.append(data)
        self._stream.feed(data)

    def flush(self) -> None:
        """Part of the file-like interface pexpect logs to."""

    async def expect(self, pattern: str, timeout: float = 60) -> None:
        """Wait (in a thread: the worker shares this event loop) until ``pattern`` (a regular
        expression) shows up in the output."""
        await asyncio.to_thread(self.child.expect, pattern, timeout=timeout)

    async def finish(self, timeout: float = 120) -> int:
        """Read to the end; the exit code."""
        await asyncio.to_thread(self.child.expect, pexpect.EOF, timeout=timeout)
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def text(self) -> str:
        """The screen as text, trailing blanks removed."""
        return "\n".join(line.rstrip() for line in self.screen.display).strip("\n")

    def colour(self, word: str) -> str:
        """The foreground colour of ``word`` where it first shows on the lowest line that has it."""
        for y in range(ROWS - 1, -1, -1):
            line = self.screen.display[y]
            x = line.find(word)
            if x >= 0:
                return str(self.screen.buffer[y][x].fg)
        raise AssertionError(f"{word!r} is not on the screen:\n{self.text()}")


@pytest.fixture
def terminal(tideflow: Tideflow, tmp_path: Path) -> Iterator[Any]:
    """Start ``tideflow ARGS…`` on a terminal pointed at the session's server and worker."""
    env = {
        "TEMPORAL_ADDRESS": tideflow.address,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
    }
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        term = Terminal(list(args), env)
        started.append(term)
        return term

    yield start
    for term in started:
        if term.child.isalive():
            term.child.terminate(force=True)


def rows(text: str) -> dict[str, list[str]]:
    """Table rows on the screen by their first cell (the last table wins)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.removeprefix("│").split("│")[:-1]]
            if cells and cells[0]:
                out[cells[0]] = cells
    return out


async def test_run_on_a_terminal_shows_pending_retried_skipped_and_failed_nodes(
    terminal: Any, tmp_path: Path, webhook_server: WebhookServer
) -> None:
    url = script_flaky_endpoint(webhook_server)
    term = terminal("run", str(write(tmp_path, "retried.yaml", RETRIED)), "-i", f"endpoint={url}")
    # While the endpoint's second answer is on its way: the live table.
    await term.expect("attempt 2/3")
    live = rows(term.text())
    assert live["post"][:4] == [
        "post",
        "running",
        "2/3",
        f"attempt 2/3 after: POST {url} answered 503: upstream down",
    ]
    assert live["after_post"][:2] == ["after_post", "pending"]
    assert live["never"] == ["never", "skipped", "", "when is false"]
    assert live["broken"] == ["broken", "failed", "", "node 'broken': bad [/] input"]
    assert "status: running" in term.text()

    assert await term.finish() == 0, term.text()
    screen = term.text()
    assert "Traceback" not in screen
    report = rows(screen)  # the report, printed under the last live table
    assert report["post"][:3] == ["post", "completed", "2"]
    assert report["after_post"][:2] == ["after_post", "completed"]
    assert report["never"][:2] == ["never", "skipped"]
    assert report["broken"] == ["broken", "failed", "0", "node 'broken': bad [/] input"]
    assert "CLI retried [mix]  · cli-retried-mix-" in screen
    assert "Web UI: http://localhost:8233/namespaces/default/workflows/cli-retried-mix-" in screen
    assert term.colour("completed") == "green"
    assert term.colour("failed") == "red"


async def state_of(tideflow: Tideflow, workflow_id: str) -> Any:
    """The run's state, or None while it cannot answer yet."""
    try:
        return await tideflow_client.status(tideflow.client, workflow_id, timeout=5)
    except Exception:
        return None


async def test_status_list_and_approve_on_a_terminal(terminal: Any, tideflow: Tideflow) -> None:
    handle = await tideflow.start(OPERATED)
    await eventually(
        lambda: state_of(tideflow, handle.id),
        lambda s: s is not None and s.needs_attention == ["shaky"],
    )

    status = terminal("status", handle.id)
    assert await status.finish() == 0, status.text()
    screen = status.text()
    assert screen.startswith(handle.id + "\n")
    assert "status: needs_attention" in screen
    nodes = rows(screen)
    assert nodes["review"] == ["review", "waiting", "", "waiting for approval"]
    assert nodes["shaky"] == ["shaky", "needs_attention", "", "node 'shaky': shaky [/] step"]
    assert nodes["later"] == ["later", "pending", "", ""]
    assert status.colour("waiting") == "brown"  # pyte's name for ANSI yellow
    assert status.colour("needs_attention") == "red"
    assert f"Web UI: http://localhost:8233/namespaces/default/workflows/{handle.id}/" in screen

    slug = "cli-operated"
    query = f'TideflowDefinition = "{slug}" AND TideflowStatus = "needs_attention"'

    async def visible() -> list[str]:
        return [w.id async for w in tideflow.client.list_workflows(query)]

    await eventually(visible, lambda ids: handle.id in ids)
    listed = terminal("list", "--definition", slug, "--status", "needs_attention")
    assert await listed.finish() == 0, listed.text()
    assert rows(listed.text())[handle.id][1:4] == [slug, "", "needs_attention"]

    skip = terminal("skip", handle.id, "shaky")
    assert await skip.finish() == 0, skip.text()
    approve = terminal("approve", handle.id, "review", "--comment", "fine")
    assert await approve.finish() == 0, approve.text()
    assert skip.text() == f"skipped shaky of {handle.id}"
    assert approve.text() == f"approved review of {handle.id}"
    assert (await tideflow.result(handle)).status == "completed"

    rejected = await tideflow.start(OPERATED)
    await eventually(
        lambda: state_of(tideflow, rejected.id),
        lambda s: s is not None and s.waiting.get("review") == "approval",
    )
    reject = terminal("approve", rejected.id, "review", "--reject")
    assert await reject.finish() == 0, reject.text()
    assert reject.text() == f"rejected review of {rejected.id}"
    assert (await tideflow.result(rejected)).status == "failed"


async def test_errors_on_a_terminal_are_one_line(terminal: Any) -> None:
    missing = f"no-such-run-{uuid.uuid4().hex[:6]}"
    status = terminal("status", missing)
    assert await status.finish() == 1
    assert status.text() == f"status: no run {missing!r} in namespace 'default'"


def test_no_status_or_text_can_break_the_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    # Statuses this CLI has no colour for (added by a later worker: built without validation,
    # as the typed models would refuse them) and text that looks like console markup are
    # shown as they are.
    state = RunState.model_construct(
        status="brand_new_status",
        nodes={"a[/]": "pending", "b": "[bold]odd[/bold]", "c": "failed", "d": "resting"},
        waiting={"b": "event:[/]"},
        history=[Transition(at="t", node="c", status="failed", detail="bad [/] input [red]")],
        error="[/] run error",
    )
    report = RunReport.model_construct(
        workflow_id="w[/]",
        run_id="r",
        definition=DefinitionRef(name="[bold]Name[/]", version="[/]"),
        status="resting",
        error="[/red] oops",
        nodes={
            "c": NodeReport.model_construct(status="[/]", error="x [/] y"),
            "d": NodeReport.model_construct(status="new"),
        },
        outputs={"list": ["[/]"]},
    )
    run = RunSummary(
        workflow_id="w[/]",
        run_id="r",
        definition="d",
        version="[/]",
        status="resting",
        started_at="2026-11-30T10:00:00.123+00:00",
    )
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200, record=True)
    terminal.print(state_table(state))
    shown = terminal.export_text()
    for text in ("a[/]", "pending", "[bold]odd[/bold]", "waiting for event:[/]", "resting"):
        assert text in shown
    assert "bad [/] input [red]" in shown
    print_state("w[/]", state)
    print_report(report)
    print_runs([run])
    out = capsys.readouterr().out
    for text in ("[/] run error", "[bold]Name[/] [/] · w[/] · resting", "x [/] y", "[/red] oops"):
        assert text in out
    assert "2026-11-30 10:00:00" in out
