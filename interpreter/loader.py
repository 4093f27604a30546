"""YAML text → plain data plus the line and column of every key and value.

PyYAML's composer gives marks; we build the Python values ourselves so we can remember where
each came from, refuse duplicate keys, and apply the conventions users expect of a workflow
language: dates stay text (``2024-01-01`` is not turned into a ``date``) and only
``true``/``false`` are booleans (``on``, ``yes`` and ``no`` stay text, as in YAML 1.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column, and the quoting style of a scalar value."""

    line: int
    column: int
    style: str | None = None
    multiline: bool = False
    indent: int | None = None
    """For a block scalar (``|`` or ``>``): the column where its content lines start."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem found in a definition, printed as ``FILE:LINE:COL: message``."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class Document:
    """A parsed YAML document: its data and where every key and value sits."""

    file: str
    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def position(self, path: PathKey, *, key: bool = False) -> Position:
        """Where ``path`` sits (its key when ``key``); the nearest enclosing item if unknown."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))

    def problem(
        self, path: PathKey, message: str, *, key: bool = False, offset: int = 0
    ) -> Problem:
        """A problem located at ``path`` (``offset`` characters into a one-line scalar)."""
        pos = self.position(path, key=key)
        line, column = pos.line, pos.column
        if offset and not pos.multiline:
            column += offset + (1 if pos.style in ("'", '"') else 0)
        elif offset and pos.indent is not None and path in self.values:
            # A block scalar: its content starts on the next line, at its indentation.
            before = str(self.value_at(path))[:offset]
            line += 1 + before.count("\n")
            column = pos.indent + 1 + len(before.rsplit("\n", 1)[-1])
        return Problem(self.file, line, column, message)

    def value_at(self, path: PathKey) -> Any:
        """The parsed value at ``path``."""
        value = self.data
        for step in path:
            value = value[step]
        return value


# libyaml's parser when PyYAML was built with it (several times faster); marks are the same.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader without timestamps and with YAML 1.2 booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

_MERGE_TAG = "tag:yaml.org,2002:merge"


def parse_yaml(text: str, file: str = "<string>") -> Document:
    """Parse one YAML document; syntax errors become problems, never exceptions."""
    document = Document(file=file, data=None)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
        document.problems.append(Problem(file, line, col, f"YAML syntax error: {what}"))
        return document
    except yaml.YAMLError as e:
        document.problems.append(Problem(file, 1, 1, f"YAML syntax error: {e}"))
        return document
    finally:
        loader.dispose()
    if root is None:
        document.problems.append(Problem(file, 1, 1, "the file is empty"))
        return document
    document.data = _Builder(document, loader, text.splitlines()).build(root, ())
    return document


def read_yaml(path: str | Path) -> Document:
    """Parse a YAML file; an unreadable file is a problem of that file."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        document = Document(file=name, data=None)
        document.problems.append(Problem(name, 1, 1, f"cannot read file: {e}"))
        return document
    return parse_yaml(text, name)


def from_data(data: Any, file: str = "<definition>") -> Document:
    """A document made from already-parsed data (JSON from a client): no positions."""
    return Document(file=file, data=data)


class _Builder:
    def __init__(self, document: Document, loader: _Loader, lines: list[str]) -> None:
        self.document = document
        self.loader = loader
        self.lines = lines

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        start = node.start_mark
        style = getattr(node, "style", None)
        indent = None
        if style in ("|", ">") and start.line + 1 < len(self.lines):
            content = self.lines[start.line + 1]
            indent = len(content) - len(content.lstrip(" "))
        self.document.values[path] = Position(
            start.line + 1,
            start.column + 1,
            style,
            node.end_mark.line != start.line,
            indent,
        )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node, path):
                    for k, v in source.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, "a key must be a plain value, not a list or mapping")
                continue
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            mark = key_node.start_mark
            if key in out:
                first = self.document.keys[(*path, key)]
                self._problem(key_node, f"duplicate key {key!r} (first given on line {first.line})")
                continue
            self.document.keys[(*path, key)] = Position(mark.line + 1, mark.column + 1)
            out[key] = self.build(value_node, (*path, key))
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    def _merge_sources(self, node: yaml.Node, path: PathKey) -> list[dict[Any, Any]]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources = []
        for item in nodes:
            value = self.build(item, path)
            if isinstance(value, dict):
                sources.append(value)
            else:
                self._problem(item, "<< merges a mapping (an anchor of a mapping)")
        return sources

    def _problem(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        self.document.problems.append(
            Problem(self.document.file, mark.line + 1, mark.column + 1, message)
        )
