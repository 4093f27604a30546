"""``tideflow upgrade-check``: open runs replayed against the installed code, on the real dev
server — and against a deliberately changed workflow, which it must refuse."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from starter import client as api
from starter.upgrade_check import check_upgrade, render
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow

ROOT = Path(__file__).resolve().parent.parent

OPEN = """
name: NAME
tasks:
  - {id: first, type: test.echo}
  - {id: ask, type: approval, depends_on: [first], config: {timeout: 1h}}
"""

# A worker whose code changed in a way that breaks replay: it no longer runs a node called
# `first` (imagine a refactoring that reorders what a run starts).
CHANGED_CODE = """
import interpreter.core as core

_start_node = core.RunCore._start_node

def _changed(self, node_id):
    if node_id == "first":
        self.scheduler.node_started(node_id, self._now)
        self.scheduler.skip_now(node_id, self._now, reason="changed code")
        return
    _start_node(self, node_id)

core.RunCore._start_node = _changed
"""


async def _open_run(tideflow: Tideflow) -> str:
    handle = await tideflow.start(OPEN.replace("NAME", f"upgrade-{uuid.uuid4().hex[:8]}"))

    async def waiting() -> bool:
        state = await api.status(tideflow.client, handle.id)
        return state.nodes.get("ask") == "waiting"

    await eventually(waiting, what="the approval never waited")
    return handle.id


async def test_open_runs_replay_with_the_installed_code(tideflow: Tideflow) -> None:
    workflow_id = await _open_run(tideflow)
    result = await check_upgrade(tideflow.client, closed=5)
    assert result.ok, render(result)
    assert result.checked >= 1
    assert render(result).startswith("ok: ")
    await api.approve(tideflow.client, workflow_id, "ask", True)


async def test_a_changed_workflow_is_refused_naming_the_run_and_event(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    workflow_id = await _open_run(tideflow)
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(CHANGED_CODE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "TEMPORAL_ADDRESS": tideflow.address,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starter.upgrade_check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith(workflow_id))
    assert "diverges at event 5 (ActivityTaskScheduled test.echo first)" in line
    assert "would not replay: do not roll out this code" in done.stdout
    await api.approve(tideflow.client, workflow_id, "ask", True)


def test_the_replay_corpus_passes_the_check() -> None:
    # What CI runs before anything is released: every history ever recorded replays.
    done = subprocess.run(
        [sys.executable, "-m", "starter.upgrade_check", "--histories", "tests/histories"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: ") and "run(s) replay" in done.stdout
