"""Node type names that belong to the language itself.

The language defines the seed aliases of the built-in types (DSL.md section 2) and the types
that run inside the workflow without an activity. Activity implementations live in
``activities/``; this module only names them, so the workflow can resolve a definition started
from any Temporal client without importing a single activity.
"""

from __future__ import annotations

from typing import Final

BUILTIN_ALIASES: Final[dict[str, str]] = {
    "document_parser": "documents.parse",
    "parse_document": "documents.parse",
    "text_extraction": "documents.parse",
    "entity_extraction": "ai.extract",
    "ai_extraction": "ai.extract",
    "classification": "ai.classify",
    "summarization": "ai.summarize",
    "ai_processing": "ai.prompt",
    "llm": "ai.prompt",
    "storage": "storage.write",
    "database_connector": "database.insert",
    "api": "http.request",
    "http": "http.request",
    "notification": "notify.webhook",
    "code": "code.python",
    "python": "code.python",
}
"""Seed alias → canonical type name."""

WORKFLOW_TYPES: Final[frozenset[str]] = frozenset(
    {"set", "wait", "fail", "wait_for_event", "approval", "workflow"}
)
"""Types the workflow runs itself (timers, signals, updates, child workflows): no activity."""

SCOPED_TYPES: Final[frozenset[str]] = frozenset({"code.python"})
"""Activity types that receive the whole expression scope (they run user code)."""


def canonical_type(name: str) -> str:
    """The canonical name of a built-in alias; any other name is returned unchanged."""
    return BUILTIN_ALIASES.get(name, name)
