"""Idempotent starts: a retried request carrying the same ``Idempotency-Key`` header gets the run
the first one started instead of a second run.

Stateless, with Temporal as the store: the key gives the workflow id (``key-<sha256(key)>``,
unless the request names its own ``workflow_id``), the run starts with a reuse policy that
refuses a second execution of that id for as long as Temporal keeps the first (the namespace's
retention after it closes), and its memo holds the sha256 of the key and of the canonical
request. A start refused for an existing id reads that memo: the same key and request answer
200 with the first run; the same key with another request is a 409 naming the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header

IDEMPOTENCY_HEADER = "Idempotency-Key"

MEMO_KEY = "tideflow_idempotency"
"""The memo entry of a run started with a key: ``{key, request, definition, document}``."""

IdempotencyKeyParam = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        description="a retried request with the same key returns the run the first one "
        "started (200) instead of starting another; another request with the same key is 409",
    ),
]
"""A route parameter receiving the ``Idempotency-Key`` header."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(value: Any) -> str:
    """``value`` as JSON that is the same text for the same data (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Idempotency:
    """The key of a start request and the fingerprint of that request."""

    key: str
    request: str
    """sha256 of the canonical request."""

    @classmethod
    def of(cls, key: str | None, request: Any) -> Idempotency | None:
        """The idempotency of a request (None without a key); ``request`` is every part of it
        that decides what starts (endpoint, definition, inputs, workflow id, document)."""
        if key is None:
            return None
        return cls(key=key, request=_sha256(canonical_json(request)))

    @property
    def key_hash(self) -> str:
        """sha256 of the key (the key itself is never stored)."""
        return _sha256(self.key)

    def workflow_id(self) -> str:
        """The workflow id a key gives when the request names none."""
        return f"key-{self.key_hash[:20]}"

    def memo(self, definition: str, document: str | None = None) -> dict[str, Any]:
        """The memo of the run this request starts."""
        record: dict[str, Any] = {
            "key": self.key_hash,
            "request": self.request,
            "definition": definition,
        }
        if document is not None:
            record["document"] = document
        return {MEMO_KEY: record}

    def matches(self, memo: Mapping[str, Any]) -> tuple[bool, bool]:
        """Whether a run's memo was written by this key, and by this very request."""
        record = memo.get(MEMO_KEY)
        if not isinstance(record, dict) or record.get("key") != self.key_hash:
            return False, False
        return True, record.get("request") == self.request
