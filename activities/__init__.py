"""Node types that run as Temporal activities, one family a module.

``registry`` maps a node ``type`` (or a seed alias) to its function and config model. Importing
this package registers the built-in families; :func:`load_extensions` imports the modules that
installed packages declare in the ``tideflow.node_types`` entry-point group, so a project adds
types without editing Tideflow.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from activities._context import NodeContext, WorkerResources
from activities._registry import NodeType, Registry, node_type, registry
from activities.errors import (
    NodeConfigError,
    NodeError,
    PermanentNodeError,
    RetryableNodeError,
)
from activities.settings import WorkerSettings

ENTRY_POINT_GROUP = "tideflow.node_types"

# The built-in families register their types on import.
_FAMILIES = ("documents", "ai", "storage", "database", "http", "notify", "code")

for _family in _FAMILIES:
    importlib.import_module(f"activities.{_family}")

_extensions_loaded = False


def load_extensions() -> list[str]:
    """Import every module declared in the ``tideflow.node_types`` entry-point group, once."""
    global _extensions_loaded
    loaded: list[str] = []
    if _extensions_loaded:
        return loaded
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
        loaded.append(entry.value)
    _extensions_loaded = True
    return loaded


__all__ = [
    "ENTRY_POINT_GROUP",
    "NodeConfigError",
    "NodeContext",
    "NodeError",
    "NodeType",
    "PermanentNodeError",
    "Registry",
    "RetryableNodeError",
    "WorkerResources",
    "WorkerSettings",
    "load_extensions",
    "node_type",
    "registry",
]
