"""The Tideflow language: load and validate YAML definitions, and the generic workflow that runs
them.

``load_file``/``load_string`` parse and validate (raising :class:`DefinitionError` with every
problem located); ``TideflowWorkflow`` is the one Temporal workflow type, taking a
:class:`RunInput` and returning a :class:`RunReport`.
"""

from __future__ import annotations

from pathlib import Path

from interpreter.loader import Problem, from_data, parse_yaml, read_yaml
from interpreter.model import Definition
from interpreter.validate import DefinitionError, NodeCatalog, check


def load_file(path: str | Path, catalog: NodeCatalog | None = None) -> Definition:
    """Parse and validate a YAML file; raise :class:`DefinitionError` listing every problem."""
    definition, problems = check(read_yaml(path), catalog)
    if problems or definition is None:
        raise DefinitionError(problems)
    return definition


def load_string(
    text: str, file: str = "<string>", catalog: NodeCatalog | None = None
) -> Definition:
    """Parse and validate YAML text; raise :class:`DefinitionError` listing every problem."""
    definition, problems = check(parse_yaml(text, file), catalog)
    if problems or definition is None:
        raise DefinitionError(problems)
    return definition


def load_data(
    data: object, file: str = "<definition>", catalog: NodeCatalog | None = None
) -> Definition:
    """Validate an already-parsed definition (JSON from a client); problems have no positions."""
    definition, problems = check(from_data(data, file), catalog)
    if problems or definition is None:
        raise DefinitionError(problems)
    return definition


def problems_in_file(path: str | Path, catalog: NodeCatalog | None = None) -> list[Problem]:
    """Every problem of a YAML file (empty when it is valid)."""
    return check(read_yaml(path), catalog)[1]


__all__ = [
    "Definition",
    "DefinitionError",
    "NodeCatalog",
    "Problem",
    "load_data",
    "load_file",
    "load_string",
    "problems_in_file",
]
