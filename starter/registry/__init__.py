"""The registry of deployed definitions: immutable versions (name, version, content hash, who,
when, message) with their change history in the control plane's store
(:mod:`~starter.registry.records`), the registry as a catalog whose triggers are put into
effect (:mod:`~starter.registry.catalog`), and deploying, rolling back and undeploying
(:mod:`~starter.registry.lifecycle`). Runs in flight keep the version they started with: the
compiled plan travels in each run's input."""

from __future__ import annotations

from starter.registry.catalog import RegistryCatalog, registry_catalog
from starter.registry.records import (
    Change,
    Deployed,
    Registry,
    RegistryError,
    Version,
    content_hash,
    unified_diff,
)

__all__ = [
    "Change",
    "Deployed",
    "Registry",
    "RegistryCatalog",
    "RegistryError",
    "Version",
    "content_hash",
    "registry_catalog",
    "unified_diff",
]
