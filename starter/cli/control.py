"""Commands that operate a run: ``pause``, ``resume``, ``cancel``, ``skip``, ``retry``,
``fail``, ``set``, ``approve``, and ``emit`` (events to waiting runs and event triggers)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starter.cli.arguments import (
    Commands,
    add_definitions_arg,
    add_registry_arg,
    catalog_of,
    pairs,
    parse_value,
)
from starter.cli.connection import connect, open_run
from starter.cli.errors import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from starter.client import RunHandle


def register(commands: Commands) -> None:
    """Add this module's commands."""
    for name, handler, text in (
        ("pause", _pause, "let running nodes finish, start nothing new"),
        ("resume", _resume, "resume a paused run"),
        ("cancel", _cancel, "cancel a run (compensations run)"),
    ):
        p = commands.add(name, handler, text)
        p.add_argument("workflow_id", metavar="ID")

    p = commands.add("skip", _skip, "skip a pending or failed node")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--output", help="JSON output for downstream nodes to see")

    p = commands.add("retry", _retry, "run a node that needs attention again")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")

    p = commands.add(
        "fail", _fail, "give up on a node that needs attention or waits: the run fails"
    )
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reason", metavar="TEXT", help="why (recorded as the node's error)")

    p = commands.add("set", _set, "change a run's vars")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("values", nargs="+", metavar="K=V")

    p = commands.add(
        "approve",
        _approve,
        "approve (or --reject) an approval node, as $TIDEFLOW_USER (or your user name) with "
        "the roles of $TIDEFLOW_ROLES",
    )
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--comment")
    p.add_argument(
        "--answer",
        metavar="VALUE",
        help="for a node waiting for a review: the answer instead of the proposed one "
        "(a label, or JSON)",
    )

    p = commands.add(
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
    add_definitions_arg(p)
    add_registry_arg(p)


async def _pause(args: argparse.Namespace) -> int:
    client = await connect()
    await client.get_run(args.workflow_id).pause()
    print(f"pause requested for {args.workflow_id}: running nodes finish, nothing new starts")
    return EXIT_OK


async def _resume(args: argparse.Namespace) -> int:
    client = await connect()
    await client.get_run(args.workflow_id).resume()
    print(f"resume requested for {args.workflow_id}")
    return EXIT_OK


async def _cancel(args: argparse.Namespace) -> int:
    client = await connect()
    await client.get_run(args.workflow_id).cancel()
    print(f"cancellation requested for {args.workflow_id}")
    return EXIT_OK


async def _updating(args: argparse.Namespace, action: str) -> RunHandle:
    """The run to send an update to, once a worker can accept it (updates wait for one)."""
    client = await connect()
    run, _ = await open_run(client, args.workflow_id, f"accept {action}")
    return run


async def _skip(args: argparse.Namespace) -> int:
    run = await _updating(args, "skip")
    output = parse_value(args.output) if args.output is not None else None
    answer = await run.skip(args.node, output)
    later = f" ({answer.message})" if answer.message else ""
    print(f"skipped {args.node} of {args.workflow_id}{later}")
    return EXIT_OK


async def _retry(args: argparse.Namespace) -> int:
    run = await _updating(args, "retry")
    await run.retry(args.node)
    print(f"retrying {args.node} of {args.workflow_id}")
    return EXIT_OK


async def _fail(args: argparse.Namespace) -> int:
    run = await _updating(args, "fail")
    await run.fail(args.node, args.reason)  # by: the client's acting user
    print(f"failed {args.node} of {args.workflow_id}")
    return EXIT_OK


async def _set(args: argparse.Namespace) -> int:
    values = pairs(args.values, "value")
    run = await _updating(args, "set")
    await run.set_vars(values)
    print(f"set {', '.join(values)} of {args.workflow_id}")
    return EXIT_OK


async def _approve(args: argparse.Namespace) -> int:
    run = await _updating(args, "approve")
    approved = not args.reject
    answer = parse_value(args.answer) if args.answer is not None else None
    # As the acting user and roles.
    await run.approve(args.node, approved, args.comment, output=answer)
    print(f"{'approved' if approved else 'rejected'} {args.node} of {args.workflow_id}")
    return EXIT_OK


async def _emit(args: argparse.Namespace) -> int:
    from starter.triggers import start_runs_for_event

    payload = parse_value(args.data) if args.data is not None else None
    client = await connect()
    deliveries = await client.deliver_event(
        args.event, payload, correlation=args.correlation, workflow_id=args.workflow_id
    )
    _print_deliveries(args.event, args.correlation, deliveries)
    if args.workflow_id:
        return EXIT_OK
    catalog = catalog_of(args, required=args.definitions is not None)
    starts = await start_runs_for_event(client, catalog, args.event, payload, key=args.key)
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
