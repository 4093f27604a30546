"""``tideflow shadow``: what a candidate definition would change, shown on the deployed
version's recent runs (side effects answered from what those runs recorded)."""

from __future__ import annotations

import argparse
import json

from starter.cli.arguments import Commands, load_definition
from starter.cli.connection import connect
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "shadow",
        _shadow,
        "re-run the inputs of the deployed version's last completed runs through a candidate "
        "file (side-effecting nodes answered with the recorded outputs) and show what changes",
    )
    p.add_argument("name", metavar="NAME", help="a deployed definition")
    p.add_argument("--candidate", required=True, metavar="FILE", help="the new definition")
    p.add_argument(
        "--runs", type=int, default=10, metavar="N", help="how many recent runs (default 10)"
    )
    p.add_argument("--json", action="store_true")


async def _shadow(args: argparse.Namespace) -> int:
    from pathlib import Path

    from starter.registry import Registry, RegistryError
    from starter.shadow import report_lines, shadow_runs
    from starter.testing import HarnessError

    if args.runs < 1:
        raise Exit(EXIT_BAD_INPUT, "shadow: --runs must be at least 1")
    candidate = load_definition(args.candidate)
    try:
        version = Registry.open().version(args.name)
    except RegistryError as e:
        raise Exit(EXIT_BAD_INPUT, f"shadow: {e}") from None
    client = await connect()
    try:
        report = await shadow_runs(
            client,
            version,
            candidate,
            runs=args.runs,
            extra_file_roots=[Path(args.candidate).resolve().parent],
        )
    except HarnessError as e:
        raise Exit(EXIT_FAILED, f"shadow: {e}") from None
    if args.json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        print(f"shadow of {version.ref} by {args.candidate}")
        for line in report_lines(report):
            print(line)
    return EXIT_OK if report.runs else EXIT_FAILED
