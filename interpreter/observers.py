"""Where a worker listens to the runs it executes: run started, node started, node ended, run
ended (extension hooks, seed 003's ``custom_logger``).

The workflow hands each event to :func:`emit` when it happens for the first time — never while
replaying history — and nothing it does depends on the answer, so listening cannot change a
run's course or its determinism. A sink must be quick and must not block: the worker's sink
queues the event and calls the hooks elsewhere, with timeouts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

Sink = Callable[[str, dict[str, Any]], None]

RUN_EVENTS = frozenset({"run_started", "run_ended"})
"""The events of a run's start and end only (no per-node events)."""

_sinks: list[Sink] = []
_node_sinks: list[Sink] = []


def add_sink(sink: Sink, *, nodes: bool = True) -> None:
    """Start handing events to ``sink``: every event, or with ``nodes=False`` only
    :data:`RUN_EVENTS` (runs then build no event per node for it)."""
    _sinks.append(sink)
    if nodes:
        _node_sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    """Stop handing events to ``sink``."""
    if sink in _sinks:
        _sinks.remove(sink)
    if sink in _node_sinks:
        _node_sinks.remove(sink)


def active() -> bool:
    """Whether anybody listens (runs only describe what they do when somebody does)."""
    return bool(_sinks)


def wants_nodes() -> bool:
    """Whether anybody listens to each node's start and end."""
    return bool(_node_sinks)


def emit(event: str, data: dict[str, Any]) -> None:
    """Hand an event to every sink that wants it; a sink that raises is left out of this
    event only."""
    for sink in list(_sinks if event in RUN_EVENTS else _node_sinks):
        with contextlib.suppress(Exception):
            sink(event, data)
