"""``tideflow`` against the session's dev server, with the session's worker polling the task queue
the commands name. Most commands run ``starter.cli.main`` in this process (what the ``tideflow``
script calls; a child process costs seconds of imports); a few run the installed script itself."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import grpc
import jsonschema
import pytest
import yaml as pyyaml
from temporalio.service import RPCError, RPCStatusCode

from activities import WorkerSettings
from starter import client as tideflow_client
from starter.cli import main as cli_main
from starter.local_files import local_file, remote_pollers, resolve_local_files
from starter.server import free_port, pick_ui_port
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer

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

    async def process(
        self,
        *args: str,
        timeout: float = 60,
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> Done:
        """Run the installed ``tideflow`` script in a child process (in ``cwd``, with ``env``
        on top of the session's)."""
        command = [str(TIDEFLOW)] if TIDEFLOW.exists() else [sys.executable, "-m", "starter.cli"]
        # Not subprocess.run: the worker shares this event loop and must keep polling.
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            cwd=cwd,
            env={**os.environ, **self.env, **(env or {})},
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
        "TIDEFLOW_PAYLOAD_STORE": tideflow.payload_store,
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


# --- every error is one line on stderr and exit 1 ----------------------------------------------


def one_line_error(done: Done) -> str:
    """The one line a failed command printed (and that it failed without a traceback)."""
    assert done.code == 1, (done.code, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("status", "{id}"),
        ("status", "{id}", "--json"),
        ("result", "{id}"),
        ("pause", "{id}"),
        ("resume", "{id}"),
        ("cancel", "{id}"),
        ("skip", "{id}", "node"),
        ("retry", "{id}", "node"),
        ("set", "{id}", "a=1"),
        ("approve", "{id}", "node"),
        ("approve", "{id}", "node", "--reject"),
        ("emit", "go", "--id", "{id}"),
    ],
    ids=lambda args: " ".join(args[:1] + args[2:]),
)
async def test_an_unknown_run_is_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    workflow_id = f"no-such-run-{uuid.uuid4().hex[:6]}"
    done = await cli(*(arg.format(id=workflow_id) for arg in args))
    assert one_line_error(done) == f"{args[0]}: no run {workflow_id!r} in namespace 'default'"
    assert done.stdout == ""


async def test_a_server_that_is_down_is_one_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    status = await cli("status", "some-run")
    run = await cli("run", str(write(tmp_path, "greet.yaml", GREET)), "-i", "who=x")
    expected = (
        f"cannot reach Temporal at {address}: nothing is listening there "
        "(start one with `tideflow dev`, or set TEMPORAL_ADDRESS)"
    )
    assert one_line_error(status) == expected
    assert one_line_error(run) == expected


