"""Commands on definition files, no server needed: ``validate``, ``compile``, ``graph``,
``schema``."""

from __future__ import annotations

import argparse

from starter.cli.arguments import (
    Commands,
    add_input_args,
    check_inputs,
    inputs,
    load_definition,
    print_json,
)
from starter.cli.connection import local_inputs
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_OK


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "validate",
        _validate,
        "check definition files (and test files, NAME.test.yaml); print FILE:LINE:COL: problems",
    )
    p.add_argument("files", nargs="+", metavar="FILE")

    p = commands.add(
        "compile", _compile, "print the workflow input JSON (for temporal workflow start)"
    )
    p.add_argument("file", metavar="FILE")
    add_input_args(p)

    p = commands.add("graph", _graph, "print a definition's graph as Mermaid")
    p.add_argument("file", metavar="FILE")

    commands.add("schema", _schema, "print the JSON Schema of the language (for editors)")


def _validate(args: argparse.Namespace) -> int:
    from starter import client
    from starter.testing.testfile import TestFileError, is_test_file, load_test_file

    definitions = [f for f in args.files if not is_test_file(f)]
    problems = client.validate(definitions)
    for test_file in (f for f in args.files if is_test_file(f)):
        # A definition's test file is checked as one: its cases against its definition.
        try:
            load_test_file(test_file)
        except TestFileError as e:
            problems.extend(e.problems)
    for problem in problems:
        print(problem)
    if problems:
        return EXIT_BAD_INPUT
    for file in args.files:
        print(f"{file}: ok")
    return EXIT_OK


async def _compile(args: argparse.Namespace) -> int:
    from activities import WorkerSettings
    from starter import client

    definition = load_definition(args.file)
    given = inputs(args)
    check_inputs(definition, given)
    given = await local_inputs(args, given, None)
    default_retry = WorkerSettings.from_env().default_retry
    print_json(client.run_input(definition, given, default_retry=default_retry))
    return EXIT_OK


def _graph(args: argparse.Namespace) -> int:
    from starter.graph import mermaid

    print(mermaid(load_definition(args.file)))
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    import activities
    from interpreter.schema import json_schema

    activities.load_extensions()
    print_json(json_schema(activities.registry))
    return EXIT_OK
