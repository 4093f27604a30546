"""``tideflow``: the command line. Thin: parse arguments, call :mod:`starter.client`, print.

Exit codes: 0 success (a run completed), 1 a run failed or a request was refused, 2 bad input
(an invalid definition, bad inputs, bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    """Run the ``tideflow`` command line; return its exit code."""
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
        return e.code


class _Exit(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        if message:
            print(message, file=sys.stderr)


# --- arguments -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tideflow", description="Durable YAML workflows on Temporal."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
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
        if name == "run":
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
    p.add_argument("--ui-port", type=int, default=8233)
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
        address = os.environ.get("TEMPORAL_ADDRESS", client.DEFAULT_ADDRESS)
        raise _Exit(
            EXIT_FAILED,
            f"cannot reach Temporal at {address}: {e}\n"
            f"start one with `tideflow dev` (or set TEMPORAL_ADDRESS)",
        ) from None


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


def _compile(args: argparse.Namespace) -> int:
    from starter import client

    definition = _load(args.file)
    inputs = _inputs(args)
    _check_inputs(definition, inputs)
    _print_json(client.run_input(definition, inputs))
    return EXIT_OK


async def _start(args: argparse.Namespace) -> int:
    from starter import client

    definition = _load(args.file)
    inputs = _inputs(args)
    _check_inputs(definition, inputs)
    temporal = await _connect()
    handle = await client.start(
        temporal, definition, inputs, workflow_id=args.workflow_id, task_queue=args.task_queue
    )
    print(handle.id)
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    from activities import WorkerSettings
    from starter import client
    from starter.progress import follow

    definition = _load(args.file)
    inputs = _inputs(args)
    _check_inputs(definition, inputs)
    async with _temporal(args.embedded) as temporal:
        handle = await client.start(
            temporal, definition, inputs, workflow_id=args.workflow_id, task_queue=args.task_queue
        )
        queue = args.task_queue or WorkerSettings.from_env().task_queue
        if not await client.has_workers(temporal, queue):
            print(
                f"note: no worker polls task queue {queue!r}: the run waits until one does "
                f"(start one with `tideflow worker`, or use `tideflow run --embedded`)",
                file=sys.stderr,
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

    def __init__(self, embedded: bool) -> None:
        self.embedded = embedded
        self.stack: Any = None

    async def __aenter__(self) -> Any:
        if not self.embedded:
            return await _connect()
        from starter.embedded import embedded_temporal

        self.stack = embedded_temporal()
        return await self.stack.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        if self.stack is not None:
            await self.stack.__aexit__(*exc)


async def _status(args: argparse.Namespace) -> int:
    from starter import client
    from starter.progress import print_state

    temporal = await _connect()
    state = await client.status(temporal, args.workflow_id)
    if args.json:
        _print_json(state)
    else:
        print_state(args.workflow_id, state)
    return EXIT_OK


async def _result(args: argparse.Namespace) -> int:
    from starter import client

    temporal = await _connect()
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


async def _control(args: argparse.Namespace, action: str) -> int:
    from starter import client

    temporal = await _connect()
    try:
        if action == "pause":
            await client.pause(temporal, args.workflow_id)
        elif action == "resume":
            await client.resume(temporal, args.workflow_id)
        elif action == "cancel":
            await client.cancel(temporal, args.workflow_id)
        elif action == "skip":
            output = _parse_value(args.output) if args.output is not None else None
            await client.skip(temporal, args.workflow_id, args.node, output)
        elif action == "retry":
            await client.retry(temporal, args.workflow_id, args.node)
        elif action == "set":
            await client.set_vars(temporal, args.workflow_id, _pairs(args.values, "value"))
        elif action == "approve":
            await client.approve(
                temporal, args.workflow_id, args.node, not args.reject, args.comment, args.by
            )
    except client.ControlError as e:
        raise _Exit(EXIT_FAILED, str(e)) from None
    except Exception as e:  # RPC errors: unknown workflow id, closed run…
        raise _Exit(EXIT_FAILED, f"{action} failed: {getattr(e, 'message', None) or e}") from None
    print(f"{action}: ok")
    return EXIT_OK


async def _emit(args: argparse.Namespace) -> int:
    from starter import client
    from starter.triggers import new_catalog, start_runs_for_event

    payload = _parse_value(args.data) if args.data is not None else None
    temporal = await _connect()
    delivered = await client.emit_event(
        temporal, args.event, payload, correlation=args.correlation, workflow_id=args.workflow_id
    )
    print(f"emit {args.event}: delivered to {len(delivered)} run(s)")
    for workflow_id in delivered:
        print(f"  {workflow_id}")
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
