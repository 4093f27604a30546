"""YAML text → plain data plus the line and column of every key and value.

PyYAML's parser gives events with marks; we build the Python values ourselves so we can
remember where each came from, refuse duplicate keys and tags, bound what a document may cost
(:mod:`interpreter.limits`), and apply the conventions users expect of a workflow language:
dates stay text (``2024-01-01`` is not turned into a ``date``) and only ``true``/``false`` are
booleans (``on``, ``yes`` and ``no`` stay text, as in YAML 1.2).
"""

from __future__ import annotations

import gc
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from interpreter.limits import (
    MAX_ALIAS_VALUES,
    MAX_DOCUMENT_BYTES,
    MAX_NESTING,
    MAX_PROBLEMS,
    MAX_VALUES,
)

PathKey = tuple[str | int, ...]


class Position(NamedTuple):
    """A 1-based line and column, and the quoting style of a scalar value (a named tuple:
    a large definition records hundreds of thousands of them)."""

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

    def __post_init__(self) -> None:
        # One line per problem, whatever a message quotes.
        if "\n" in self.message or "\r" in self.message:
            object.__setattr__(self, "message", _BREAKS.sub(" ", self.message))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


_BREAKS = re.compile(r"\s*[\r\n]+\s*")


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


EMPTY = "the file is empty"
"""The problem of a file holding no definition (nothing, only ``---``, or only ``~``)."""

# libyaml's parser when PyYAML was built with it (several times faster); marks are the same.
# Only its parser is used: values are built here from its events, so every limit is checked
# while building (its composer recurses on the C stack and dies on deep nesting).
_Parser: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_YAML = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"{_YAML}{t}" for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = f"{_YAML}seq", f"{_YAML}map"

# Plain scalars read as YAML 1.2 users expect: no timestamps (dates stay text), only
# true/false are booleans (`on`, `yes`, `no` stay text), no `=` value or `<<` outside a key.
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in (_INT, _FLOAT, _NULL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,99})\Z")
_TRUE_FALSE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
for _first in "tTfF":
    _RESOLVERS.setdefault(_first, []).append((_BOOL, _TRUE_FALSE))

# Any character YAML refuses (PyYAML's reader): C0 controls but tab and line breaks, DEL,
# C1 controls but NEL, surrogates, U+FFFE and U+FFFF.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


_gc_lock = threading.Lock()
_gc_users = 0
_gc_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a large definition is built or checked.

    Building makes millions of small objects and no reference cycles; the collector would
    walk the growing heap again and again (about a third of the time of a 100,000-node
    definition). Reference counting still frees everything. Threads share one count, so the
    collector is back on when the last of them is done, as it was before the first."""
    global _gc_users, _gc_was_enabled
    with _gc_lock:
        if _gc_users == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_was_enabled:
                gc.enable()


class _Refused(Exception):
    """A limit was passed: building stops at once with this problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def parse_yaml(text: str, file: str = "<string>") -> Document:
    """Parse one YAML document; syntax errors become problems, never exceptions.

    Bounded by :mod:`interpreter.limits`: document size, nesting depth and the values aliases
    may add, each refused with a located problem before the work it would cost."""
    document = Document(file=file, data=None)
    refused = _refused_text(text, file)
    if refused is not None:
        document.problems.append(refused)
        return document
    parser = _Parser(text)
    try:
        with cyclic_gc_paused():
            document.data = _Builder(document, parser, text).stream()
    except _Refused as e:
        document.problems.append(e.problem)
        document.data = None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
        document.problems.append(Problem(file, line, col, f"YAML syntax error: {what}"))
        document.data = None
    except yaml.YAMLError as e:
        document.problems.append(Problem(file, 1, 1, f"YAML syntax error: {e}"))
        document.data = None
    finally:
        parser.dispose()
    return document


