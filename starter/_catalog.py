"""The definitions folder behind ``tideflow api``, ``tideflow triggers`` and ``tideflow emit``.

Every ``*.yaml``/``*.yml`` file directly in the folder (but test files, ``*.test.yaml``) is
loaded and validated with
:func:`starter.client.load`. A file that does not validate is kept in the catalog with its located
problems (so the API can list them) instead of stopping anything. The folder is scanned again
when a file is added, removed or changed (:meth:`Catalog.refresh` compares names, sizes and
modification times), so editing a definition needs no restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interpreter import Definition, DefinitionError, Problem
from interpreter.model import slugify
from starter import client as tideflow

DEFAULT_DEFINITIONS = "examples"
"""The definitions folder when neither ``--definitions`` nor ``TIDEFLOW_DEFINITIONS`` is given."""

_SUFFIXES = (".yaml", ".yml")
_TEST_SUFFIXES = (".test.yaml", ".test.yml")


def definitions_dir(given: str | Path | None = None) -> Path:
    """``given``, else ``TIDEFLOW_DEFINITIONS``, else ``examples/``."""
    return Path(given or os.environ.get("TIDEFLOW_DEFINITIONS") or DEFAULT_DEFINITIONS)


@dataclass(frozen=True)
class Entry:
    """One definition file: the definition when it is valid, otherwise its problems.

    ``trigger_problems`` are problems of single triggers (inputs a trigger cannot satisfy, say):
    the definition can still be started by hand, but those triggers stay inactive.
    """

    file: Path
    slug: str
    definition: Definition | None
    problems: list[Problem] = field(default_factory=list)
    trigger_problems: dict[int, list[Problem]] = field(default_factory=dict)
    memo: dict[str, Any] | None = None
    """Memo entries of the runs its triggers start (a deployed version names itself)."""

    @property
    def valid(self) -> bool:
        """Whether the definition loaded without problems."""
        return self.definition is not None and not self.problems


TriggerCheck = Callable[[Path, Definition], dict[int, list[Problem]]]


class Catalog:
    """The definitions of one folder, by slug, reloaded when the folder changes."""

    schedule_prefix = "tideflow-"
    """The ids of the schedules this catalog's triggers own start with this."""

    def __init__(self, folder: str | Path, *, check_triggers: TriggerCheck | None = None) -> None:
        self.folder = Path(folder)
        self._check_triggers = check_triggers
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._entries: list[Entry] = []
        self.generation = 0
        """Grows by one each time the folder's content changed and was loaded again."""

    def refresh(self) -> bool:
        """Load the folder again if any file changed; True when something changed."""
        signature = self._scan()
        if signature == self._signature:
            return False
        self._signature = signature
        self._entries = self._load_all()
        self.generation += 1
        return True

    def entries(self) -> list[Entry]:
        """Every file, valid or not, in file-name order (after a refresh)."""
        self.refresh()
        return list(self._entries)

    def valid(self) -> Iterator[Entry]:
        """The entries whose definition loaded without problems."""
        return (entry for entry in self.entries() if entry.valid)

    def get(self, slug: str) -> Entry | None:
        """The entry of a definition slug (or of an invalid file's best-guess slug)."""
        for entry in self.entries():
            if entry.slug == slug:
                return entry
        return None

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(
            p
            for p in self.folder.iterdir()
            if p.suffix.lower() in _SUFFIXES
            and not p.name.lower().endswith(_TEST_SUFFIXES)  # a definition's tests, beside it
            and p.is_file()
        )

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for path in self._files():
            try:
                stat = path.stat()
            except OSError:  # removed between listing and stat: the next scan sees it gone
                continue
            out.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(out)

    def _load_all(self) -> list[Entry]:
        entries: list[Entry] = []
        taken: dict[str, Path] = {}
        for path in self._files():
            entry = self._load(path)
            owner = taken.get(entry.slug)
            if owner is not None:
                # Two files naming the same workflow: runs, schedules and the API address a
                # definition by slug, so only the first file (by name) may own it.
                conflict = Problem(
                    str(path),
                    1,
                    1,
                    f"the name gives the slug {entry.slug!r}, already used by {owner.name}: "
                    f"give each definition its own name",
                )
                entry = Entry(path, entry.slug, None, [*entry.problems, conflict])
            else:
                taken[entry.slug] = path
            entries.append(entry)
        return entries

    def _load(self, path: Path) -> Entry:
        try:
            definition = tideflow.load(path)
        except DefinitionError as e:
            return Entry(path, _guess_slug(path), None, list(e.problems))
        checks = self._check_triggers(path, definition) if self._check_triggers else {}
        return Entry(path, definition.slug, definition, [], checks)


def _guess_slug(path: Path) -> str:
    """The slug an invalid file would have: its ``name`` (or ``metadata.name``), else its stem.

    Used to list the file under a recognisable slug and to keep its schedules while it is being
    fixed.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    if isinstance(data, dict):
        name = data.get("name")
        metadata = data.get("metadata")
        if not name and isinstance(metadata, dict):
            name = metadata.get("name")
        if isinstance(name, str) and name.strip():
            return slugify(name)
    return slugify(path.stem)
