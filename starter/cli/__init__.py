"""``tideflow``: the command line. Thin: parse arguments, call :mod:`starter.client`, print.

Each command module holds a family of commands and a ``register(commands)`` that adds them
(:class:`~starter.cli.arguments.Commands`); :data:`COMMAND_MODULES` names the modules, so a
new family is one more line there. Exit codes:
0 success (a run completed), 1 a run failed or a request was refused, 2 bad input (an invalid
definition, bad inputs, bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence

from starter.cli.arguments import Commands
from starter.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    Exit,
    connect_failure,
    error_line,
    expected,
)

COMMAND_MODULES = (
    "definitions",
    "runs",
    "control",
    "redrive",
    "registry",
    "shadow",
    "templates",
    "testing",
    "servers",
    "upgrade",
    "operations",
    "deployment",
    "security",
    "evaluate",
)
"""The command modules of this package (each with ``register(commands)``), in the order their
commands are listed by ``tideflow --help``."""


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


def parser() -> argparse.ArgumentParser:
    """The ``tideflow`` argument parser, with every command module's commands."""
    root = argparse.ArgumentParser(
        prog="tideflow", description="Durable YAML workflows on Temporal."
    )
    commands = Commands(root)
    for name in COMMAND_MODULES:
        importlib.import_module(f"starter.cli.{name}").register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tideflow`` command line; return its exit code.

    Every error ends here as one line on stderr and a non-zero exit code, never a traceback
    (``TIDEFLOW_DEBUG=1`` shows the traceback of an unexpected one).
    """
    root = parser()
    args = root.parse_args(argv)
    if not getattr(args, "handler", None):
        root.print_help()
        return EXIT_BAD_INPUT
    try:
        result = args.handler(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except KeyboardInterrupt:
        return 130
    except Exit as e:
        if e.message:
            print(e.message, file=sys.stderr)
        return e.code
    except Exception as e:
        if os.environ.get("TIDEFLOW_DEBUG") and not expected(e):
            raise
        print(error_line(e, args), file=sys.stderr)
        return EXIT_FAILED


__all__ = [
    "COMMAND_MODULES",
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "connect_failure",
    "entry",
    "error_line",
    "main",
    "parser",
]
