"""Long-running commands: ``server``, ``worker``, ``dev``, ``demo``, ``api``, ``triggers``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starter.cli.arguments import (
    Commands,
    add_definitions_arg,
    add_registry_arg,
    catalog_of,
    definitions_folder,
)
from starter.cli.connection import connect
from starter.cli.errors import EXIT_FAILED, EXIT_OK, Exit

if TYPE_CHECKING:
    from starter.client import TideflowClient


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add("api", _api, "serve the HTTP API (and run the triggers in the background)")
    add_definitions_arg(p)
    add_registry_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-triggers", action="store_true", help="do not run the triggers")
    p.add_argument(
        "--poll-seconds", type=float, default=2.0, help="how often watched folders are polled"
    )

    p = commands.add("triggers", _triggers, "run the triggers: sync schedules, watch folders")
    add_definitions_arg(p)
    add_registry_arg(p)
    p.add_argument(
        "--poll-seconds", type=float, default=2.0, help="how often watched folders are polled"
    )
    p.add_argument("--once", action="store_true", help="one pass, then exit")

    p = commands.add("server", _server, "run the embedded Temporal server (SQLite, Web UI)")
    _server_args(p)
    p.add_argument(
        "--stop",
        action="store_true",
        help="stop the server that `run --embedded` or `demo` left running",
    )

    commands.add("worker", _worker, "run a worker (same as python worker.py)")

    p = commands.add("dev", _dev, "run the embedded server and a worker together")
    _server_args(p)

    commands.add("demo", _demo, "run the invoice example on three sample invoices")


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=7233)
    p.add_argument(
        "--ui-port", type=int, help="Web UI port (default 8233, or a free one if it is taken)"
    )
    p.add_argument("--headless", action="store_true", help="no Web UI")
    p.add_argument("--data-dir", type=Path, help="default $TIDEFLOW_HOME or .tideflow")


def _api(args: argparse.Namespace) -> int:
    import logging

    from starter.api import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.registry:
        from starter.registry import registry_catalog

        serve(
            catalog=registry_catalog(),
            host=args.host,
            port=args.port,
            triggers=not args.no_triggers,
            poll_seconds=args.poll_seconds,
        )
        return EXIT_OK
    serve(
        definitions_folder(args),
        host=args.host,
        port=args.port,
        triggers=not args.no_triggers,
        poll_seconds=args.poll_seconds,
    )
    return EXIT_OK


async def _triggers(args: argparse.Namespace) -> int:
    import logging

    from starter.triggers import TriggerRunner, trigger_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catalog = catalog_of(args)
    summary = trigger_summary(catalog.entries(), catalog.schedule_prefix)
    for line in summary or [f"{catalog.folder}: no triggers"]:
        print(line)
    client = await connect(origin="trigger")

    async def connected() -> TideflowClient:
        return client

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
        raise Exit(EXIT_FAILED, str(e)) from None
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

    return worker.run_main()


def _dev(args: argparse.Namespace) -> int:
    import worker

    server = _dev_server(args)
    _start_server(server)
    os.environ["TEMPORAL_ADDRESS"] = server.address
    try:
        return worker.run_main(development=True)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        server.stop()


async def _demo(args: argparse.Namespace) -> int:
    from starter.demo import run_demo

    return await run_demo()
