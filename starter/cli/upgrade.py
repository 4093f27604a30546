"""``tideflow upgrade-check``: will the installed code replay the runs in flight?"""

from __future__ import annotations

import argparse
from pathlib import Path

from starter.cli.arguments import Commands
from starter.cli.connection import connect
from starter.cli.errors import EXIT_FAILED, EXIT_OK


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "upgrade-check",
        _upgrade_check,
        "replay every open run (and --closed N recent closed ones) against the installed "
        "code; exit 1 naming each run that would diverge",
    )
    p.add_argument(
        "--closed", type=int, default=0, metavar="N", help="also the N newest closed runs"
    )
    p.add_argument(
        "--histories",
        type=Path,
        metavar="DIR",
        help="replay recorded history files instead of the server's runs (CI: tests/histories)",
    )


async def _upgrade_check(args: argparse.Namespace) -> int:
    from starter.upgrade_check import check_histories, check_upgrade, render

    if args.histories is not None:
        result = await check_histories(args.histories)
    else:
        client = await connect()
        result = await check_upgrade(client.temporal, closed=args.closed)
    print(render(result))
    return EXIT_OK if result.ok else EXIT_FAILED
