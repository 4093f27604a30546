"""The registry as a catalog of definitions: what ``tideflow api --registry`` serves and whose
triggers ``tideflow triggers --registry`` (and every deploy, rollback and undeploy) put into
effect — the active version of each deployed definition."""

from __future__ import annotations

from pathlib import Path

from interpreter import DefinitionError, Problem
from starter._catalog import Catalog, Entry, TriggerCheck
from starter.registry.records import Registry, Version
from starter.triggers.schedules import DEPLOYED_SCHEDULE_PREFIX


class RegistryCatalog(Catalog):
    """The active versions of the registry, reloaded when a deploy, rollback or undeploy
    changed what is active (:meth:`refresh` compares names and versions)."""

    schedule_prefix = DEPLOYED_SCHEDULE_PREFIX

    def __init__(self, registry: Registry, *, check_triggers: TriggerCheck | None = None) -> None:
        super().__init__(Path("registry"), check_triggers=check_triggers)
        self.registry = registry
        self._registry_signature: tuple[tuple[str, int], ...] | None = None

    def refresh(self) -> bool:
        """Load the active versions again if any changed; True when something changed."""
        signature = self.registry.active_signature()
        if signature == self._registry_signature:
            return False
        self._registry_signature = signature
        self._entries = [self._entry(version) for version in self.registry.active()]
        self.generation += 1
        return True

    def _entry(self, version: Version) -> Entry:
        # Relative watched folders resolve beside the file the version was deployed from.
        file = Path(version.file) if version.file else Path(version.ref)
        try:
            definition = version.definition()
        except DefinitionError as e:  # a node type this process lacks: shown, not run
            problems = [Problem(version.ref, p.line, p.column, p.message) for p in e.problems]
            return Entry(file, version.name, None, problems, memo=version.memo())
        checks = self._check_triggers(file, definition) if self._check_triggers else {}
        return Entry(file, version.name, definition, [], checks, memo=version.memo())


def registry_catalog(registry: Registry | None = None) -> RegistryCatalog:
    """A catalog of the registry (``TIDEFLOW_STORE_URL``'s by default) whose entries carry
    their trigger problems."""
    from starter.triggers.filters import check_triggers

    return RegistryCatalog(registry or Registry.open(), check_triggers=check_triggers)
