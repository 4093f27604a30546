"""Commands for operators of a fleet of runs: ``budget`` (let a run spend more on models) and
``stats`` (what runs and nodes did: outcomes, durations, retries, spend, resources)."""

from __future__ import annotations

import argparse

from starter.cli.arguments import Commands
from starter.cli.connection import connect, open_run
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_OK, Exit


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
