"""The registry's records: immutable versions of each deployed definition, which one is active,
and every change (deploy, rollback, undeploy) with who made it, when and why.

Three tables on the control plane's store (:mod:`starter.store`): SQLite in ``TIDEFLOW_HOME``
by default, PostgreSQL with ``TIDEFLOW_STORE_URL``. A version keeps the definition's source
text (what ``history`` diffs) and its JSON (what runs start from: child definitions inlined,
no file needed), with the sha256 of the source.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

import activities
from interpreter import Definition, load_data
from starter.store import metadata, open_store

versions_table = Table(
    "registry_versions",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("display_name", String(500), nullable=False, default=""),
    Column("display_version", String(200), nullable=False, default=""),
    Column("content", Text, nullable=False),
    Column("definition", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("file", Text, nullable=False, default=""),
    Column("deployed_by", String(200), nullable=False, default=""),
    Column("deployed_at", String(40), nullable=False),
    Column("message", Text, nullable=False, default=""),
)
"""Every version of every definition (never changed once written)."""

definitions_table = Table(
    "registry_definitions",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("active_version", Integer, nullable=True),
    Column("updated_at", String(40), nullable=False),
)
"""Each definition's active version (null once undeployed)."""

changes_table = Table(
    "registry_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("action", String(20), nullable=False),
    Column("version", Integer, nullable=True),
    Column("previous_version", Integer, nullable=True),
    Column("by", String(200), nullable=False, default=""),
    Column("at", String(40), nullable=False),
    Column("message", Text, nullable=False, default=""),
)
"""The change history: deploys, rollbacks and undeploys, in order."""

Action = Literal["deploy", "rollback", "undeploy"]


class RegistryError(ValueError):
    """A request the registry refuses: an unknown name or version, a rollback to what is
    active already."""


@dataclass(frozen=True)
class Version:
    """One recorded version of a definition."""

    name: str
    version: int
    display_name: str
    display_version: str
    content: str
    definition_json: dict[str, Any]
    content_hash: str
    file: str
    deployed_by: str
    deployed_at: str
    message: str

    @property
    def ref(self) -> str:
        """``NAME@VERSION``."""
        return f"{self.name}@{self.version}"

    def definition(self) -> Definition:
        """The definition, validated against this worker's node types."""
        activities.load_extensions()
        return load_data(self.definition_json, self.ref, activities.registry)

    def memo(self) -> dict[str, Any]:
        """The memo entry of runs of this version."""
        return {
            "tideflow_registry": {
                "name": self.name,
                "version": self.version,
                "hash": self.content_hash,
            }
        }


@dataclass(frozen=True)
class Deployed:
    """A definition in the registry: its active version (None once undeployed), its latest."""

    name: str
    active: Version | None
    latest: int


@dataclass(frozen=True)
class Change:
    """One entry of a definition's change history."""

    name: str
    action: Action
    version: int | None
    previous_version: int | None
    by: str
    at: str
    message: str


