"""Commands for operators of a fleet of runs: ``budget`` (let a run spend more on models) and
``stats`` (what runs and nodes did: outcomes, durations, retries, spend, resources)."""

from __future__ import annotations

import argparse
import re

from starter.cli.arguments import Commands, print_json
from starter.cli.connection import connect, open_run
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_OK, Exit

_SLUG = re.compile(r"^[a-z0-9-]+$")


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "budget",
        _budget,
        "raise a run's AI spend budget; the nodes it stopped run again",
    )
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("--add-usd", type=float, default=0.0, metavar="X", help="US dollars to add")
    p.add_argument("--add-tokens", type=int, default=0, metavar="N", help="tokens to add")
    p.add_argument("--by", help="who decides (default $TIDEFLOW_USER or your user name)")

    p = commands.add(
        "stats",
        _stats,
        "runs and node attempts over a period, per definition and node type",
    )
    p.add_argument("--definition", metavar="SLUG", help="one definition, e.g. invoice-processing")
    p.add_argument(
        "--since", default="24h", metavar="DURATION", help="how far back: 1h, 24h, 7d (default 24h)"
    )
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")


async def _budget(args: argparse.Namespace) -> int:
    from starter.progress import budget_line

    if args.add_usd < 0 or args.add_tokens < 0:
        raise Exit(EXIT_BAD_INPUT, "budget: --add-usd and --add-tokens cannot be negative")
    if not args.add_usd and not args.add_tokens:
        raise Exit(EXIT_BAD_INPUT, "budget: give --add-usd X and/or --add-tokens N")
    client = await connect()
    run, _ = await open_run(client, args.workflow_id, "accept a budget")
    await run.raise_budget(args.add_tokens, args.add_usd, args.by)
    added = " and ".join(
        part
        for part in (
            f"${args.add_usd:g}" if args.add_usd else "",
            f"{args.add_tokens:,} tokens" if args.add_tokens else "",
        )
        if part
    )
    print(f"raised the budget of {args.workflow_id} by {added}")
    state = await run.state(timeout=15)
    if state.budget is not None:
        print(budget_line(state.budget))
    return EXIT_OK


async def _stats(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from activities import WorkerSettings
    from interpreter.model import parse_duration
    from starter.progress import print_stats
    from starter.stats import compute_stats

    try:
        since = timedelta(seconds=parse_duration(args.since))
    except ValueError as e:
        raise Exit(EXIT_BAD_INPUT, f"stats: --since {e}") from None
    if args.definition is not None and not _SLUG.match(args.definition):
        raise Exit(EXIT_BAD_INPUT, f"stats: {args.definition!r} is not a definition slug")
    client = await connect()
    stats = await compute_stats(
        client.temporal,
        WorkerSettings.from_env().resolved_store_url,
        since=since,
        definition=args.definition,
    )
    if args.json:
        print_json(stats)
    else:
        print_stats(stats)
    return EXIT_OK
