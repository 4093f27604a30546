"""``tideflow`` against the session's dev server, with the session's worker polling the task queue
the commands name. Most commands run ``starter.cli.main`` in this process (what the ``tideflow``
script calls; a child process costs seconds of imports); a few run the installed script itself."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml as pyyaml

from starter import client as tideflow_client
from starter.cli import main as cli_main
from tests.servers.tideflow_worker import Tideflow

REPO = Path(__file__).resolve().parent.parent
SEEDS = Path(__file__).resolve().parent / "seeds"
TIDEFLOW = Path(sys.executable).parent / "tideflow"


@dataclass(frozen=True)
class Done:
    """A finished command."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout as JSON."""
        return json.loads(self.stdout)


_ONE_AT_A_TIME = asyncio.Lock()
"""In-process commands redirect the process's stdout and stderr: never two at once."""


@dataclass(frozen=True)
class Cli:
    """Runs ``tideflow ARGS…`` against the session's server. ``TIDEFLOW_TASK_QUEUE`` names the
    session worker's queue, so ``run`` and ``start`` reach it without ``--task-queue``."""

    env: dict[str, str]
    task_queue: str

    async def __call__(self, *args: str, timeout: float = 60) -> Done:
        """Run one command in this process, in a thread: the worker shares this event loop
        and must keep polling while the command waits (``main`` runs its own loop)."""
        async with _ONE_AT_A_TIME:
            return await asyncio.wait_for(asyncio.to_thread(self._main, list(args)), timeout)

    def _main(self, argv: list[str]) -> Done:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli_main(argv)
        return Done(code, out.getvalue(), err.getvalue())

    async def process(self, *args: str, timeout: float = 60) -> Done:
        """Run the installed ``tideflow`` script in a child process."""
        command = [str(TIDEFLOW)] if TIDEFLOW.exists() else [sys.executable, "-m", "starter.cli"]
        # Not subprocess.run: the worker shares this event loop and must keep polling.
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return Done(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture
def cli(tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tideflow`` pointed at the session's dev server and worker."""
    env = {
        "TEMPORAL_ADDRESS": tideflow.address,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Cli(env, tideflow.task_queue)


def write(folder: Path, name: str, text: str) -> Path:
    """A definition file."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


GREET = """
name: CLI greet
version: "7"
inputs:
  who: {type: string, required: true}
  times: {type: integer, default: 1}
vars:
  greeting: ""
tasks:
  - id: compose
    type: set
    config: {greeting: "hello ${{ inputs.who }}"}
outputs:
  greeting: ${{ vars.greeting }}
  times: ${{ inputs.times }}
"""

FAILING = """
name: CLI failing
tasks:
  - {id: first, type: wait, config: {duration: 10ms}}
  - id: stop
    type: fail
    depends_on: [first]
    config: {message: nothing to do}
"""


async def test_validate_exit_codes(cli: Cli, tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", GREET)
    bad = write(
        tmp_path,
        "bad.yaml",
        """
        name: Bad
        tasks:
          - {id: a, type: wait, config: {duration: soon}}
        """,
    )
    missing = tmp_path / "missing.yaml"
    seed = SEEDS / "004_inventory_reorder.yaml"
    valid, invalid, unreadable = await asyncio.gather(
        cli.process("validate", str(good), str(seed)),
        cli.process("validate", str(good), str(bad)),
        cli("validate", str(missing)),
    )
    assert valid.code == 0, valid.stdout + valid.stderr
    assert valid.stdout.splitlines() == [f"{good}: ok", f"{seed}: ok"]
    assert invalid.code == 2
    assert invalid.stdout.splitlines() == [
        f"{bad}:3:44: config duration: 'soon' is not a duration (use 500ms, 30s, 5m, 2h or 1d)"
    ]
    assert unreadable.code == 2
    assert unreadable.stdout.startswith(f"{missing}:1:1: cannot read file")


async def test_run_json_completed(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "greet.yaml", GREET)
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("who: file\ntimes: 2\n")
    done = await cli.process(
        "run", str(path), "--json", "--input-file", str(inputs), "--input", "who=you"
    )
    assert done.code == 0, done.stderr
    report = done.json()
    assert report["status"] == "completed"
    assert report["outputs"] == {"greeting": "hello you", "times": 2}
    assert report["definition"] == {"name": "CLI greet", "version": "7"}
    assert report["nodes"]["compose"]["status"] == "completed"
    assert report["workflow_id"].startswith("cli-greet-")
    assert report["error"] is None


async def test_run_json_failed(cli: Cli, tmp_path: Path) -> None:
    done = await cli("run", str(write(tmp_path, "failing.yaml", FAILING)), "--json")
    assert done.code == 1, done.stderr
    report = done.json()
    assert report["status"] == "failed"
    assert "nothing to do" in report["error"]
    assert report["nodes"]["first"]["status"] == "completed"
    assert report["nodes"]["stop"]["status"] == "failed"


async def test_run_with_bad_inputs_or_definition_exits_2(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "greet.yaml", GREET)
    bad = write(tmp_path, "bad.yaml", "name: Bad\ntasks:\n  - {id: a, type: nope}\n")
    bad_inputs = await cli("run", str(path), "--json", "--input", "times=many")
    bad_definition = await cli("run", str(bad), "--json")
    assert bad_inputs.code == 2
    assert "input 'who': required" in bad_inputs.stderr
    assert "input 'times': must be an integer" in bad_inputs.stderr
    assert bad_inputs.stdout == ""
    assert bad_definition.code == 2
    assert f"{bad}:3:19: unknown node type 'nope'" in bad_definition.stderr


async def test_graph_prints_mermaid(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "graph.yaml",
        """
        name: Graph
        inputs:
          amount: {type: number, default: 1}
        error_handling:
          on_failure: [alert]
        tasks:
          - {id: fetch, type: wait, config: {duration: 1s}, on_error: {fallback: cached}}
          - {id: cached, type: wait, config: {duration: 1s}}
          - id: big
            type: wait
            depends_on: [fetch]
            when: ${{ inputs.amount > 10.0 }}
            config: {duration: 1s}
          - {id: store, type: wait, depends_on: [big, fetch], config: {duration: 1s}}
          - {id: alert, type: fail}
        """,
    )
    done = await cli("graph", str(path))
    assert done.code == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[0] == "flowchart TD"
    assert 'n_fetch["fetch<br/><small>wait</small>"]' in lines
    assert 'n_cached(["cached<br/><small>wait</small>"])' in lines  # a handler
    assert "n_fetch -->|inputs.amount > 10.0| n_big" in lines
    assert "n_big --> n_store" in lines
    assert "n_fetch --> n_store" in lines
    assert "n_fetch -. on error .-> n_cached" in lines
    assert "run_failed((run failed)) -.-> n_alert" in lines


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft202012Validator:
    """The JSON Schema ``tideflow schema`` prints (no server needed)."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["schema"]) == 0
    schema = json.loads(out.getvalue())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Tideflow workflow definition"
    return jsonschema.Draft202012Validator(schema)


VALID_FOR_THE_SCHEMA = {
    "greet": GREET,
    "seed_000": (SEEDS / "000_invoice_processing.yaml").read_text(),
    "seed_001": (SEEDS / "001_document_processing.yaml").read_text(),
    "seed_004": (SEEDS / "004_inventory_reorder.yaml").read_text(),
    "config_per_type": """
        name: ok
        tasks:
          - {id: a, type: wait, config: {duration: 5m}}
          - {id: b, type: http.request, config: {url: "https://example.com", method: POST}}
          - {id: c, type: api, config: {url: "https://example.com"}, timeout: 30}
        """,
    "with_alias": """
        name: ok
        tasks:
          - {id: b, type: http.request, with: {url: "https://example.com", method: POST}}
        """,
    "retry_policy_alias": """
        name: ok
        tasks:
          - {id: a, type: wait, config: {duration: 1s}, retry_policy: {max_attempts: 2}}
        """,
    "variables_alias": """
        name: ok
        variables: {region: EU}
        tasks:
          - {id: a, type: wait, config: {duration: 1s}}
        """,
    "edges_from_to": """
        metadata: {name: ok, id: "1"}
        nodes:
          - {id: a, type: wait, config: {duration: 1s}}
          - {id: b, type: wait, config: {duration: 1s}}
        edges:
          - {from: a, to: b}
        """,
    "numeric_version": """
        name: ok
        version: 1.0
        tasks:
          - {id: a, type: wait, config: {duration: 1s}}
        """,
}


@pytest.mark.parametrize("name", sorted(VALID_FOR_THE_SCHEMA))
def test_schema_accepts_what_the_loader_accepts(
    schema_validator: jsonschema.Draft202012Validator, name: str
) -> None:
    data = pyyaml.safe_load(textwrap.dedent(VALID_FOR_THE_SCHEMA[name]))
    assert [e.message for e in schema_validator.iter_errors(data)] == []


@pytest.mark.parametrize(
    "text",
    [
        # config keys are tied to the node's type, aliases included
        "name: typo\ntasks:\n  - {id: a, type: wait, config: {duraton: 5m}}\n",
        "name: typo\ntasks:\n  - {id: b, type: api, config: {url: 'https://x', methd: POST}}\n",
        "name: typo\ntasks:\n  - {id: a, type: wait, config: {duration: 5m}, depends: [x]}\n",
        "name: typo\nversoin: 1\ntasks: []\n",
    ],
    ids=["config_key", "alias_config_key", "node_key", "top_level_key"],
)
def test_schema_rejects_typos(schema_validator: jsonschema.Draft202012Validator, text: str) -> None:
    assert list(schema_validator.iter_errors(pyyaml.safe_load(text)))


async def test_start_status_and_result(cli: Cli, tideflow: Tideflow, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "waiting.yaml",
        """
        name: CLI waiting
        vars:
          stage: waiting
        tasks:
          - {id: hold, type: wait_for_event, config: {event: go, timeout: 1m}}
          - id: done
            type: set
            depends_on: [hold]
            config: {stage: "${{ nodes.hold.output.payload }}"}
        outputs:
          stage: ${{ vars.stage }}
        """,
    )
    started = await cli("start", str(path), "--task-queue", cli.task_queue)
    assert started.code == 0, started.stderr
    workflow_id = started.stdout.strip()
    assert workflow_id.startswith("cli-waiting-")

    status = await cli("status", workflow_id, "--json")
    assert status.code == 0, status.stderr
    state = status.json()
    assert set(state["nodes"]) == {"hold", "done"}
    assert state["nodes"]["done"] == "pending"
    assert state["vars"] == {"stage": "waiting"}
    assert state["status"] in ("running", "waiting")

    await tideflow_client.emit(tideflow.client, workflow_id, "go", "released")
    result = await cli("result", workflow_id)
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["workflow_id"] == workflow_id
    assert report["status"] == "completed"
    assert report["outputs"] == {"stage": "released"}


async def test_list(cli: Cli, tideflow: Tideflow) -> None:
    name = f"CLI list {uuid.uuid4().hex[:8]}"
    slug = name.lower().replace(" ", "-")
    report = await tideflow.run(f"name: {name}\n" + FAILING.split("\n", 2)[2])
    assert report.status == "failed"
    query = f'TideflowDefinition = "{slug}"'
    deadline = time.monotonic() + 15
    while not [w async for w in tideflow.client.list_workflows(query)]:
        assert time.monotonic() < deadline, "the run never became visible"
        await asyncio.sleep(0.1)

    listed = await cli("list", "--json", "--definition", slug)
    completed = await cli("list", "--json", "--definition", slug, "--status", "completed")
    bad = await cli("list", "--status", "sleepy")
    assert listed.code == 0, listed.stderr
    runs = listed.json()
    assert [(r["workflow_id"], r["definition"], r["status"]) for r in runs] == [
        (report.workflow_id, slug, "failed")
    ]
    assert completed.json() == []
    assert bad.code == 2
    assert "unknown status 'sleepy'" in bad.stderr


async def test_run_warns_when_no_worker_polls_the_task_queue(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    file = write(tmp_path, "greet.yaml", GREET)
    queue = f"nobody-polls-{uuid.uuid4().hex[:6]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "run",
        str(file),
        "-i",
        "who=x",
        "--task-queue",
        queue,
        cwd=REPO,
        env={**os.environ, **cli.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []
    while not any(line.startswith("started ") for line in lines):
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert line, "".join(lines)
        lines.append(line.decode())
    assert lines[0] == (
        f"note: no worker polls task queue {queue!r}: the run waits until one does "
        "(start one with `tideflow worker`, or use `tideflow run --embedded`)\n"
    )
    workflow_id = lines[-1].split()[1]
    await tideflow.client.get_workflow_handle(workflow_id).terminate("test over")
    assert await asyncio.wait_for(process.wait(), 30) == 1