def content_hash(text: str) -> str:
    """The sha256 of a definition's source text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Registry:
    """The versioned registry of deployed definitions over the store's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> Registry:
        """The registry in the store of ``url`` (default ``TIDEFLOW_STORE_URL`` or SQLite in
        ``TIDEFLOW_HOME``)."""
        return cls(open_store(url))

    @property
    def where(self) -> str:
        """The store, for messages (credentials left out)."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- reading ---------------------------------------------------------------------------

    def definitions(self) -> list[Deployed]:
        """Every definition ever deployed, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(definitions_table).order_by(definitions_table.c.name)).all()
            latest = dict(
                conn.execute(
                    select(versions_table.c.name, func.max(versions_table.c.version)).group_by(
                        versions_table.c.name
                    )
                ).all()
            )
        out = []
        for row in rows:
            active = self.version(row.name, row.active_version) if row.active_version else None
            out.append(Deployed(row.name, active, int(latest.get(row.name) or 0)))
        return out

    def active(self) -> list[Version]:
        """The active version of every deployed definition, by name."""
        return [d.active for d in self.definitions() if d.active is not None]

    def active_signature(self) -> tuple[tuple[str, int], ...]:
        """What is active, cheaply: (name, version) pairs (changes when anything is deployed,
        rolled back or undeployed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(definitions_table.c.name, definitions_table.c.active_version)
                .where(definitions_table.c.active_version.is_not(None))
                .order_by(definitions_table.c.name)
            ).all()
        return tuple((str(name), int(version)) for name, version in rows)

    def version(self, name: str, version: int | None = None) -> Version:
        """A recorded version (the active one when ``version`` is None); RegistryError for an
        unknown name or version, or a name that is not deployed."""
        with self.engine.connect() as conn:
            if version is None:
                active = conn.execute(
                    select(definitions_table.c.active_version).where(
                        definitions_table.c.name == name
                    )
                ).scalar()
                if active is None:
                    known = conn.execute(
                        select(func.max(versions_table.c.version)).where(
                            versions_table.c.name == name
                        )
                    ).scalar()
                    if known is None:
                        raise RegistryError(self._unknown(name))
                    raise RegistryError(
                        f"{name} is not deployed (undeployed); its versions 1-{known} can "
                        f"still be run as {name}@VERSION"
                    )
                version = int(active)
            row = conn.execute(
                select(versions_table).where(
                    versions_table.c.name == name, versions_table.c.version == version
                )
            ).first()
        if row is None:
            raise RegistryError(self._unknown(name, version))
        return _version(row)

    def versions(self, name: str) -> list[Version]:
        """Every version of ``name``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(versions_table)
                .where(versions_table.c.name == name)
                .order_by(versions_table.c.version)
            ).all()
        return [_version(row) for row in rows]

    def changes(self, name: str) -> list[Change]:
        """The change history of ``name``, oldest first; RegistryError for an unknown name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(changes_table)
                .where(changes_table.c.name == name)
                .order_by(changes_table.c.id)
            ).all()
        if not rows:
            raise RegistryError(self._unknown(name))
        return [
            Change(
                name=row.name,
                action=row.action,
                version=row.version,
                previous_version=row.previous_version,
                by=row.by,
                at=row.at,
                message=row.message,
            )
            for row in rows
        ]

    def _unknown(self, name: str, version: int | None = None) -> str:
        with self.engine.connect() as conn:
            names = [str(n) for n in conn.execute(select(definitions_table.c.name)).scalars()]
        if version is not None and name in names:
            return f"{name} has no version {version}"
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"no definition {name!r} in the registry{hint}"

    # -- changing --------------------------------------------------------------------------

    def record(
        self, definition: Definition, content: str, *, file: str, by: str, message: str
    ) -> tuple[Version, bool]:
        """Record ``definition`` (loaded from ``content``) as the next version of its slug and
        make it active; returns it and True, or the active version and False when its content
        is the same (nothing is recorded then)."""
        from starter.client import definition_json

        name = definition.slug
        digest = content_hash(content)
        try:
            current = self.version(name)
        except RegistryError:
            current = None
        if current is not None and current.content_hash == digest:
            return current, False
        for _ in range(3):  # another deploy of the same name may take the number first
            try:
                with self.engine.begin() as conn:
                    number = (
                        conn.execute(
                            select(func.max(versions_table.c.version)).where(
                                versions_table.c.name == name
                            )
                        ).scalar()
                        or 0
                    ) + 1
                    at = _now()
                    conn.execute(
                        insert(versions_table).values(
                            name=name,
                            version=number,
                            display_name=definition.display_name or "",
                            display_version=definition.display_version or "",
                            content=content,
                            definition=json.dumps(definition_json(definition), sort_keys=True),
                            content_hash=digest,
                            file=file,
                            deployed_by=by,
                            deployed_at=at,
                            message=message,
                        )
                    )
                    previous = self._activate(conn, name, number, at)
                    self._log(conn, name, "deploy", number, previous, by, at, message)
            except IntegrityError:
                continue
            return self.version(name, number), True
        raise RegistryError(f"{name}: could not record a new version (too many at once)")

    def rollback(self, name: str, version: int, *, by: str, message: str = "") -> Version:
        """Make a recorded version active again."""
        target = self.version(name, version)
        with self.engine.begin() as conn:
            active = conn.execute(
                select(definitions_table.c.active_version).where(definitions_table.c.name == name)
            ).scalar()
            if active == version:
                raise RegistryError(f"{name} is at version {version} already")
            at = _now()
            previous = self._activate(conn, name, version, at)
            self._log(conn, name, "rollback", version, previous, by, at, message)
        return target

    def undeploy(self, name: str, *, by: str, message: str = "") -> Version:
        """Deactivate ``name`` (its versions stay recorded); returns the version that was
        active."""
        current = self.version(name)
        with self.engine.begin() as conn:
            at = _now()
            conn.execute(
                update(definitions_table)
                .where(definitions_table.c.name == name)
                .values(active_version=None, updated_at=at)
            )
            self._log(conn, name, "undeploy", None, current.version, by, at, message)
        return current

    def _activate(self, conn: Any, name: str, version: int, at: str) -> int | None:
        previous = conn.execute(
            select(definitions_table.c.active_version).where(definitions_table.c.name == name)
        ).first()
        if previous is None:
            conn.execute(
                insert(definitions_table).values(name=name, active_version=version, updated_at=at)
            )
            return None
        conn.execute(
            update(definitions_table)
            .where(definitions_table.c.name == name)
            .values(active_version=version, updated_at=at)
        )
        return None if previous[0] is None else int(previous[0])

    def _log(
        self,
        conn: Any,
        name: str,
        action: Action,
        version: int | None,
        previous: int | None,
        by: str,
        at: str,
        message: str,
    ) -> None:
        conn.execute(
            insert(changes_table).values(
                name=name,
                action=action,
                version=version,
                previous_version=previous,
                by=by,
                at=at,
                message=message,
            )
        )


def _version(row: Any) -> Version:
    return Version(
        name=row.name,
        version=int(row.version),
        display_name=row.display_name,
        display_version=row.display_version,
        content=row.content,
        definition_json=json.loads(row.definition),
        content_hash=row.content_hash,
        file=row.file,
        deployed_by=row.deployed_by,
        deployed_at=row.deployed_at,
        message=row.message,
    )


def unified_diff(old: Version | None, new: Version) -> str:
    """The unified diff of two versions' source text (from nothing for the first)."""
    before = old.content.splitlines(keepends=True) if old else []
    after = new.content.splitlines(keepends=True)
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=old.ref if old else "/dev/null",
        tofile=new.ref,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
