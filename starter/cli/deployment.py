"""Checking and feeding a deployment: ``doctor`` (is everything in place?) and
``outbox`` (the starts waiting for Temporal)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from starter.cli.arguments import Commands, add_definitions_arg, definitions_folder, print_json
from starter.cli.errors import EXIT_FAILED, EXIT_OK, Exit

if TYPE_CHECKING:
    from activities import WorkerSettings
    from starter.client import TideflowClient
    from starter.outbox import Deliverer, Entry, StartOutbox


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "doctor",
        _doctor,
        "check Temporal, workers, models, databases, buckets, the payload store, the outbox "
        "and the clock; print a fix for each problem (exit 1 when something is wrong)",
    )
    add_definitions_arg(p)
    p.add_argument("--json", action="store_true", help="the checks as JSON")
    p.add_argument(
        "--no-clock",
        action="store_true",
        help="skip the clock check (it starts and terminates a probe workflow)",
    )

    p = commands.add(
        "outbox",
        _outbox,
        "list the starts and events waiting in the outbox for Temporal (--deliver: hand them "
        "over now)",
    )
    p.add_argument("--all", action="store_true", help="also the latest delivered and failed ones")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--deliver",
        action="store_true",
        help="deliver what waits, in order (exit 1 if Temporal cannot be reached)",
    )


async def _doctor(args: argparse.Namespace) -> int:
    from activities import WorkerSettings
    from starter.doctor import diagnose, subject_of
    from starter.triggers import new_catalog

    settings = WorkerSettings.from_env()
    folder = definitions_folder(args, required=args.definitions is not None)
    catalog = new_catalog(folder) if folder.is_dir() else None
    report = await diagnose(subject_of(settings, catalog), clock=not args.no_clock)
    if args.json:
        print_json(report.as_json())
    else:
        print(report.table())
    return EXIT_OK if report.ok else EXIT_FAILED


async def _outbox(args: argparse.Namespace) -> int:
    from activities import WorkerSettings
    from starter.outbox import Outbox

    settings = WorkerSettings.from_env()
    outbox = Outbox.of(settings)
    code = EXIT_OK
    if args.deliver:
        code = await _deliver_all(outbox, settings)
    entries = await asyncio.to_thread(outbox.entries, include_done=args.all, limit=args.limit)
    if args.json:
        print_json([entry.as_json() for entry in entries])
    else:
        print(_table(entries))
    return code


async def _deliver_all(outbox: Any, settings: WorkerSettings) -> int:
    from starter.outbox import Deliverer

    deliverer = Deliverer(outbox, _connector())
    total = 0
    while True:
        result = await deliverer.deliver()
        total += len(result.delivered)
        if result.unavailable:
            print(
                f"outbox: Temporal cannot be reached ({result.unavailable}); "
                f"{total} delivered, the rest waits",
                file=sys.stderr,
            )
            return EXIT_FAILED
        if not result.delivered:
            break
    print(f"outbox: {total} delivered", file=sys.stderr)
    return EXIT_OK


def _connector() -> Any:
    """A client getter connecting once, on first need (an unreachable server raises)."""
    client: list[TideflowClient] = []

    async def get() -> TideflowClient:
        from starter.client import TideflowClient

        if not client:
            client.append(await asyncio.wait_for(TideflowClient.connect(), 10))
        return client[0]

    return get


def _table(entries: list[Entry]) -> str:
    if not entries:
        return "the outbox is empty: nothing waits for Temporal"
    now = time.time()
    rows = [("id", "age", "status", "kind", "definition", "workflow id", "note")]
    for entry in entries:
        note = entry.error or ""
        if entry.status == "delivered":
            note = f"run {entry.run_id}" if entry.run_id else "delivered"
        rows.append(
            (
                entry.id,
                _age(entry.age(now)),
                entry.status,
                entry.kind,
                entry.definition or "",
                entry.workflow_id or "",
                note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    waiting = sum(1 for entry in entries if entry.open)
    lines.append(f"{waiting} waiting")
    return "\n".join(line.rstrip() for line in lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# -- starting through the outbox (``tideflow start --queue``, limited definitions) -----------------


def cli_outbox(settings: WorkerSettings) -> tuple[StartOutbox, Deliverer]:
    """The outbox of a command, delivering with a client connected on first need."""
    from starter.outbox import Deliverer, Outbox, StartOutbox

    outbox = Outbox.of(settings)
    deliverer = Deliverer(outbox, _connector())
    return StartOutbox(outbox, deliverer, settings), deliverer


def explain(entry: Entry) -> str:
    """What became of an entry, for stderr."""
    if entry.status == "delivered":
        return f"delivered: run {entry.workflow_id} ({entry.run_id})"
    if entry.status == "failed":
        raise Exit(EXIT_FAILED, f"start refused: {entry.error}")
    why = f" ({entry.error})" if entry.error else ""
    return (
        f"queued in the outbox as {entry.id}{why}: it starts run {entry.workflow_id} once "
        "Temporal takes it (the API delivers it, or `tideflow outbox --deliver`)"
    )
