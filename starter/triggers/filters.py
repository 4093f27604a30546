"""Which documents a ``document_upload`` trigger takes (MIME type and glob filters), and the
problems of single triggers that depend on this machine (an unknown time zone)."""

from __future__ import annotations

import fnmatch
import mimetypes
import zoneinfo
from pathlib import Path, PurePosixPath

from interpreter import Definition, Problem
from interpreter.loader import read_yaml
from interpreter.model import ScheduleTrigger, TriggerFilter


def guess_mime(name: str, declared: str | None = None) -> str:
    """The MIME type of a file: from its name, else the type a client declared, else
    ``application/octet-stream``."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed:
        return guessed
    if declared and declared.split(";")[0].strip() not in ("", "application/octet-stream"):
        return declared.split(";")[0].strip().lower()
    return "application/octet-stream"


def matches_filter(spec: TriggerFilter, relative: str, mime: str) -> bool:
    """Whether a document passes a trigger's filter.

    ``mime_types`` entries may use wildcards (``image/*``); ``glob`` is matched against the
    path relative to the watched folder from the right, so ``*.pdf`` matches at any depth and
    ``invoices/*.pdf`` only inside an ``invoices`` folder. An empty filter accepts everything.
    """
    if spec.mime_types and not any(
        fnmatch.fnmatch(mime.lower(), pattern.lower()) for pattern in spec.mime_types
    ):
        return False
    return not spec.glob or PurePosixPath(relative).match(spec.glob)


def describe_filter(spec: TriggerFilter) -> str:
    """The filter in words, for error messages."""
    parts = []
    if spec.mime_types:
        parts.append("MIME type " + " or ".join(spec.mime_types))
    if spec.glob:
        parts.append(f"name matching {spec.glob!r}")
    return " and ".join(parts) or "any document"


def check_triggers(path: Path, definition: Definition) -> dict[int, list[Problem]]:
    """Problems of single triggers that depend on this machine, located in the file: an unknown
    time zone. A trigger with problems stays inactive; the definition still runs. (Whether a
    trigger's inputs fit the definition is checked when the definition is validated.)"""
    found: dict[int, list[str]] = {}
    for index, trigger in enumerate(definition.triggers):
        if isinstance(trigger, ScheduleTrigger) and trigger.timezone:
            try:
                zoneinfo.ZoneInfo(trigger.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                found[index] = [f"unknown time zone {trigger.timezone!r}"]
    if not found:
        return {}
    document = read_yaml(path)
    return {
        index: [
            document.problem(("triggers", index), f"{definition.triggers[index].type} trigger: {m}")
            for m in messages
        ]
        for index, messages in found.items()
    }
