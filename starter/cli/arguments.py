"""Building the parser from command modules, and reading what commands are given: ``-i k=v``
pairs, input files, JSON values, definition files and folders."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from starter.cli.errors import EXIT_BAD_INPUT, Exit

Handler = Callable[[argparse.Namespace], Any]
"""A command: takes the parsed arguments, returns an exit code (or a coroutine of one)."""


class Commands:
    """The ``tideflow`` subcommands; each command module's ``register`` adds its own."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._sub = parser.add_subparsers(metavar="COMMAND")

    def add(self, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        """Add the command ``name`` run by ``handler``; returns its parser for its arguments."""
        p: argparse.ArgumentParser = self._sub.add_parser(
            name, help=help_text, description=help_text
        )
        p.set_defaults(handler=handler, command=name)
        return p


def add_input_args(p: argparse.ArgumentParser) -> None:
    """``--input/-i K=V`` (repeatable) and ``--input-file F``."""
    p.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="K=V",
        help="an input; V is parsed as JSON when it can be",
    )
    p.add_argument("--input-file", metavar="F", help="inputs from a JSON or YAML file")


def add_definitions_arg(p: argparse.ArgumentParser) -> None:
    """``--definitions DIR``."""
    p.add_argument(
        "--definitions",
        metavar="DIR",
        type=Path,
        help="folder of definition files (default $TIDEFLOW_DEFINITIONS or examples/)",
    )


def add_registry_arg(p: argparse.ArgumentParser) -> None:
    """``--registry``: the registry's deployed definitions instead of a folder."""
    p.add_argument(
        "--registry",
        action="store_true",
        help="the deployed definitions of the registry (tideflow deploy) instead of a folder",
    )


def catalog_of(args: argparse.Namespace, *, required: bool = True) -> Any:
    """The catalog a command serves: the registry with ``--registry``, else the folder of
    ``--definitions`` (or its default)."""
    if getattr(args, "registry", False):
        from starter.registry import registry_catalog

        return registry_catalog()
    from starter.triggers import new_catalog

    return new_catalog(definitions_folder(args, required=required))


def parse_value(text: str) -> Any:
    """``text`` as JSON when it parses, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(items: Sequence[str], what: str) -> dict[str, Any]:
    """``key=value`` items as a mapping (values through :func:`parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Exit(EXIT_BAD_INPUT, f"{what} {item!r}: write it as key=value")
        out[key] = parse_value(value)
    return out


def inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The inputs of ``--input-file`` overlaid with those of ``--input``."""
    out: dict[str, Any] = {}
    if args.input_file:
        path = Path(args.input_file)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise Exit(EXIT_BAD_INPUT, f"{path}: cannot read inputs: {e}") from None
        if not isinstance(loaded, dict):
            raise Exit(EXIT_BAD_INPUT, f"{path}: inputs must be a mapping")
        out.update(loaded)
    out.update(pairs(args.input, "--input"))
    return out


def load_definition(path: str) -> Any:
    """The definition of ``path``; its located problems and exit code 2 when it is invalid."""
    from interpreter import DefinitionError
    from starter import client

    try:
        return client.load(path)
    except DefinitionError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None


def check_inputs(definition: Any, given: dict[str, Any]) -> None:
    """Exit code 2 naming each bad input before anything starts."""
    from interpreter.inputs import InputError, resolve_inputs

    try:
        resolve_inputs(definition, given)
    except InputError as e:
        raise Exit(EXIT_BAD_INPUT, "\n".join(e.problems)) from None


def definitions_folder(args: argparse.Namespace, *, required: bool = True) -> Path:
    """The folder of ``--definitions`` (or its default); exit code 2 when ``required`` and it
    does not exist."""
    from starter._catalog import definitions_dir

    folder = definitions_dir(args.definitions)
    if required and not folder.is_dir():
        raise Exit(EXIT_BAD_INPUT, f"{folder}: no such folder (give --definitions DIR)")
    return folder


def print_json(value: Any) -> None:
    """``value`` (a pydantic model or plain data) as indented JSON on stdout."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    print(json.dumps(value, indent=2, default=str))
