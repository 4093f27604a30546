"""Seed 003's ``custom_logger``: writes one JSON line per run and node event of the worker.

Enable it in the worker configuration (seed 003's form or the native one)::

    extensions:
      - name: custom_logger
        enabled: true
        options: {path: /var/log/tideflow/events.jsonl}  # default: <home>/custom_logger.jsonl

Each line is the event as Tideflow hands it (``event``, ``workflow_id``, ``run_id``,
``definition``, ``version``, ``slug``, ``node``, ``type``, ``status``, ``attempts``, ``error``,
``at``, ``task_queue``; empty fields left out): never inputs, outputs or secrets.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

__all__ = ["setup"]


def setup(hooks: Any) -> None:
    """Register the logger on every event (``hooks`` is Tideflow's ``activities.hooks.Hooks``)."""
    configured = hooks.options.get("path")
    home = Path(hooks.settings.home) if hooks.settings is not None else Path(".")
    path = Path(configured).expanduser() if configured else home / "custom_logger.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    @hooks.on("run_started", "node_started", "node_ended", "run_ended")
    def log_event(event: Any) -> None:
        line = json.dumps(event.as_dict(), sort_keys=True, default=str)
        with lock, path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
