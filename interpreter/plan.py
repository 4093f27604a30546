"""A validated definition compiled for running: expressions compiled, defaults resolved, every
node's dependencies, retry policy and timeouts worked out once."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from interpreter.expressions import References, compile_value, references_of
from interpreter.model import Definition, Fallback, Node, OnError, RetrySpec
from interpreter.node_types import RAW_CONFIG_KEYS, SCOPED_TYPES, WORKFLOW_TYPES

DEFAULT_TIMEOUT_SECONDS = 600.0
"""Start-to-close timeout of an activity node that sets none (Temporal requires one)."""
DEFAULT_HEARTBEAT_SECONDS = 60.0
"""Heartbeat timeout of an activity node that sets none: the registry heartbeats every few
seconds while a node runs, so a worker that dies mid-node is noticed after this long and the
node is retried elsewhere, instead of after the whole start-to-close timeout."""


@dataclass(frozen=True)
class PlanNode:
    """One node, ready to run."""

    id: str
    type: str
    name: str | None
    depends_on: tuple[str, ...]
    join: str
    handler: bool
    config: Any
    when: Any
    foreach: Any
    concurrency: int | None
    retry: RetrySpec
    timeout: float
    heartbeat_timeout: float | None
    task_queue: str | None
    on_error: OnError
    compensate: str | None
    cache_ttl: float | None
    references: References
    in_workflow: bool
    scoped: bool

    @property
    def summary(self) -> str:
        """How the node reads in the Temporal Web UI."""
        return f"{self.id} — {self.name}" if self.name else self.id


@dataclass(frozen=True)
class Plan:
    """A whole definition, compiled."""

    definition: Definition
    nodes: dict[str, PlanNode]
    outputs: Any
    outputs_references: References
    on_failure: tuple[str, ...]
    awaited_events: frozenset[str] | None
    """Event names ``wait_for_event`` nodes wait for (None: some name is an expression)."""


def compile_plan(definition: Definition) -> Plan:
    """Compile a validated definition (expressions must already have been checked)."""
    handlers = definition.handler_ids()
    nodes = {
        node.id: _plan_node(definition, node, node.id in handlers) for node in definition.graph()
    }
    outputs = compile_value(definition.outputs)
    events: set[str] | None = set()
    for node in nodes.values():
        if node.type == "wait_for_event" and events is not None:
            name = node.config.get("event") if isinstance(node.config, dict) else None
            events = events | {name} if isinstance(name, str) else None
    return Plan(
        definition=definition,
        nodes=nodes,
        outputs=outputs,
        outputs_references=references_of(outputs),
        on_failure=tuple(definition.error_handling.on_failure),
        awaited_events=frozenset(events) if events is not None else None,
    )


def _plan_node(definition: Definition, node: Node, handler: bool) -> PlanNode:
    defaults = definition.defaults
    raw = RAW_CONFIG_KEYS.get(node.type, frozenset())
    config = {k: v if k in raw else compile_value(v) for k, v in node.config.items()}
    when = compile_value(node.when) if isinstance(node.when, str) else node.when
    foreach = compile_value(node.foreach) if node.foreach is not None else None
    refs = references_of(config) | references_of(when) | references_of(foreach)
    on_error: OnError = node.on_error or definition.default_on_error()
    if isinstance(on_error, Fallback) and on_error.fallback == node.id:
        on_error = "fail"  # a fallback's own default fallback would be itself
    return PlanNode(
        id=node.id,
        type=node.type,
        name=node.name,
        depends_on=tuple(dict.fromkeys(node.depends_on)),
        join=node.join,
        handler=handler,
        config=config,
        when=when,
        foreach=foreach,
        concurrency=node.concurrency,
        retry=node.retry or definition.default_retry(),
        timeout=node.timeout or defaults.timeout or DEFAULT_TIMEOUT_SECONDS,
        heartbeat_timeout=(
            node.heartbeat_timeout or defaults.heartbeat_timeout or DEFAULT_HEARTBEAT_SECONDS
        ),
        task_queue=node.task_queue or defaults.task_queue or definition.task_queue,
        on_error=on_error,
        compensate=node.compensate,
        cache_ttl=node.cache.ttl if node.cache else None,
        references=refs,
        in_workflow=node.type in WORKFLOW_TYPES,
        scoped=node.type in SCOPED_TYPES,
    )


class PlanCache:
    """Plans by the hash of their definition JSON, so a worker validates and compiles a
    definition once, not on every run and every replay. A plan is a pure function of its
    definition, so sharing it between runs cannot change what any run does."""

    def __init__(self, size: int = 64) -> None:
        self._plans: OrderedDict[str, tuple[Definition, Plan]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # workflow tasks run on several threads

    def get(self, data: dict[str, Any]) -> tuple[Definition, Plan]:
        """The validated definition and plan of ``data``; raises ``DefinitionError``."""
        from interpreter import load_data

        key = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                return found
        definition = load_data(data, "<workflow input>")
        made = (definition, compile_plan(definition))
        with self._lock:
            self._plans[key] = made
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return made


plans = PlanCache()
"""The worker-wide plan cache the workflow uses."""