def read_yaml(path: str | Path) -> Document:
    """Parse a YAML file; an unreadable, oversized or special file is a problem of that file.

    Only regular files are read, and never more than the size limit: a definition naming
    ``/dev/zero`` or a FIFO as a child workflow must not hang whoever validates it."""
    name = str(path)
    document = Document(file=name, data=None)
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                document.problems.append(Problem(name, 1, 1, "not a regular file"))
                return document
            raw = handle.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            size = max(len(raw), Path(path).stat().st_size)
            document.problems.append(Problem(name, 1, 1, _too_large(size)))
            return document
        # Universal newlines, as a file opened in text mode reads.
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError) as e:
        document.problems.append(Problem(name, 1, 1, f"cannot read file: {e}"))
        return document
    return parse_yaml(text, name)


def from_data(data: Any, file: str = "<definition>") -> Document:
    """A document made from already-parsed data (JSON from a client): no positions.

    The same bounds as for a YAML file hold: its size (as JSON) and its nesting depth."""
    document = Document(file=file, data=data)
    refused = _refused_data(data)
    if refused is not None:
        document.problems.append(Problem(file, 1, 1, refused))
        document.data = None
    return document


def _too_large(size: int) -> str:
    return (
        f"the definition is too large: {size / 2**20:.1f} MiB "
        f"(at most {MAX_DOCUMENT_BYTES / 2**20:.0f} MiB)"
    )


def _refused_text(text: str, file: str) -> Problem | None:
    """A problem if the text is too large or holds a character YAML refuses."""
    if len(text) > MAX_DOCUMENT_BYTES // 4:  # a character is at most 4 bytes in UTF-8
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_DOCUMENT_BYTES:
            return Problem(file, 1, 1, _too_large(size))
    bad = _NOT_PRINTABLE.search(text)
    if bad is None:
        return None
    at = bad.start()
    line = text.count("\n", 0, at) + 1
    column = at - text.rfind("\n", 0, at)
    return Problem(
        file,
        line,
        column,
        f"character U+{ord(bad.group()):04X} is not allowed in YAML "
        "(a control character: remove it, or write it as an escape in a double-quoted string)",
    )


def _refused_data(data: Any) -> str | None:
    """Why already-parsed data is refused (too large or too deep), or None. One pass, no
    recursion: the data may come from any client."""
    size = count = 0
    stack: list[tuple[Any, int, PathKey]] = [(data, 1, ())]
    while stack:
        container, depth, path = stack.pop()
        if not isinstance(container, dict | list | tuple):
            size += len(container) + 2 if isinstance(container, str) else 8
            count += 1
            continue
        if depth > MAX_NESTING:
            return (
                f"lists and mappings nested deeper than {MAX_NESTING} levels "
                f"(at {_path_text(path)})"
            )
        pairs = container.items() if isinstance(container, dict) else enumerate(container)
        keyed = isinstance(container, dict)
        for key, item in pairs:
            count += 1
            if isinstance(item, dict | list | tuple):
                stack.append((item, depth + 1, (*path, key)))
            else:  # scalars inline: most values are, and they need no path
                size += len(item) + 2 if isinstance(item, str) else 8
            size += len(str(key)) + 4 if keyed else 1
        size += 2
        count += 1
        if count > MAX_VALUES:
            return f"the definition holds more than {MAX_VALUES:,} values and keys"
        if size > MAX_DOCUMENT_BYTES:
            return _too_large(size)
    return None


def _path_text(path: PathKey) -> str:
    text = ""
    for part in path[:12]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return (text + ("…" if len(path) > 12 else "")) or "the top"


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


@dataclass(frozen=True)
class _Anchor:
    """A value given an anchor (``&name``): what an alias (``*name``) copies."""

    value: Any
    path: PathKey
    entries: tuple[int, int]
    """The range of :attr:`_Builder.entries` holding the positions inside the value."""
    size: int
    """Values (keys included) it holds, through its own aliases too."""
    height: int
    """Levels of lists and mappings inside it."""


