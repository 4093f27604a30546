"""Seed 002's definition form, mapped onto the language when a definition loads.

Seed 002 describes a workflow with TypeScript interfaces (``WorkflowDefinition {id, version,
nodes, edges, variables, triggers, error_handlers}``, ``TaskConfig {type, inputs, timeout,
retry_policy, resource_limits}``). Most of it maps by name in :mod:`interpreter.model` (``id``
is the name, ``inputs`` the config, ``retry_policy`` the retry, ``variables`` a list of
``{name, type, default}``, ``trigger`` and ``end`` nodes shape the drawing only). What needs
the whole document lives here, for :mod:`interpreter.validate` to call:

* numbers of time: a definition in seed 002's form (it has a top-level ``id``) is TypeScript's,
  where a bare number of time is milliseconds (``setTimeout``, and Temporal's own TypeScript
  SDK reads ``startToCloseTimeout: 30000`` as 30 s). So in that form a node's ``timeout`` and
  ``heartbeat_timeout``, its retry intervals and a ``wait_for_event``'s ``timeout`` given as
  numbers are milliseconds; a text duration (``30s``) means what it says anywhere. A timeout
  under one second is refused: it is almost surely seconds written in the wrong unit.
* ``variables``: each default must fit its type, and names are unique;
* ``error_handlers``: applied to the nodes they cover (:func:`apply_error_handlers`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from interpreter.inputs import input_type_error
from interpreter.loader import PathKey
from interpreter.model import CONFIG_KEYS, Definition, ErrorHandler, Fallback, InputSpec, Node

_NODE_TIMES = ("timeout", "heartbeat_timeout")
_RETRY_TIMES = ("initial_interval", "max_interval")
_RETRY_KEYS = ("retry_policy", "retry")
MIN_TIMEOUT_MS = 1000
"""The shortest numeric timeout seed 002's form accepts (milliseconds)."""

Located = tuple[PathKey, str]
"""A problem: where (a path into the document) and what."""


def is_seed_002(data: Any) -> bool:
    """Whether a definition is written in seed 002's form (it names itself with ``id``)."""
    return isinstance(data, dict) and "id" in data and "name" not in data


def handlers_in_milliseconds(data: dict[str, Any]) -> dict[str, Any]:
    """A seed 002 definition's top level with the retry intervals of its ``error_handlers``
    made explicit durations (see :func:`node_in_milliseconds`)."""
    handlers = data.get("error_handlers")
    if not isinstance(handlers, list):
        return data
    out = []
    for index, handler in enumerate(handlers):
        if isinstance(handler, dict):
            handler, _ = node_in_milliseconds(handler, ("error_handlers", index))
        out.append(handler)
    return {**data, "error_handlers": out}


def node_in_milliseconds(
    raw: dict[str, Any], path: PathKey
) -> tuple[dict[str, Any], list[Located]]:
    """A seed 002 node with its numbers of time made explicit durations (``30000`` →
    ``30000ms``), and the problems of timeouts too short to be meant. The keys stay where they
    were, so positions still point at what the user wrote."""
    problems: list[Located] = []
    out = dict(raw)
    for key in _NODE_TIMES:
        out[key] = _milliseconds(raw.get(key), (*path, key), problems, minimum=True)
    for key in _RETRY_KEYS:
        retry = raw.get(key)
        if isinstance(retry, dict):
            out[key] = {
                k: _milliseconds(v, (*path, key, k), problems) if k in _RETRY_TIMES else v
                for k, v in retry.items()
            }
    if raw.get("type") == "wait_for_event":
        for key in CONFIG_KEYS:
            config = raw.get(key)
            if isinstance(config, dict) and "timeout" in config:
                timeout = _milliseconds(
                    config["timeout"], (*path, key, "timeout"), problems, minimum=True
                )
                out[key] = {**config, "timeout": timeout}
    return {k: v for k, v in out.items() if k in raw}, problems


def _milliseconds(value: Any, path: PathKey, problems: list[Located], minimum: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if minimum and 0 <= value < MIN_TIMEOUT_MS:
        problems.append(
            (
                path,
                f"{path[-1]}: {value:g} is {value:g} ms in seed 002's form (numbers of time are "
                f"milliseconds, as in TypeScript): write {value * 1000:g} for {value:g} s, or "
                f'"{value:g}s"',
            )
        )
    return f"{value}ms"


def variable_problems(data: dict[str, Any]) -> list[Located]:
    """Problems of seed 002's ``variables`` list: duplicate names, defaults of the wrong type."""
    variables = data.get("variables")
    if not isinstance(variables, list):
        return []
    problems: list[Located] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(variables):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue  # the model reports its shape
        name = item["name"]
        if name in seen:
            problems.append(
                ((("variables", index, "name")), f"variable {name!r} is declared twice")
            )
        seen.setdefault(name, index)
        kind = item.get("type", "any")
        default = item.get("default")
        if default is None or not isinstance(kind, str):
            continue
        try:
            declared = InputSpec(type=kind)  # type: ignore[arg-type]
        except ValidationError:
            continue  # an unknown type: the model reports it
        problem = input_type_error(declared, default)
        if problem:
            problems.append((("variables", index, "default"), f"default of {name!r} {problem}"))
    return problems


def apply_error_handlers(
    definition: Definition, known: set[str]
) -> tuple[Definition, list[Located]]:
    """The definition with its ``error_handlers`` applied to the nodes they cover, and the
    problems of handlers naming unknown nodes. A node's own ``retry`` or ``on_error`` wins, and
    so does the first handler covering a node; the applied definition has no
    ``error_handlers`` left (it is in the language's own terms)."""
    handlers = definition.error_handlers
    if not handlers:
        return definition, []
    problems: list[Located] = []
    valid: list[ErrorHandler] = []
    for index, handler in enumerate(handlers):
        bad = False
        for j, name in enumerate(handler.nodes):
            if name not in known:
                problems.append(
                    (
                        ("error_handlers", index, "nodes", j),
                        f"error handler covers unknown node {name!r}",
                    )
                )
                bad = True
        if handler.handler is not None and handler.handler not in known:
            problems.append(
                (
                    ("error_handlers", index, "handler"),
                    f"error handler runs unknown node {handler.handler!r}",
                )
            )
            bad = True
        if not bad:
            valid.append(handler)
    invoked = {h.handler for h in valid if h.handler}
    regular = definition.handler_ids() | invoked
    on_failure = list(definition.error_handling.on_failure)
    nodes: list[Node] = []
    for node in definition.raw_nodes():
        covering = [
            h for h in valid if node.id in h.nodes or (not h.nodes and node.id not in regular)
        ]
        update: dict[str, Any] = {}
        for handler in covering:
            if handler.action == "retry":
                if node.retry is None and "retry" not in update:
                    update["retry"] = handler.retry_policy or definition.default_retry()
            elif node.on_error is None and "on_error" not in update:
                update["on_error"] = _on_error(handler)
                if handler.action == "compensate" and handler.handler not in on_failure:
                    on_failure.append(str(handler.handler))
        nodes.append(node.model_copy(update=update) if update else node)
    error_handling = definition.error_handling.model_copy(update={"on_failure": on_failure})
    applied = definition.model_copy(
        update={definition.spelling: nodes, "error_handlers": [], "error_handling": error_handling}
    )
    return applied, problems


def _on_error(handler: ErrorHandler) -> Any:
    action = handler.action
    if action == "fallback":
        return Fallback(fallback=str(handler.handler))
    if action in ("continue", "pause"):
        return action
    return "fail"  # terminate, fail, compensate (the run fails, then on_failure runs)
