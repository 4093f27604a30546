"""The Tideflow language: load and validate YAML definitions, and the generic workflow that runs
them.

``load_file``/``load_string`` parse and validate (raising :class:`DefinitionError` with every
problem located); ``TideflowWorkflow`` is the one Temporal workflow type, taking a
:class:`RunInput` and returning a :class:`RunReport`.
"""

from __future__ import annotations

from pathlib import Path

from interpreter.limits import MAX_NODES
from interpreter.loader import Problem, from_data, parse_yaml, read_yaml
from interpreter.model import Definition
from interpreter.validate import DefinitionError, NodeCatalog, check


def load_file(path: str | Path, catalog: NodeCatalog | None = None) -> Definition:
    """Parse and validate a YAML file; raise :class:`DefinitionError` listing every problem.

    ``workflow`` nodes naming a ``file`` get that definition inlined (validated, relative to
    this file), so the run carries every definition it may start."""
    definition, problems = _Tree(catalog).load(Path(path), ())
    if problems or definition is None:
        raise DefinitionError(problems)
    return definition


class _Tree:
    """A definition file and the child definitions it inlines, each file read once.

    Inlining copies a child into every node that names it, so a few small files naming each
    other ten times over would make a run input of billions of nodes: the nodes of the whole
    tree, copies included, count against ``MAX_NODES``."""

    def __init__(self, catalog: NodeCatalog | None) -> None:
        self.catalog = catalog
        self.loaded: dict[Path, tuple[Definition | None, list[Problem], int]] = {}

    def load(
        self, path: Path, parents: tuple[Path, ...]
    ) -> tuple[Definition | None, list[Problem]]:
        definition, problems, _ = self._load(path, parents)
        return definition, problems

    def _load(
        self, path: Path, parents: tuple[Path, ...]
    ) -> tuple[Definition | None, list[Problem], int]:
        """The definition, its problems, and the nodes of its tree (copies included)."""
        key = path.resolve()
        if key in self.loaded:
            definition, _, size = self.loaded[key]
            return definition, [], size  # its problems were reported where first read
        found = self._read(path, parents)
        self.loaded[key] = found
        return found

    def _read(
        self, path: Path, parents: tuple[Path, ...]
    ) -> tuple[Definition | None, list[Problem], int]:
        document = read_yaml(path)
        definition, problems = check(document, self.catalog)
        if definition is None or problems:
            return definition, problems, 0
        size = len(definition.raw_nodes())
        nodes = []
        for index, node in enumerate(definition.raw_nodes()):
            child_file = node.config.get("file") if node.type == "workflow" else None
            if not isinstance(child_file, str) or "definition" in node.config:
                nodes.append(node)
                continue
            child_path = (path.parent / child_file).resolve()
            where = document.problem((definition.spelling, index, "config", "file"), "")
            if child_path in (*parents, path.resolve()):
                problems.append(
                    Problem(
                        where.file,
                        where.line,
                        where.column,
                        f"{child_file}: a workflow cannot "
                        "start itself (directly or through its children)",
                    )
                )
                continue
            child, child_problems, child_size = self._load(child_path, (*parents, path.resolve()))
            problems.extend(child_problems)
            size += child_size
            if size > MAX_NODES:
                problems.append(
                    Problem(
                        where.file,
                        where.line,
                        where.column,
                        f"{child_file}: the child workflows inlined here hold more than "
                        f"{MAX_NODES:,} nodes in all (each use of a file copies it)",
                    )
                )
                return None, problems, size
            if child is not None:
                inlined = child.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
                nodes.append(
                    node.model_copy(update={"config": {**node.config, "definition": inlined}})
                )
        return definition.model_copy(update={definition.spelling: nodes}), problems, size


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
    """Every problem of a YAML file and of the child definitions it names (empty if valid)."""
    return _Tree(catalog).load(Path(path), ())[1]


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