class _Builder:
    """Builds the values of one document from parser events, remembering where each came from.

    Recursion is one level per list or mapping, bounded by ``MAX_NESTING`` before it happens.
    This loop runs once per event of files of up to ``MAX_DOCUMENT_BYTES``, so it is written
    for speed: events are dispatched on their exact class and passed down, never peeked at.
    """

    def __init__(self, document: Document, parser: Any, text: str) -> None:
        self.document = document
        self.values = document.values
        self.next = parser.get_event
        self.parser = parser
        self.text = text
        self._lines: list[str] | None = None
        self.anchors: dict[str, _Anchor] = {}
        self.open_anchors: set[str] = set()
        self.entries: list[tuple[bool, PathKey, Position]] | None = [] if "&" in text else None
        """Every position recorded, in order (is_key, path, position), for aliases to replay;
        None when the text has no anchor (no ``&``) and no alias can need them."""
        self.count = 0
        """Lists, mappings, keys and scalars built so far, those copied by aliases included."""
        self.copied = 0
        """Values and keys copied by aliases."""
        self.deepest = 0
        self.merging = 0
        """Inside a ``<<`` merge: positions already recorded win."""

    # -- the stream ------------------------------------------------------------------------

    def stream(self) -> Any:
        self.next()  # stream start
        event = self.next()
        if type(event) is yaml.StreamEndEvent:
            self.problem(None, EMPTY)
            return None
        value = self.value(self.next(), (), 0)  # after the document start
        self.next()  # document end
        event = self.next()
        if type(event) is not yaml.StreamEndEvent:
            raise _Refused(
                self.located(
                    event, "a second YAML document (after ---): a file holds one definition"
                )
            )
        if value is None and not self.document.problems:
            self.problem(None, EMPTY)  # `---` or `~` alone: no definition either
        return value

    def value(self, event: Any, path: PathKey, depth: int) -> Any:
        """Build the value that starts with ``event`` at ``path``."""
        kind = type(event)
        anchor = event.anchor
        if kind is yaml.ScalarEvent and anchor is None:
            return self.scalar(event, path)
        if kind is yaml.AliasEvent:
            return self.alias(event, path, depth)
        if anchor is not None:
            self.open_anchors.add(anchor)
            first = len(self.entries) if self.entries is not None else 0
            count, deepest = self.count, self.deepest
            self.deepest = depth
        if kind is yaml.ScalarEvent:
            value = self.scalar(event, path)
        elif kind is yaml.SequenceStartEvent:
            value = self.sequence(event, path, depth + 1)
        else:
            value = self.mapping(event, path, depth + 1)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            last = len(self.entries) if self.entries is not None else 0
            height = self.deepest - depth
            self.anchors[anchor] = _Anchor(value, path, (first, last), self.count - count, height)
            self.deepest = max(deepest, self.deepest)
        return value

    # -- the kinds of values ---------------------------------------------------------------

    def scalar(self, event: Any, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            self.too_many(event)
        start = event.start_mark
        line = start.line
        style = event.style or None
        if style is None or style == '"' or style == "'":
            position = Position(line + 1, start.column + 1, style, event.end_mark.line != line)
        else:  # a block scalar: where its content lines start
            lines = self.lines()
            indent = None
            if line + 1 < len(lines):
                indent = len(lines[line + 1]) - len(lines[line + 1].lstrip(" "))
            position = Position(line + 1, start.column + 1, style, True, indent)
        if self.merging or self.entries is not None:
            self.record(False, path, position)
        else:  # the common case, inline: this runs once per scalar of the document
            self.values[path] = position
        tag, text = event.tag, event.value
        if tag is None:
            if not event.implicit[0]:
                return text  # quoted or block: text
            if text[:1] not in _RESOLVERS:
                return text  # plain text that cannot be a number, a boolean or null
        return self.scalar_value(event)

    def scalar_value(self, event: Any) -> Any:
        """The value of a scalar: its tag given or resolved as YAML 1.2 users expect."""
        tag, text = event.tag, event.value
        if tag is None and event.implicit[0]:
            for candidate, regexp in _RESOLVERS.get(text[:1], ()):
                if regexp.match(text):
                    tag = candidate
                    break
            else:
                return text
        if tag is None or tag == "!" or tag == _STR:
            return text
        if tag == _INT and _DECIMAL.match(text):
            return int(text)  # the common case, without PyYAML's general constructor
        if tag == _NULL:
            if text in ("", "~", "null", "Null", "NULL"):
                return None
        elif tag == _BOOL:
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
        elif tag in (_INT, _FLOAT):
            node = yaml.ScalarNode(tag, text)
            construct = yaml.constructor.SafeConstructor
            try:
                if tag == _INT:
                    return construct.construct_yaml_int(self.parser, node)
                return construct.construct_yaml_float(self.parser, node)
            except (ValueError, IndexError):
                pass
        else:
            self.problem(event, _unsupported_tag(tag))
            return text
        kind = {_NULL: "null", _BOOL: "true or false", _INT: "an integer", _FLOAT: "a number"}
        self.problem(event, f"{_tag_name(tag)} {_quoted(text)} is not {kind[tag]}")
        return text

    def sequence(self, start: Any, path: PathKey, depth: int) -> list[Any]:
        self.enter(start, depth, _SEQ)
        items: list[Any] = []
        append, get = items.append, self.next
        value = self.value
        while True:
            event = get()
            if type(event) is yaml.SequenceEndEvent:
                break
            append(value(event, (*path, len(items)), depth))
        self.record(False, path, _collection_position(start, event))
        return items

    def mapping(self, start: Any, path: PathKey, depth: int) -> dict[str, Any]:
        self.enter(start, depth, _MAP)
        out: dict[str, Any] = {}
        merged: dict[str, Any] | None = None
        get, keys = self.next, self.document.keys
        while True:
            event = get()
            kind = type(event)
            if kind is yaml.MappingEndEvent:
                break
            if (
                kind is yaml.ScalarEvent
                and event.value == "<<"
                and event.tag is None
                and event.implicit[0]
            ):
                merged = merged if merged is not None else {}
                for source in self.merge_sources(path, depth):
                    for k, v in source.items():
                        merged.setdefault(k, v)
                continue
            key = self.key(event, path, depth)
            if key is None:
                self.value(get(), (*path, "?"), depth)  # its value, built to be dropped
                continue
            at = (*path, key)
            if key in out:
                first = keys[at]
                self.problem(event, f"duplicate key {key!r} (first given on line {first.line})")
                self.value(get(), at, depth)
                continue
            mark = event.start_mark
            self.record(True, at, Position(mark.line + 1, mark.column + 1))
            out[key] = self.value(get(), at, depth)
        if merged:
            for k, v in merged.items():
                out.setdefault(k, v)
        self.record(False, path, _collection_position(start, event))
        return out

    def key(self, event: Any, path: PathKey, depth: int) -> str | None:
        """A mapping key as text; None (after a problem) if it is not a plain value."""
        kind = type(event)
        if kind is yaml.ScalarEvent:
            self.count += 1
            key = self.scalar_value(event)
            if event.anchor is not None:
                self.anchors[event.anchor] = _Anchor(key, (), (0, 0), 1, 0)
        elif kind is yaml.AliasEvent and event.anchor in self.anchors:
            key = self.anchors[event.anchor].value
            if isinstance(key, dict | list):
                self.problem(event, "a key must be a plain value, not a list or mapping")
                return None
        else:
            self.problem(event, "a key must be a plain value, not a list or mapping")
            self.value(event, (*path, "?"), depth)
            return None
        return key if isinstance(key, str) else str(key)

    def merge_sources(self, path: PathKey, depth: int) -> list[dict[str, Any]]:
        """The mappings a ``<<`` key merges (an alias, a mapping, or a list of them)."""
        self.merging += 1
        try:
            event = self.next()
            if type(event) is not yaml.SequenceStartEvent:
                candidates = [(event, self.value(event, path, depth))]
            else:
                candidates = []
                while type(item := self.next()) is not yaml.SequenceEndEvent:
                    candidates.append((item, self.value(item, path, depth)))
        finally:
            self.merging -= 1
        sources = []
        for item, value in candidates:
            if isinstance(value, dict):
                sources.append(value)
            else:
                self.problem(item, "<< merges a mapping (an anchor of a mapping)")
        return sources

    def alias(self, event: Any, path: PathKey, depth: int) -> Any:
        """A copy of an anchored value, its positions replayed at ``path``."""
        name = event.anchor
        anchor = self.anchors.get(name)
        if name in self.open_anchors:
            self.problem(
                event,
                f"alias *{name} is inside the value of &{name}: a value cannot contain itself",
            )
            return None
        if anchor is None:
            self.problem(event, f"unknown alias *{name}: no &{name} before it")
            return None
        if self.copied + anchor.size > MAX_ALIAS_VALUES:
            raise _Refused(
                self.located(
                    event,
                    f"aliases expand the document beyond {MAX_ALIAS_VALUES:,} values "
                    f"(*{name} copies {anchor.size:,})",
                )
            )
        if depth + anchor.height > MAX_NESTING:
            raise _Refused(
                self.located(
                    event, f"*{name} nests lists and mappings deeper than {MAX_NESTING} levels"
                )
            )
        self.copied += anchor.size
        self.count += anchor.size
        if self.count > MAX_VALUES:
            self.too_many(event)
        self.deepest = max(self.deepest, depth + anchor.height)
        if self.entries is not None:
            first, last = anchor.entries
            cut = len(anchor.path)
            for is_key, old, position in self.entries[first:last]:
                self.record(is_key, (*path, *old[cut:]), position)
        mark = event.start_mark
        self.record(False, path, Position(mark.line + 1, mark.column + 1))
        return _copy(anchor.value)

    # -- helpers ---------------------------------------------------------------------------

    def enter(self, event: Any, depth: int, own_tag: str) -> None:
        """Count a list or mapping, check its depth (a limit: stop) and its tag (a problem)."""
        self.count += 1
        if self.count > MAX_VALUES:
            self.too_many(event)
        if depth > MAX_NESTING:
            raise _Refused(
                self.located(event, f"lists and mappings nested deeper than {MAX_NESTING} levels")
            )
        if depth > self.deepest:
            self.deepest = depth
        tag = event.tag
        if tag is not None and tag != "!" and tag != own_tag:
            self.problem(event, _unsupported_tag(tag))

    def record(self, is_key: bool, path: PathKey, position: Position) -> None:
        table = self.document.keys if is_key else self.document.values
        if self.merging:
            table.setdefault(path, position)
        else:
            table[path] = position
        if self.entries is not None:
            self.entries.append((is_key, path, position))

    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    def located(self, event: Any, message: str) -> Problem:
        mark = event.start_mark if event is not None else None
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return Problem(self.document.file, line, column, message)

    def problem(self, event: Any, message: str) -> None:
        problems = self.document.problems
        if len(problems) >= MAX_PROBLEMS:
            raise _Refused(
                self.located(event, f"too many problems: stopped after {MAX_PROBLEMS:,}")
            )
        problems.append(self.located(event, message))

    def too_many(self, event: Any) -> None:
        raise _Refused(
            self.located(
                event,
                f"the definition holds more than {MAX_VALUES:,} values and keys "
                "(split it over child workflows)",
            )
        )


def _collection_position(start: Any, end: Any) -> Position:
    mark = start.start_mark
    return Position(mark.line + 1, mark.column + 1, None, end.end_mark.line != mark.line)


def _unsupported_tag(tag: str) -> str:
    return (
        f"unsupported YAML tag {_tag_name(tag)}: a definition holds plain values "
        "(text, numbers, true/false, null, lists and mappings)"
    )


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _copy(value: Any) -> Any:
    """A deep copy of built data (aliased values must not share lists or mappings)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
