"""``tideflow test``: run definitions' test files on a private time-skipping server."""

from __future__ import annotations

import argparse
import json
import sys

from starter.cli.arguments import Commands
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "test",
        _test,
        "run test files (NAME.test.yaml: cases with inputs, mocked nodes, what to send and "
        "what to expect) on a time-skipping test server of its own; exit 1 if a case fails",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="FILE",
        help="test files, definitions (their NAME.test.yaml is run) or folders",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")


async def _test(args: argparse.Namespace) -> int:
    from starter.testing import (
        HarnessError,
        TestFileError,
        find_test_files,
        load_all,
        run_test_files,
    )

    files, missing = find_test_files(args.paths)
    if missing:
        raise Exit(EXIT_BAD_INPUT, "\n".join(missing))
    try:
        loaded = load_all(files)
    except TestFileError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None
    try:
        report = await run_test_files(loaded)
    except HarnessError as e:
        raise Exit(EXIT_FAILED, f"test: {e}") from None
    if args.json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        for case in report.cases:
            print(case.line_text())
        print(report.summary())
    sys.stdout.flush()
    return EXIT_FAILED if report.failed else EXIT_OK
