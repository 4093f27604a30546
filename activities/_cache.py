"""The node output cache behind ``cache: {ttl: 1h}``: identical config, same output, across runs.

Entries are JSON files under ``<home>/cache`` keyed by the sha256 of the node type and its
evaluated config, written atomically so concurrent workers never read half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

_MISSING = object()


class NodeCache:
    """A folder of cached node outputs with expiry times."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(node_type: str, config: dict[str, Any]) -> str:
        """The cache key of a node type and its evaluated config."""
        canonical = json.dumps([node_type, config], sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str, ttl_seconds: float) -> Any:
        """The cached output, or ``MISSING`` when absent or older than the ttl."""
        path = self.folder / f"{key}.json"
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return _MISSING
        if time.time() - float(entry.get("stored_at", 0)) > ttl_seconds:
            return _MISSING
        return entry.get("output")

    def put(self, key: str, output: Any) -> None:
        """Store an output under ``key``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"stored_at": time.time(), "output": output}, f)
        os.replace(tmp, self.folder / f"{key}.json")


MISSING = _MISSING
