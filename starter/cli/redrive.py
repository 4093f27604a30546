"""``tideflow redrive``: run ended runs again from their last checkpoint, one or in bulk."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from starter.cli.arguments import Commands, print_json
from starter.cli.connection import connect
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "redrive",
        _redrive,
        "start a failed, cancelled, terminated or timed-out run again: completed nodes keep "
        "their output and do not run again (one run by ID, or in bulk with --definition)",
    )
    p.add_argument("workflow_id", metavar="ID", nargs="?", help="the run to redrive")
    p.add_argument(
        "--from",
        dest="from_node",
        metavar="NODE",
        help="run NODE and everything downstream of it again, even if they completed",
    )
    p.add_argument("--wait", action="store_true", help="wait for the new run and print its report")
    p.add_argument("--json", action="store_true", help="with --wait: the report as JSON")
    p.add_argument("--definition", metavar="SLUG", help="bulk: the ended runs of a definition")
    p.add_argument(
        "--status",
        default="failed",
        help="bulk: how the runs ended: failed (default), cancelled, terminated, timed_out",
    )
    p.add_argument(
        "--since", metavar="DURATION", help="bulk: runs that ended within this (1h, 30m, 2d)"
    )
    p.add_argument(
        "--limit", type=int, default=1000, help="bulk: at most this many runs (default 1000)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print what would be redriven and start nothing"
    )


async def _redrive(args: argparse.Namespace) -> int:
    if args.workflow_id and args.definition:
        raise Exit(EXIT_BAD_INPUT, "redrive: give a run ID or --definition, not both")
    if args.workflow_id:
        return await _one(args)
    if args.definition:
        return await _bulk(args)
    raise Exit(EXIT_BAD_INPUT, "redrive: give a run ID, or --definition SLUG for a bulk redrive")


async def _one(args: argparse.Namespace) -> int:
    from starter.client import RedriveError

    client = await connect()
    run = client.get_run(args.workflow_id)
    try:
        plan = await run.redrive_plan(args.from_node)
    except RedriveError as e:
        raise Exit(EXIT_BAD_INPUT, f"redrive: {e}") from None
    reused = ", ".join(sorted(plan.reuse)) or "nothing"
    again = ", ".join(plan.rerun) or "nothing"
    print(
        f"redrive of {plan.old.workflow_id} ({plan.old.status}): reusing {reused}; running {again}",
        file=sys.stderr,
    )
    if args.dry_run:
        return EXIT_OK
    from starter.client.redrive import start_redrive

    new = await start_redrive(client, plan)
    if not args.wait:
        print(new.id)
        print(f"Web UI: {new.web_ui_url()}", file=sys.stderr)
        return EXIT_OK
    print(f"started {new.id}", file=sys.stderr)
    report = await new.report()
    if args.json:
        print_json(report)
    else:
        from starter.progress import print_report

        print_report(report)
        print(f"Web UI: {new.web_ui_url()}")
    return EXIT_OK if report.status == "completed" else EXIT_FAILED


def _since(text: str | None) -> timedelta | None:
    if text is None:
        return None
    from interpreter.model import parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as e:
        raise Exit(EXIT_BAD_INPUT, f"redrive: --since {text!r}: {e}") from None


async def _bulk(args: argparse.Namespace) -> int:
    from starter.client import RedriveError
    from starter.client.redrive import start_redrive

    if args.from_node:
        raise Exit(EXIT_BAD_INPUT, "redrive: --from goes with one run ID, not a bulk redrive")
    since = _since(args.since)
    client = await connect()
    try:
        candidates = await client.redrive_candidates(
            definition=args.definition, status=args.status, since=since, limit=args.limit
        )
    except ValueError as e:
        raise Exit(EXIT_BAD_INPUT, f"redrive: {e}") from None
    todo = [c for c in candidates if c.redriven_by is None]
    window = f" that ended in the last {args.since}" if args.since else ""
    verb = "would redrive" if args.dry_run else "redriving"
    print(f"{verb} {len(todo)} {args.status} run(s) of {args.definition}{window}")
    for candidate in candidates:
        summary = candidate.run
        note = f"  (already redriven by {candidate.redriven_by})" if candidate.redriven_by else ""
        print(f"  {summary.workflow_id}  {summary.status}  {summary.started_at}{note}")
    if args.dry_run:
        return EXIT_OK
    failures = 0
    for candidate in todo:
        old = candidate.run.workflow_id
        try:
            plan = await client.get_run(old).redrive_plan()
            new = await start_redrive(client, plan)
        except RedriveError as e:  # it changed since the listing: say so and go on
            failures += 1
            print(f"  {old}: not redriven: {e}")
            continue
        print(f"  {old} → {new.id} (reusing {len(plan.reuse)} node(s))")
    print(f"redrove {len(todo) - failures} run(s)" + (f", {failures} refused" if failures else ""))
    return EXIT_FAILED if failures else EXIT_OK