class _RefusingFrontend(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A stand-in Temporal frontend that refuses the caller's credentials: every call, or every
    call but the one ``Client.connect`` makes."""

    def __init__(self, code: grpc.StatusCode, let_connect: bool) -> None:
        self.code = code
        self.let_connect = let_connect

    def service(self, details: Any) -> Any:
        if self.let_connect and details.method.endswith("/GetSystemInfo"):
            return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")

        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(self.code, "Request unauthorized.")
            raise AssertionError("abort raises")

        return grpc.unary_unary_rpc_method_handler(refuse)


@contextmanager
def refusing_frontend(code: grpc.StatusCode, *, let_connect: bool) -> Iterator[str]:
    """host:port of a gRPC server that answers like a Temporal server refusing credentials."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((_RefusingFrontend(code, let_connect),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


async def test_refused_credentials_are_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with refusing_frontend(grpc.StatusCode.UNAUTHENTICATED, let_connect=False) as refusing:
        monkeypatch.setenv("TEMPORAL_ADDRESS", refusing)
        at_connect = await cli("status", "some-run")
    with refusing_frontend(grpc.StatusCode.PERMISSION_DENIED, let_connect=True) as address:
        monkeypatch.setenv("TEMPORAL_ADDRESS", address)
        status = await cli("status", "some-run")
        listed = await cli("list")
    assert one_line_error(at_connect) == (
        f"not allowed: Temporal at {refusing} refused the connection: Request unauthorized."
    )
    assert one_line_error(status) == "status: not allowed: Request unauthorized."
    assert one_line_error(listed) == "list: not allowed: Request unauthorized."


OPERATED = """
name: CLI operated
vars:
  level: low
tasks:
  - id: review
    type: approval
    config: {message: "Go?", timeout: 1h}
  - id: shaky
    type: fail
    on_error: pause
    config: {message: "shaky [/] step"}
  - id: later
    type: wait
    depends_on: [review, shaky]
    config: {duration: 1ms}
outputs:
  level: ${{ vars.level }}
"""


async def _state(tideflow: Tideflow, workflow_id: str) -> Any:
    try:
        return await tideflow_client.status(tideflow.client, workflow_id, timeout=5)
    except Exception:
        return None


def _waiting_and_stuck(state: Any) -> bool:
    return (
        state is not None
        and state.waiting.get("review") == "approval"
        and state.needs_attention == ["shaky"]
    )


async def test_a_refused_update_is_one_line(cli: Cli, tideflow: Tideflow) -> None:
    handle = await tideflow.start(OPERATED)
    await eventually(lambda: _state(tideflow, handle.id), _waiting_and_stuck)
    try:
        skip = await cli("skip", handle.id, "nope")
        approve = await cli("approve", handle.id, "shaky")
        retry = await cli("retry", handle.id, "review")
    finally:
        await handle.terminate("test over")
    assert one_line_error(skip) == "skip: refused: unknown node 'nope'"
    assert one_line_error(approve) == "approve: refused: 'shaky' is not an approval node"
    assert one_line_error(retry).startswith("retry: refused: ")


# --- no worker ---------------------------------------------------------------------------------


async def test_run_without_a_worker_says_so_and_gives_up(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    queue = f"nobody-polls-{uuid.uuid4().hex[:6]}"
    workflow_id = f"never-started-{uuid.uuid4().hex[:6]}"
    done = await cli.process(
        "run",
        str(write(tmp_path, "greet.yaml", GREET)),
        *("-i", "who=x", "--task-queue", queue, "--wait-for-worker", "1", "--id", workflow_id),
    )
    assert done.code == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"no worker is polling task queue {queue!r}; waiting up to 1 s (--wait-for-worker)",
        f"no worker polled task queue {queue!r} in 1 s: nothing was started "
        "(start one with `tideflow worker`, or use `tideflow run --embedded`)",
    ]
    assert done.stdout == ""
    with pytest.raises(RPCError) as refused:
        await tideflow.client.get_workflow_handle(workflow_id).describe()
    assert refused.value.status == RPCStatusCode.NOT_FOUND


async def test_run_says_at_once_that_no_worker_polls_and_goes_on_when_one_comes(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    from worker import running_worker

    queue = f"late-worker-{uuid.uuid4().hex[:6]}"
    process = await asyncio.create_subprocess_exec(
        *([str(TIDEFLOW)] if TIDEFLOW.exists() else [sys.executable, "-m", "starter.cli"]),
        *("run", str(write(tmp_path, "greet.yaml", GREET)), "--json", "-i", "who=late"),
        *("--task-queue", queue, "--wait-for-worker", "300"),
        cwd=REPO,
        env={**os.environ, **cli.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stderr.readline(), 60)
    assert first.decode() == (
        f"no worker is polling task queue {queue!r}; waiting up to 300 s (--wait-for-worker)\n"
    )
    settings = WorkerSettings(home=tideflow.home, task_queue=queue)
    async with running_worker(tideflow.client, settings):
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert f"a worker is polling task queue {queue!r}" in stderr.decode().splitlines()
    assert json.loads(stdout)["outputs"]["greeting"] == "hello late"


async def test_run_embedded_brings_a_worker_for_its_task_queue(cli: Cli, tmp_path: Path) -> None:
    # A server answers at TEMPORAL_ADDRESS: --embedded uses it and runs a worker in the process,
    # on the queue the run is started on.
    queue = f"embedded-{uuid.uuid4().hex[:6]}"
    done = await cli.process(
        "run",
        *("--embedded", str(write(tmp_path, "greet.yaml", GREET)), "--json", "-i", "who=e"),
        *("--task-queue", queue),
        timeout=120,
    )
    assert done.code == 0, done.stderr
    assert done.json()["outputs"]["greeting"] == "hello e"


async def test_status_result_and_updates_without_a_worker_give_up_at_once(
    cli: Cli, tideflow: Tideflow
) -> None:
    queue = f"nobody-polls-{uuid.uuid4().hex[:6]}"
    handle = await tideflow_client.start(
        tideflow.client, tideflow.load(GREET), {"who": "x"}, task_queue=queue
    )
    try:
        status = await cli("status", handle.id)
        result = await cli("result", handle.id)
        skip = await cli("skip", handle.id, "compose")
    finally:
        await handle.terminate("test over")
    stuck = f"run {handle.id!r} is running but no worker is polling its task queue {queue!r} to "
    assert (
        one_line_error(status) == stuck + "answer for its nodes (start one with `tideflow worker`)"
    )
    assert one_line_error(result) == stuck + "finish it (start one with `tideflow worker`)"
    assert one_line_error(skip) == stuck + "accept skip (start one with `tideflow worker`)"


# --- every command piped -----------------------------------------------------------------------


async def test_run_piped_prints_every_transition_and_the_report(cli: Cli, tmp_path: Path) -> None:
    done = await cli.process("run", str(write(tmp_path, "greet.yaml", GREET)), "-i", "who=pipe")
    assert done.code == 0, done.stderr
    lines = done.stderr.splitlines()
    workflow_id = lines[0].removeprefix("started ")
    assert workflow_id.startswith("cli-greet-")
    # The run ends before the first poll sees it: its transitions come from a last look.
    assert [line.split(" ", 1)[1] for line in lines[1:]] == [
        "compose: running",
        "compose: completed",
    ]
    assert "CLI greet 7 · " + workflow_id + " · completed" in done.stdout
    assert '"greeting": "hello pipe"' in done.stdout
    assert f"/namespaces/default/workflows/{workflow_id}/" in done.stdout


async def test_compile_piped(cli: Cli, tmp_path: Path) -> None:
    done = await cli("compile", str(write(tmp_path, "greet.yaml", GREET)), "-i", "who=x")
    assert done.code == 0, done.stderr
    compiled = done.json()
    assert compiled["inputs"] == {"who": "x"}
    assert compiled["plan"]["format"] == 2 and compiled["plan"]["name"] == "CLI greet"


def _row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().removeprefix("│").split("│")[:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


async def test_operating_a_run_piped(cli: Cli, tideflow: Tideflow, tmp_path: Path) -> None:
    path = write(tmp_path, "operated.yaml", OPERATED)
    started = await cli("start", str(path))
    assert started.code == 0, started.stderr
    workflow_id = started.stdout.strip()
    assert f"Web UI: http://localhost:8233/namespaces/default/workflows/{workflow_id}/" in (
        started.stderr
    )
    await eventually(lambda: _state(tideflow, workflow_id), _waiting_and_stuck)

    status = await cli("status", workflow_id)
    assert status.code == 0, status.stderr
    assert status.stdout.startswith(workflow_id + "\n")
    assert "status: needs_attention" in status.stdout
    assert _row(status.stdout, "review")[:2] == ["review", "waiting"]
    assert _row(status.stdout, "review")[3] == "waiting for approval"
    assert _row(status.stdout, "shaky")[:2] == ["shaky", "needs_attention"]
    assert _row(status.stdout, "later")[:2] == ["later", "pending"]
    assert 'vars: {"level": "low"}' in status.stdout
    assert f"Web UI: http://localhost:8233/namespaces/default/workflows/{workflow_id}/" in (
        status.stdout
    )

    slug = "cli-operated"
    query = f'TideflowDefinition = "{slug}" AND TideflowStatus = "needs_attention"'

    async def visible() -> list[str]:
        return [w.id async for w in tideflow.client.list_workflows(query)]

    await eventually(visible, lambda ids: workflow_id in ids)
    listed = await cli("list", "--definition", slug, "--status", "needs_attention")
    assert listed.code == 0, listed.stderr
    assert _row(listed.stdout, workflow_id)[1:4] == [slug, "", "needs_attention"]

    answers = [
        await cli("pause", workflow_id),
        await cli("resume", workflow_id),
        await cli("set", workflow_id, "level=high"),
        await cli("retry", workflow_id, "shaky"),
    ]
    await eventually(lambda: _state(tideflow, workflow_id), _waiting_and_stuck)
    answers += [
        await cli("skip", workflow_id, "shaky"),
        await cli("approve", workflow_id, "review", "--comment", "fine"),
    ]
    assert [(a.code, a.stdout.strip(), a.stderr) for a in answers] == [
        (0, f"pause requested for {workflow_id}: running nodes finish, nothing new starts", ""),
        (0, f"resume requested for {workflow_id}", ""),
        (0, f"set level of {workflow_id}", ""),
        (0, f"retrying shaky of {workflow_id}", ""),
        (0, f"skipped shaky of {workflow_id}", ""),
        (0, f"approved review of {workflow_id}", ""),
    ]
    result = await cli("result", workflow_id)
    assert result.code == 0, result.stderr
    assert result.json()["outputs"] == {"level": "high"}


async def test_reject_and_cancel_piped(cli: Cli, tideflow: Tideflow) -> None:
    rejected = await tideflow.start(OPERATED)
    cancelled = await tideflow.start(OPERATED)
    for handle in (rejected, cancelled):
        await eventually(functools.partial(_state, tideflow, handle.id), _waiting_and_stuck)
    reject = await cli("approve", rejected.id, "review", "--reject", "--comment", "no")
    cancel = await cli("cancel", cancelled.id)
    assert (reject.code, reject.stdout) == (0, f"rejected review of {rejected.id}\n")
    assert (cancel.code, cancel.stdout) == (0, f"cancellation requested for {cancelled.id}\n")
    assert (await tideflow.result(rejected)).status == "failed"
    assert (await tideflow.result(cancelled)).status == "cancelled"


async def test_fail_gives_up_on_a_node_piped(
    cli: Cli, tideflow: Tideflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = await tideflow.start(OPERATED)
    await eventually(lambda: _state(tideflow, handle.id), _waiting_and_stuck)
    monkeypatch.setenv("TIDEFLOW_USER", "ana")
    done = await cli("fail", handle.id, "shaky", "--reason", "not worth it")
    assert (done.code, done.stdout, done.stderr) == (0, f"failed shaky of {handle.id}\n", "")
    report = await tideflow.result(handle)
    assert report.status == "failed"
    assert report.nodes["shaky"].status == "failed"
    assert "(ana): not worth it" in (report.nodes["shaky"].error or "")

    # The run has ended: the node cannot be failed (or retried) again; the hint says what can.
    again = await cli("retry", handle.id, "shaky")
    assert again.code == 1
    assert again.stderr == (
        f"retry: run {handle.id} has ended (failed): use `tideflow redrive {handle.id}` "
        "to run it again from its last checkpoint\n"
    )


CORRELATED = """
name: CLI correlated
tasks:
  - id: hold
    type: wait_for_event
    config: {event: go, correlation: order-1, timeout: 1h}
outputs:
  got: ${{ nodes.hold.output.payload }}
"""


async def test_emit_says_whether_the_run_waits_for_the_event(cli: Cli, tideflow: Tideflow) -> None:
    handle = await tideflow.start(CORRELATED)
    await eventually(
        lambda: _state(tideflow, handle.id),
        lambda state: state is not None and state.waiting == {"hold": "event:go"},
    )
    other_correlation = await cli("emit", "go", "--id", handle.id, "--correlation", "order-2")
    other_event = await cli("emit", "stop", "--id", handle.id)
    matching = await cli(
        "emit", "go", "--id", handle.id, "--correlation", "order-1", "--data", '"yes"'
    )
    assert other_correlation.stdout.splitlines() == [
        "emit go: 1 run(s) received it but none is waiting for this event/correlation",
        f"  {handle.id}",
    ]
    assert other_event.stdout.splitlines() == [
        "emit stop: 1 run(s) received it but none is waiting for this event",
        f"  {handle.id}",
    ]
    assert matching.stdout.splitlines() == [
        "emit go: delivered to 1 run(s) waiting for it",
        f"  {handle.id}",
    ]
    assert (await tideflow.result(handle)).outputs == {"got": "yes"}


# --- progress shows retries --------------------------------------------------------------------

RETRIED = """
name: CLI retried [mix]
inputs:
  endpoint: {type: string, required: true}
tasks:
  - id: post
    type: http.request
    retry: {max_attempts: 3, backoff: fixed, initial_interval: 2s}
    config: {method: POST, url: "${{ inputs.endpoint }}", json: {hello: world}}
  - {id: after_post, type: wait, depends_on: [post], config: {duration: 10ms}}
  - {id: never, type: wait, when: "${{ false }}", config: {duration: 10ms}}
  - {id: broken, type: fail, on_error: continue, config: {message: "bad [/] input"}}
"""


def script_flaky_endpoint(webhook_server: WebhookServer) -> str:
    """An endpoint that answers 503 once, then 200 after a while (the retry stays visible)."""
    webhook_server.respond("/flaky", 503, text="upstream down")
    webhook_server.respond("/flaky", 200, json={"ok": True}, delay=3)
    return webhook_server.url("/flaky")


async def test_run_piped_shows_retries(
    cli: Cli, tmp_path: Path, webhook_server: WebhookServer
) -> None:
    url = script_flaky_endpoint(webhook_server)
    done = await cli.process(
        "run", str(write(tmp_path, "retried.yaml", RETRIED)), "-i", f"endpoint={url}"
    )
    assert done.code == 0, done.stderr
    lines = [line.split(" ", 1)[1] for line in done.stderr.splitlines()[1:]]
    assert f"post: attempt 2/3 after: POST {url} answered 503: upstream down" in lines
    assert "never: skipped (when is false)" in lines
    assert any(line.startswith("broken: failed") for line in lines)
    assert lines[-1] == "after_post: completed"
    assert _row(done.stdout, "post")[:3] == ["post", "completed", "2"]


# --- local files as inputs ---------------------------------------------------------------------

PARSE = """
name: CLI parse
inputs:
  document: {type: string, required: true}
tasks:
  - {id: parse, type: documents.parse, config: {source: "${{ inputs.document }}"}}
outputs:
  document: ${{ inputs.document }}
  text: ${{ nodes.parse.output.text }}
"""
INVOICE = REPO / "examples" / "documents" / "invoice-acme.pdf"


async def test_a_relative_path_is_resolved_where_the_cli_runs(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    # Under the worker's uploads folder (a root documents.parse reads from), but named relative
    # to the CLI's folder: the worker, running elsewhere, could not resolve docs/invoice.pdf.
    folder = tideflow.home / "uploads" / uuid.uuid4().hex
    (folder / "docs").mkdir(parents=True)
    document = folder / "docs" / "invoice.pdf"
    shutil.copyfile(INVOICE, document)
    assert not (Path.cwd() / "docs" / "invoice.pdf").exists()
    definition = write(tmp_path, "parse.yaml", PARSE)
    done = await cli.process(
        "run", str(definition), "--json", "-i", "document=docs/invoice.pdf", cwd=folder
    )
    assert done.code == 0, done.stderr
    uri = document.resolve().as_uri()
    assert f"input document: {document.resolve()} → {uri}" in done.stderr.splitlines()
    outputs = done.json()["outputs"]
    assert outputs["document"] == uri
    assert "INV-10487" in outputs["text"]


async def test_upload_puts_the_file_in_the_payload_store(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    # The store the worker and its clients share (the CLI must use it too).
    store = Path(url2pathname(urlparse(tideflow.payload_store).path))
    definition = write(tmp_path, "parse.yaml", PARSE)
    done = await cli.process(
        "run",
        *(str(definition), "--json", "--upload", "-i", f"document={INVOICE}"),
    )
    assert done.code == 0, done.stderr
    data = INVOICE.read_bytes()
    stored = store / "uploads" / hashlib.sha256(data).hexdigest() / "invoice-acme.pdf"
    assert stored.read_bytes() == data
    assert f"input document: {INVOICE} uploaded to {stored.as_uri()}" in done.stderr
    outputs = done.json()["outputs"]
    assert outputs["document"] == stored.as_uri()
    assert "INV-10487" in outputs["text"]


async def test_upload_to_an_s3_payload_store(s3_server: Any, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    document = tmp_path / "note.txt"
    document.write_text("hello")
    settings = WorkerSettings(home=tmp_path, payload_store=f"s3://{bucket}/tideflow/")
    inputs = {"document": str(document), "count": 3, "url": "https://example.com/a.txt"}
    resolved, replaced = await resolve_local_files(inputs, upload=True, settings=settings)
    digest = hashlib.sha256(b"hello").hexdigest()
    key = f"tideflow/uploads/{digest}/note.txt"
    assert resolved == {**inputs, "document": f"s3://{bucket}/{key}"}
    assert [(r.name, r.uploaded) for r in replaced] == [("document", True)]
    body = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b"hello"


def test_what_names_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    (tmp_path / "folder").mkdir()
    assert local_file("a.pdf") == tmp_path / "a.pdf"
    assert local_file(str(tmp_path / "a.pdf")) == tmp_path / "a.pdf"
    for value in ("missing.pdf", "folder", (tmp_path / "a.pdf").as_uri(), "s3://b/a.pdf", 3, ""):
        assert local_file(value) is None


def test_a_worker_on_another_host_is_remote() -> None:
    def here() -> str:
        return "builder.example.com"

    assert remote_pollers(["123@builder", "9@builder.example.com"], here) is False
    assert remote_pollers(["123@builder", "77@worker-2"], here) is True
    assert remote_pollers(["my-own-identity"], here) is False


# --- Web UI links --------------------------------------------------------------------------------


async def test_links_use_the_embedded_servers_web_ui_port(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "ui-home"
    port, ui_port = free_port(), free_port()
    env = {**os.environ, **cli.env, "TIDEFLOW_HOME": str(home)}
    env.pop("TIDEFLOW_UI_URL", None)
    server = await asyncio.create_subprocess_exec(
        *([str(TIDEFLOW)] if TIDEFLOW.exists() else [sys.executable, "-m", "starter.cli"]),
        *("server", "--port", str(port), "--ui-port", str(ui_port)),
        *("--data-dir", str(tmp_path / "data")),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        lines = [await asyncio.wait_for(server.stdout.readline(), 60) for _ in range(2)]
        assert lines[1].decode() == f"Web UI: http://localhost:{ui_port}\n"
        info = json.loads((home / "server.json").read_text())
        assert info["address"] == f"127.0.0.1:{port}"
        assert info["ui_url"] == f"http://localhost:{ui_port}"
        started = await cli.process(
            "start",
            *(str(write(tmp_path, "greet.yaml", GREET)), "-i", "who=x"),
            env={"TIDEFLOW_HOME": str(home), "TEMPORAL_ADDRESS": f"localhost:{port}"},
        )
        assert started.code == 0, started.stderr
        workflow_id = started.stdout.strip()
        link = f"Web UI: http://localhost:{ui_port}/namespaces/default/workflows/{workflow_id}/"
        assert link in started.stderr
        # Another server, another address: the default link, not this server's.
        elsewhere = await cli.process(
            "start",
            *(str(write(tmp_path, "greet.yaml", GREET)), "-i", "who=x"),
            env={"TIDEFLOW_HOME": str(home)},
        )
        assert "Web UI: http://localhost:8233/namespaces/default/workflows/" in elsewhere.stderr
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 60)
    assert not (home / "server.json").exists()


def test_the_web_ui_port_moves_when_8233_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert pick_ui_port(busy) != busy
    free = free_port()
    assert pick_ui_port(free) == free
