"""``tideflow``: the command line. Thin: parse arguments, call :mod:`starter.client`, print.

Exit codes: 0 success (a run completed), 1 a run failed or a request was refused, 2 bad input
(an invalid definition, bad inputs, bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def entry() -> None:
    """The ``tideflow`` console script: :func:`main`, then a hard exit.

    A process that held a Temporal client can abort while the interpreter finalizes
    (temporalio/sdk-python#300: the core runtime's threads outlive Python's); everything worth
    keeping is flushed first, so skipping finalization loses nothing.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tideflow`` command line; return its exit code.

    Every error ends here as one line on stderr and a non-zero exit code, never a traceback
    (``TIDEFLOW_DEBUG=1`` shows the traceback of an unexpected one).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        result = args.handler(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except KeyboardInterrupt:
        return 130
    except _Exit as e:
        if e.message:
            print(e.message, file=sys.stderr)
        return e.code
    except Exception as e:
        if os.environ.get("TIDEFLOW_DEBUG") and not _expected(e):
            raise
        print(error_line(e, args), file=sys.stderr)
        return EXIT_FAILED


class _Exit(Exception):
    """Leave with ``code`` after printing ``message`` (one line) on stderr."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- errors ----------------------------------------------------------------------------------


def _expected(error: Exception) -> bool:
    from temporalio.service import RPCError

    from starter.client import ControlError

    return isinstance(error, RPCError | ControlError)


def error_line(error: Exception, args: argparse.Namespace | None = None) -> str:
    """The one line a user sees for ``error`` raised by a command (``args``: what was asked).

    Temporal's status codes become what they mean for the command: an unknown run, a server
    that does not answer, credentials it refuses.
    """
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError, RPCStatusCode

    from starter.client import ControlError

    command = getattr(args, "command", None) or "tideflow"
    workflow_id = getattr(args, "workflow_id", None)
    if isinstance(error, ControlError):
        return f"{command}: {error}"
    if isinstance(error, WorkflowAlreadyStartedError):
        return f"{command}: a run with id {error.workflow_id!r} already exists"
    if isinstance(error, WorkflowQueryFailedError):
        return f"{command}: the run could not answer: {_first_line(str(error))}"
    if not isinstance(error, RPCError):
        return f"{command}: {type(error).__name__}: {_first_line(str(error))}"
    message = _first_line(error.message) or error.status.name.lower()
    status = error.status
    if status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
        return f"{command}: not allowed: {message}"
    if status == RPCStatusCode.NOT_FOUND:
        if workflow_id and "namespace" not in message.lower() and "not found" in message:
            namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")
            return f"{command}: no run {workflow_id!r} in namespace {namespace!r}"
        return f"{command}: {message}"
    if status == RPCStatusCode.UNAVAILABLE:
        return f"{command}: Temporal at {_address()} is unavailable: {message}"
    if status == RPCStatusCode.DEADLINE_EXCEEDED:
        return f"{command}: Temporal did not answer in time: {message}"
    return f"{command}: {message} ({status.name})"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _address() -> str:
    from starter import client

    return os.environ.get("TEMPORAL_ADDRESS", client.DEFAULT_ADDRESS)


def connect_failure(error: BaseException, address: str) -> str:
    """The one line for a failed connection (the SDK's message is a Rust error dump)."""
    text = str(error)
    lowered = text.lower()
    status = re.search(r"code: (\w+), message: \"((?:[^\"\\]|\\.)*)\"", text)
    if status and status.group(1) in ("Unauthenticated", "PermissionDenied"):
        return f"not allowed: Temporal at {address} refused the connection: {status.group(2)}"
    if status:
        return f"cannot use Temporal at {address}: {status.group(2)} ({status.group(1)})"
    reasons = (
        ("connection refused", "nothing is listening there"),
        ("dns error", "unknown host"),
        ("failed to lookup address", "unknown host"),
        ("certificate", "TLS certificate problem"),
        ("tls", "TLS handshake failed"),
        ("timed out", "timed out"),
        ("connection reset", "the connection was reset"),
    )
    reason = next((why for needle, why in reasons if needle in lowered), _first_line(text))
    return (
        f"cannot reach Temporal at {address}: {reason} "
        "(start one with `tideflow dev`, or set TEMPORAL_ADDRESS)"
    )


# --- arguments -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tideflow", description="Durable YAML workflows on Temporal."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler, command=name)
        return p

    p = command("validate", _validate, "check definition files; print FILE:LINE:COL: problems")
    p.add_argument("files", nargs="+", metavar="FILE")

    for name, handler, text in (
        ("run", _run, "start a run and wait for its report (exit 0 completed, 1 failed)"),
        ("start", _start, "start a run and print its workflow id"),
        ("compile", _compile, "print the workflow input JSON (for temporal workflow start)"),
    ):
        p = command(name, handler, text)
        p.add_argument("file", metavar="FILE")
        p.add_argument(
            "--input",
            "-i",
            action="append",
            default=[],
            metavar="K=V",
            help="an input; V is parsed as JSON when it can be",
        )
        p.add_argument("--input-file", metavar="F", help="inputs from a JSON or YAML file")
        if name != "compile":
            p.add_argument("--id", dest="workflow_id", help="workflow id (default slug-random)")
            p.add_argument("--task-queue", help="task queue (default tideflow)")
            p.add_argument(
                "--upload",
                action="store_true",
                help="copy inputs that name local files to the payload store (done anyway "
                "when the worker runs on another machine); otherwise they become file:// URIs",
            )
        if name == "run":
            p.add_argument(
                "--wait-for-worker",
                type=float,
                default=30.0,
                metavar="SECONDS",
                help="how long to wait for a worker polling the task queue before giving up "
                "(default 30)",
            )
            p.add_argument("--json", action="store_true", help="print the report as JSON")
            p.add_argument(
                "--embedded",
                action="store_true",
                help="start the embedded server and a worker for this run if no "
                "server answers at TEMPORAL_ADDRESS",
            )

    p = command("status", _status, "show a run's live state")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("--json", action="store_true")

    p = command("result", _result, "wait for a run's report and print it as JSON")
    p.add_argument("workflow_id", metavar="ID")

    p = command("list", _list, "list recent runs")
    p.add_argument("--definition", help="definition slug, e.g. invoice-processing")
    p.add_argument(
        "--status",
        help="running, paused, waiting, needs_attention, completed, "
        "failed, cancelled, terminated, timed_out",
    )
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")

    for name, handler, text in (
        ("pause", partial(_control, action="pause"), "let running nodes finish, start nothing new"),
        ("resume", partial(_control, action="resume"), "resume a paused run"),
        ("cancel", partial(_control, action="cancel"), "cancel a run (compensations run)"),
    ):
        p = command(name, handler, text)
        p.add_argument("workflow_id", metavar="ID")

    p = command("skip", partial(_control, action="skip"), "skip a pending or failed node")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--output", help="JSON output for downstream nodes to see")

    p = command("retry", partial(_control, action="retry"), "run a node that needs attention again")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")

    p = command("set", partial(_control, action="set"), "change a run's vars")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("values", nargs="+", metavar="K=V")

    p = command(
        "approve", partial(_control, action="approve"), "approve (or --reject) an approval node"
    )
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--comment")
    p.add_argument("--by", default=os.environ.get("USER"))

    p = command(
        "emit",
        _emit,
        "emit an event: deliver it to waiting runs and start the runs "
        "of definitions with an event trigger of that name",
    )
    p.add_argument("event", metavar="EVENT")
    p.add_argument("--data", help="JSON payload")
    p.add_argument("--correlation", help="deliver only to runs waiting with this correlation")
    p.add_argument("--id", dest="workflow_id", help="deliver to this run only (starts nothing)")
    p.add_argument("--key", help="event id: the same key never starts a definition's run twice")
    _definitions_arg(p)

    p = command("api", _api, "serve the HTTP API (and run the triggers in the background)")
    _definitions_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-triggers", action="store_true", help="do not run the triggers")
    p.add_argument(
        "--poll-seconds", type=float, default=2.0, help="how often watched folders are polled"
    )

    p = command("triggers", _triggers, "run the triggers: sync schedules, watch folders")
    _definitions_arg(p)
    p.add_argument(
        "--poll-seconds", type=float, default=2.0, help="how often watched folders are polled"
    )
    p.add_argument("--once", action="store_true", help="one pass, then exit")

    p = command("graph", _graph, "print a definition's graph as Mermaid")
    p.add_argument("file", metavar="FILE")

    command("schema", _schema, "print the JSON Schema of the language (for editors)")

    p = command("server", _server, "run the embedded Temporal server (SQLite, Web UI)")
    _server_args(p)
    p.add_argument(
        "--stop",
        action="store_true",
        help="stop the server that `run --embedded` or `demo` left running",
    )

    command("worker", _worker, "run a worker (same as python worker.py)")

    p = command("dev", _dev, "run the embedded server and a worker together")
    _server_args(p)

    command("demo", _demo, "run the invoice example on three sample invoices")
    return parser


def _definitions_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--definitions",
        metavar="DIR",
        type=Path,
        help="folder of definition files (default $TIDEFLOW_DEFINITIONS or examples/)",
    )


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=7233)
    p.add_argument(
        "--ui-port", type=int, help="Web UI port (default 8233, or a free one if it is taken)"
    )
    p.add_argument("--headless", action="store_true", help="no Web UI")
    p.add_argument("--data-dir", type=Path, help="default $TIDEFLOW_HOME or .tideflow")


# --- helpers ---------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _Exit(EXIT_BAD_INPUT, f"{what} {item!r}: write it as key=value")
        out[key] = _parse_value(value)
    return out


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if args.input_file:
        path = Path(args.input_file)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise _Exit(EXIT_BAD_INPUT, f"{path}: cannot read inputs: {e}") from None
        if not isinstance(loaded, dict):
            raise _Exit(EXIT_BAD_INPUT, f"{path}: inputs must be a mapping")
        inputs.update(loaded)
    inputs.update(_pairs(args.input, "--input"))
    return inputs


def _load(path: str) -> Any:
    from interpreter import DefinitionError
    from starter import client

    try:
        return client.load(path)
    except DefinitionError as e:
        raise _Exit(EXIT_BAD_INPUT, str(e)) from None


def _check_inputs(definition: Any, inputs: dict[str, Any]) -> None:
    from interpreter.inputs import InputError, resolve_inputs

    try:
        resolve_inputs(definition, inputs)
    except InputError as e:
        raise _Exit(EXIT_BAD_INPUT, "\n".join(e.problems)) from None


async def _connect() -> Any:
    from starter import client

    try:
        return await client.connect()
    except Exception as e:
        raise _Exit(EXIT_FAILED, connect_failure(e, _address())) from None


def _task_queue(args: argparse.Namespace) -> str:
    from activities import WorkerSettings

    return str(args.task_queue or WorkerSettings.from_env().task_queue)


async def _wait_for_worker(temporal: Any, queue: str, seconds: float, *, quiet: float) -> list[str]:
    """The identities of the workers polling ``queue``, waiting up to ``seconds`` for one
    (saying so after ``quiet`` seconds); a one-line failure when none comes."""
    from starter import client

    loop = asyncio.get_running_loop()
    start = loop.time()
    said = False
    while True:
        identities = await client.poller_identities(temporal, queue)
        if identities:
            if said:
                print(f"a worker is polling task queue {queue!r}", file=sys.stderr)
            return identities
        waited = loop.time() - start
        if not said and waited >= quiet:
            print(
                f"no worker is polling task queue {queue!r}; waiting up to "
                f"{seconds:g} s (--wait-for-worker)",
                file=sys.stderr,
                flush=True,
            )
            said = True
        if waited >= seconds:
            raise _Exit(
                EXIT_FAILED,
                f"no worker polled task queue {queue!r} in {seconds:g} s: nothing was started "
                "(start one with `tideflow worker`, or use `tideflow run --embedded`)",
            )
        await asyncio.sleep(min(0.5, max(seconds - waited, 0.05)))


async def _open_run(temporal: Any, workflow_id: str, what: str) -> Any:
    """The description of a run that a worker can answer for; a one-line failure when it is
    still open and no worker polls its task queue (the request would hang)."""
    from temporalio.client import WorkflowExecutionStatus

    from starter import client

    description = await temporal.get_workflow_handle(workflow_id).describe()
    running = description.status == WorkflowExecutionStatus.RUNNING
    queue = description.task_queue
    if running and not await client.has_workers(temporal, queue):
        raise _Exit(
            EXIT_FAILED,
            f"run {workflow_id!r} is running but no worker is polling its task queue "
            f"{queue!r} to {what} (start one with `tideflow worker`)",
        )
    return description


async def _local_inputs(
    args: argparse.Namespace, inputs: dict[str, Any], identities: list[str] | None
) -> dict[str, Any]:
    """Inputs naming local files as URIs: uploaded with --upload or a remote worker."""
    from activities import WorkerSettings
    from starter.local_files import local_file, remote_pollers, resolve_local_files

    if not any(local_file(value) for value in inputs.values()):
        return inputs
    upload = bool(getattr(args, "upload", False))
    if not upload and identities and remote_pollers(identities):
        print(
            "note: the worker runs on another machine: local files are uploaded to the "
            "payload store",
            file=sys.stderr,
        )
        upload = True
    try:
        resolved, replaced = await resolve_local_files(
            inputs, upload=upload, settings=WorkerSettings.from_env()
        )
    except (OSError, ValueError) as e:
        raise _Exit(EXIT_FAILED, f"cannot upload an input file: {_first_line(str(e))}") from None
    for item in replaced:
        how = "uploaded to" if item.uploaded else "→"
        print(f"input {item.name}: {item.path} {how} {item.uri}", file=sys.stderr)
    return resolved


def _print_json(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    print(json.dumps(value, indent=2, default=str))


# --- commands --------------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    from starter import client

    problems = client.validate(args.files)
    for problem in problems:
        print(problem)
    if problems:
        return EXIT_BAD_INPUT
    for file in args.files:
        print(f"{file}: ok")
    return EXIT_OK


async def _compile(args: argparse.Namespace) -> int:
    from starter import client

    definition = _load(args.file)
    inputs = _inputs(args)
    _check_inputs(definition, inputs)
    inputs = await _local_inputs(args, inputs, None)
    _print_json(client.run_input(definition, inputs))
    return EXIT_OK


async def _start(args: argparse.Namespace) -> int:
    from starter import client

    definition = _load(args.file)
    inputs = _inputs(args)
    _check_inputs(definition, inputs)
    temporal = await _connect()
    queue = _task_queue(args)
    identities = await client.poller_identities(temporal, queue)
    if not identities:
        print(
            f"note: no worker is polling task queue {queue!r}: the run waits until one does "
            "(start one with `tideflow worker`)",
            file=sys.stderr,
        )
    inputs = await _local_inputs(args, inputs, identities)
    handle = await client.start(
        temporal, definition, inputs, workflow_id=args.workflow_id, task_queue=queue
    )
    print(handle.id)
    print(f"Web UI: {client.web_ui_url(handle.id, handle.result_run_id)}", file=sys.stderr)
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    from starter import client
    from starter.progress import follow

    definition = _load(args.file)
    inputs = _inputs(args)
    _check_inputs(definition, inputs)
    queue = _task_queue(args)
    async with _temporal(args.embedded, queue) as temporal:
        # The embedded worker starts polling a moment after it starts: no false alarm.
        identities = await _wait_for_worker(
            temporal, queue, args.wait_for_worker, quiet=2.0 if args.embedded else 0.0
        )
        inputs = await _local_inputs(args, inputs, identities)
        handle = await client.start(
            temporal, definition, inputs, workflow_id=args.workflow_id, task_queue=queue
        )
        if not args.json:
            print(f"started {handle.id}", file=sys.stderr)
            await follow(temporal, handle.id, definition)
        report = await client.result(temporal, handle.id, handle.result_run_id)
    if args.json:
        _print_json(report)
    else:
        from starter.progress import print_report

        print_report(report)
        print(f"Web UI: {client.web_ui_url(report.workflow_id, report.run_id)}")
    return EXIT_OK if report.status == "completed" else EXIT_FAILED


class _temporal:
    """A connection, or (with ``embedded``) an embedded server and worker when none answers."""

    def __init__(self, embedded: bool, task_queue: str) -> None:
        self.embedded = embedded
        self.task_queue = task_queue
        self.stack: Any = None

    async def __aenter__(self) -> Any:
        if not self.embedded:
            return await _connect()
        from activities import WorkerSettings
        from starter.embedded import embedded_temporal

        # The worker polls the queue the run is started on, --task-queue included.
        settings = WorkerSettings.from_env().model_copy(update={"task_queue": self.task_queue})
        self.stack = embedded_temporal(settings)
        return await self.stack.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        if self.stack is not None:
            await self.stack.__aexit__(*exc)


async def _status(args: argparse.Namespace) -> int:
    from temporalio.client import WorkflowExecutionStatus

    from starter import client
    from starter.progress import print_state, retries

    temporal = await _connect()
    handle = temporal.get_workflow_handle(args.workflow_id)
    description = await handle.describe()
    queue = description.task_queue
    if not await client.has_workers(temporal, queue):
        # The state query is answered by a worker only: it would hang until a timeout.
        if description.status == WorkflowExecutionStatus.RUNNING:
            raise _Exit(
                EXIT_FAILED,
                f"run {args.workflow_id!r} is running but no worker is polling its task queue "
                f"{queue!r} to answer for its nodes (start one with `tideflow worker`)",
            )
        ended = description.status.name.lower() if description.status else "closed"
        raise _Exit(
            EXIT_FAILED,
            f"run {args.workflow_id!r} has ended ({ended}) and no worker is polling its task "
            f"queue {queue!r} to show its nodes (`tideflow result {args.workflow_id}` shows "
            "its report)",
        )
    state = await client.status(temporal, args.workflow_id, timeout=15)
    if args.json:
        _print_json(state)
    else:
        link = client.web_ui_url(args.workflow_id, description.run_id)
        print_state(args.workflow_id, state, await retries(handle), link)
    return EXIT_OK


async def _result(args: argparse.Namespace) -> int:
    from starter import client

    temporal = await _connect()
    await _open_run(temporal, args.workflow_id, "finish it")
    report = await client.result(temporal, args.workflow_id)
    _print_json(report)
    return EXIT_OK if report.status == "completed" else EXIT_FAILED


async def _list(args: argparse.Namespace) -> int:
    from starter import client

    temporal = await _connect()
    try:
        runs = await client.list_runs(
            temporal, definition=args.definition, status=args.status, limit=args.limit
        )
    except ValueError as e:
        raise _Exit(EXIT_BAD_INPUT, str(e)) from None
    if args.json:
        _print_json([run.model_dump() for run in runs])
        return EXIT_OK
    from starter.progress import print_runs

    print_runs(runs)
    return EXIT_OK


_UPDATES = frozenset({"skip", "retry", "set", "approve"})
"""Control actions sent as updates: they wait for a worker to accept them."""


async def _control(args: argparse.Namespace, action: str) -> int:
    from starter import client

    temporal = await _connect()
    if action in _UPDATES:
        await _open_run(temporal, args.workflow_id, f"accept {action}")
    if action == "pause":
        await client.pause(temporal, args.workflow_id)
        print(f"pause requested for {args.workflow_id}: running nodes finish, nothing new starts")
    elif action == "resume":
        await client.resume(temporal, args.workflow_id)
        print(f"resume requested for {args.workflow_id}")
    elif action == "cancel":
        await client.cancel(temporal, args.workflow_id)
        print(f"cancellation requested for {args.workflow_id}")
    elif action == "skip":
        output = _parse_value(args.output) if args.output is not None else None
        answer = await client.skip(temporal, args.workflow_id, args.node, output)
        later = f" ({answer.message})" if answer.message else ""
        print(f"skipped {args.node} of {args.workflow_id}{later}")
    elif action == "retry":
        await client.retry(temporal, args.workflow_id, args.node)
        print(f"retrying {args.node} of {args.workflow_id}")
    elif action == "set":
        values = _pairs(args.values, "value")
        await client.set_vars(temporal, args.workflow_id, values)
        print(f"set {', '.join(values)} of {args.workflow_id}")
    elif action == "approve":
        approved = not args.reject
        await client.approve(temporal, args.workflow_id, args.node, approved, args.comment, args.by)
        print(f"{'approved' if approved else 'rejected'} {args.node} of {args.workflow_id}")
    return EXIT_OK


async def _emit(args: argparse.Namespace) -> int:
    from starter import client
    from starter.triggers import new_catalog, start_runs_for_event

    payload = _parse_value(args.data) if args.data is not None else None
    temporal = await _connect()
    deliveries = await client.deliver_event(
        temporal, args.event, payload, correlation=args.correlation, workflow_id=args.workflow_id
    )
    _print_deliveries(args.event, args.correlation, deliveries)
    if args.workflow_id:
        return EXIT_OK
    folder = _definitions_folder(args, required=args.definitions is not None)
    starts = await start_runs_for_event(
        temporal, new_catalog(folder), args.event, payload, key=args.key
    )
    print(f"emit {args.event}: started {sum(r.new for r in starts.started)} run(s)")
    for run in starts.started:
        print(f"  {run.workflow_id} ({run.definition}{'' if run.new else ', started before'})")
    for refused in starts.refused:
        print(f"  {refused.definition}: not started: {'; '.join(refused.problems)}")
    return EXIT_FAILED if starts.refused else EXIT_OK


def _print_deliveries(event: str, correlation: str | None, deliveries: Sequence[Any]) -> None:
    what = "this event" if correlation is None else "this event/correlation"
    taken = [d.workflow_id for d in deliveries if d.taken]
    ignored = [d.workflow_id for d in deliveries if d.taken is False]
    unknown = [d.workflow_id for d in deliveries if d.taken is None]
    if taken or not deliveries:
        print(f"emit {event}: delivered to {len(taken)} run(s) waiting for it")
        for workflow_id in taken:
            print(f"  {workflow_id}")
    if ignored:
        print(f"emit {event}: {len(ignored)} run(s) received it but none is waiting for {what}")
        for workflow_id in ignored:
            print(f"  {workflow_id}")
    if unknown:
        print(
            f"emit {event}: sent to {len(unknown)} run(s) no worker could answer for "
            "(whether they wait for it is unknown)"
        )
        for workflow_id in unknown:
            print(f"  {workflow_id}")


def _definitions_folder(args: argparse.Namespace, *, required: bool = True) -> Path:
    from starter._catalog import definitions_dir

    folder = definitions_dir(args.definitions)
    if required and not folder.is_dir():
        raise _Exit(EXIT_BAD_INPUT, f"{folder}: no such folder (give --definitions DIR)")
    return folder


def _api(args: argparse.Namespace) -> int:
    import logging

    from starter.api import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(
        _definitions_folder(args),
        host=args.host,
        port=args.port,
        triggers=not args.no_triggers,
        poll_seconds=args.poll_seconds,
    )
    return EXIT_OK


async def _triggers(args: argparse.Namespace) -> int:
    import logging

    from starter.triggers import TriggerRunner, new_catalog, trigger_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catalog = new_catalog(_definitions_folder(args))
    for line in trigger_summary(catalog.entries()) or [f"{catalog.folder}: no triggers"]:
        print(line)
    temporal = await _connect()

    async def connected() -> Any:
        return temporal

    runner = TriggerRunner(catalog, connected, poll_seconds=args.poll_seconds)
    if args.once:
        result = await runner.poll_once()
        for change in result.schedules:
            print(f"schedule {change.schedule_id}: {change.action} {change.detail}".rstrip())
        for run in result.started:
            print(
                f"{'started' if run.new else 'already started'} {run.workflow_id} for {run.source}"
            )
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED if result.errors else EXIT_OK
    await runner.run()
    return EXIT_OK


def _graph(args: argparse.Namespace) -> int:
    from starter.graph import mermaid

    print(mermaid(_load(args.file)))
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    import activities
    from interpreter.schema import json_schema

    activities.load_extensions()
    _print_json(json_schema(activities.registry))
    return EXIT_OK


def _dev_server(args: argparse.Namespace) -> Any:
    from starter.server import DevServer, data_home

    return DevServer(
        data_dir=args.data_dir or data_home(),
        port=args.port,
        ui_port=args.ui_port,
        headless=args.headless,
    )


def _start_server(server: Any) -> None:
    from starter.server import ServerError

    try:
        server.start()
    except ServerError as e:
        raise _Exit(EXIT_FAILED, str(e)) from None
    print(f"Temporal server on {server.address}, data in {server.data_dir}")
    if server.ui_url:
        print(f"Web UI: {server.ui_url}")


def _server(args: argparse.Namespace) -> int:
    server = _dev_server(args)
    if args.stop:
        stopped = server.stop_background()
        print("stopped" if stopped else "no background server was running")
        return EXIT_OK
    _start_server(server)
    try:
        return int(server.wait())
    except KeyboardInterrupt:
        server.stop()
        return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    import worker

    asyncio.run(worker.main())
    return EXIT_OK


def _dev(args: argparse.Namespace) -> int:
    import worker

    server = _dev_server(args)
    _start_server(server)
    os.environ["TEMPORAL_ADDRESS"] = server.address
    try:
        asyncio.run(worker.main(development=True))
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from starter.demo import run_demo

    return await run_demo()


if __name__ == "__main__":
    entry()
