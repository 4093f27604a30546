"""Static checks of a definition: every problem at once, each with its file, line and column.

:func:`check` turns a parsed :class:`~interpreter.loader.Document` into a validated
:class:`~interpreter.model.Definition` (node types made canonical, config defaults that are
expressions filled in) and the list of problems. It reports YAML errors, unknown keys (with a
"did you mean"), duplicate ids, unknown dependencies, cycles, unknown node types, config that
does not fit its type, bad expressions, references to unknown nodes, inputs or vars, and bad
durations.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from interpreter.expressions import (
    Expression,
    ExpressionError,
    Template,
    compile_string,
    iter_expressions,
)
from interpreter.inputs import input_type_error
from interpreter.limits import MAX_EXPRESSIONS, MAX_NODES, MAX_PROBLEMS
from interpreter.loader import EMPTY, Document, PathKey, Problem, cyclic_gc_paused
from interpreter.model import (
    CONFIG_KEYS,
    END_NODE_TYPES,
    STRUCTURAL_NODE_TYPES,
    Definition,
    DocumentUploadTrigger,
    EventTrigger,
    Fallback,
    Node,
)
from interpreter.node_types import (
    BUILTIN_ALIASES,
    RAW_CONFIG_KEYS,
    WORKFLOW_TYPE_CONFIGS,
    WORKFLOW_TYPES,
    canonical_type,
)
from interpreter.seed_forms import (
    apply_error_handlers,
    handlers_in_milliseconds,
    is_seed_002,
    node_in_milliseconds,
    variable_problems,
)

DEFAULT_EXPRESSION = "default_expression"
"""Key of a config field's ``json_schema_extra`` holding an expression used when the field is
missing (``${{ inputs.document }}``, or ``${{ upstream.output.text }}`` for the output of the
node's only dependency)."""

_GRAPH_KEYS = ("tasks", "steps", "nodes")
LIFECYCLE_TYPE = "notify.lifecycle"
"""The activity type the workflow starts for a definition's ``notifications:`` channels."""
_SECRET_REFERENCE = re.compile(r"\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}")
_SHOWN_CYCLE = 12
_CHEAP_OPTIONS = 200
_COSTLY_SUGGESTIONS = 50
"""Suggestions among more than ``_CHEAP_OPTIONS`` names made for one definition, at most."""


class NodeCatalog(Protocol):
    """What validation needs to know of the activity node types (``activities.registry``)."""

    def canonical(self, name: str) -> str | None:
        """The canonical name of a type or alias, None if unknown."""

    def config_model(self, name: str) -> type[BaseModel] | None:
        """The config model of a type."""

    def names(self) -> list[str]:
        """Every known type name and alias."""


class DefinitionError(Exception):
    """A definition that does not validate; ``problems`` holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class _Located:
    node: Node
    path: PathKey


@dataclass
class _Checker:
    document: Document
    catalog: NodeCatalog | None
    problems: list[Problem] = field(default_factory=list)
    too_many: bool = False
    costly_suggestions: int = 0
    expressions_left: int = MAX_EXPRESSIONS

    def add(self, path: PathKey, message: str, *, key: bool = False, offset: int = 0) -> None:
        self.problems.append(self.document.problem(path, message, key=key, offset=offset))

    def _suggest(self, name: str, options: Collection[str]) -> str:
        """A "did you mean", within a budget for long lists of options: each costs a pass over
        them, and a broken 100,000-node definition must not cost one per problem."""
        if len(options) > _CHEAP_OPTIONS:
            if self.costly_suggestions >= _COSTLY_SUGGESTIONS:
                return ""
            self.costly_suggestions += 1
        return _suggest(name, options)

    # -- structure ---------------------------------------------------------------------------

    def run(self) -> Definition | None:
        data = self.document.data
        if data is None:
            self.add((), EMPTY)
            return None
        if not isinstance(data, dict):
            self.add((), "a definition is a mapping of keys (name, version, tasks, …)")
            return None
        self.seed_002 = is_seed_002(data)
        located = self._nodes(data)
        if self.too_many:
            return None  # checking more would cost what the limit is there to avoid
        top = handlers_in_milliseconds(data) if self.seed_002 else dict(data)
        for key in _GRAPH_KEYS:
            if isinstance(top.get(key), list):
                top[key] = []
        definition: Definition | None = None
        try:
            definition = Definition.model_validate(top)
        except ValidationError as e:
            self._pydantic(e, (), Definition)
            # Check the graph anyway, with the keys that failed left out: a typo at the top
            # must not hide the problems below it.
            failed = {err.loc[0] for err in _errors(Definition, e) if err.loc}
            try:
                definition = Definition.model_validate(
                    {k: v for k, v in top.items() if k not in failed}
                )
            except ValidationError:
                definition = None
        spelling = next((k for k in _GRAPH_KEYS if k in data), None)
        if spelling is None:
            self.add((), "no nodes: add tasks: (with depends_on), steps: or nodes: with edges:")
        if definition is None or spelling is None:
            self._graph_only(located, data)
            return None
        definition = definition.model_copy(update={spelling: [n.node for n in located]})
        for path, message in variable_problems(data):
            self.add(path, message)
        applied, handled = apply_error_handlers(definition, self.raw_ids)
        for path, message in handled:
            self.add(path, message)
        if applied is not definition:
            definition = applied
            # Located nodes carry what the handlers set: the same objects, in the same order.
            located = [
                _Located(node, item.path)
                for node, item in zip(definition.raw_nodes(), located, strict=True)
            ]
        self._graph(definition, located, self.raw_ids)
        return definition

    def _nodes(self, data: dict[str, Any]) -> list[_Located]:
        out: list[_Located] = []
        seen: dict[str, PathKey] = {}
        self.invalid: list[tuple[dict[str, Any], PathKey]] = []
        for key in _GRAPH_KEYS:
            items = data.get(key)
            if not isinstance(items, list):
                continue
            if len(items) > MAX_NODES:
                self.add(
                    (key,),
                    f"too many nodes: {len(items):,} (at most {MAX_NODES:,} in one definition); "
                    "split the work over child workflows",
                    key=True,
                )
                self.too_many = True
                continue
            for i, raw in enumerate(items):
                path: PathKey = (key, i)
                if not isinstance(raw, dict):
                    self.add(path, "a node is a mapping with at least id and type")
                    continue
                node_id = raw.get("id")
                if isinstance(node_id, str):
                    if node_id in seen:
                        line = self.document.position((*seen[node_id], "id")).line
                        self.add(
                            (*path, "id"), f"duplicate node id {node_id!r} (first on line {line})"
                        )
                    else:
                        seen[node_id] = path
                if self.seed_002:
                    raw, timing = node_in_milliseconds(raw, path)
                    for where, message in timing:
                        self.add(where, message)
                try:
                    out.append(_Located(Node.model_validate(raw), path))
                except ValidationError as e:
                    self._pydantic(e, path, Node)
                    self.invalid.append((raw, path))
        self.raw_ids = set(seen)  # every id written, valid node or not
        return out

    def _pydantic(self, error: ValidationError, base: PathKey, model: type[BaseModel]) -> None:
        for item in _errors(model, error):
            loc = item.loc
            path = (*base, *loc)
            if item.kind == "extra_forbidden" and loc:
                name = str(loc[-1])
                allowed = _fields_at(model, loc[:-1])
                self.add(path, f"unknown key {name!r}{self._suggest(name, allowed)}", key=True)
            elif item.kind == "missing" and loc:
                self.add(path[:-1], f"{_where(loc)} is required")
            else:
                where = _where(loc)
                self.add(path, f"{where}{item.joiner}{item.message}" if where else item.message)

    # -- graph -------------------------------------------------------------------------------

    def _graph_only(self, located: list[_Located], data: dict[str, Any]) -> None:
        """Checks that still make sense when the definition's top level is broken."""
        for item in located:
            self._type(item)

    def _graph(self, definition: Definition, located: list[_Located], known: set[str]) -> None:
        """``known`` holds every id written, valid node or not, so one broken node does not
        make its dependents' references look unknown."""
        by_id: dict[str, _Located] = {}
        for item in located:
            by_id.setdefault(item.node.id, item)
        # Designer-export trigger and end nodes are not work: they are dropped from the graph.
        triggers = {i for i, item in by_id.items() if item.node.type in STRUCTURAL_NODE_TYPES}
        self._end_edges(definition, {i for i in triggers if by_id[i].node.type in END_NODE_TYPES})
        handlers = definition.handler_ids()
        self._edges(definition, known)
        graph = {n.id: n for n in definition.graph()}
        for node_id, node in graph.items():
            found = by_id.get(node_id)
            if found is None or node_id in triggers:
                continue
            item = found
            written = set(item.node.depends_on)
            for j, dep in enumerate(node.depends_on):
                dep_path = (*item.path, "depends_on", j) if dep in written else None
                if dep not in known:
                    if dep_path is not None:
                        self.add(
                            dep_path,
                            f"{node_id!r} depends on unknown node "
                            f"{dep!r}{self._suggest(dep, known)}",
                        )
                elif dep == node_id:
                    self.add(dep_path or item.path, f"{node_id!r} depends on itself")
                elif dep in handlers and node_id not in handlers:
                    self.add(
                        dep_path or item.path,
                        f"{node_id!r} depends on {dep!r}, a handler that only runs when invoked",
                    )
        self._handlers(definition, by_id, known)
        regular = {i: n for i, n in graph.items() if i not in handlers and i not in triggers}
        order = self._cycles(regular, by_id)
        ancestors = _Ancestry(order, regular) if order is not None else None
        for item in located:
            node = graph.get(item.node.id, item.node)
            if by_id[item.node.id] is not item:
                node = item.node  # a duplicate: checked on its own
            self._type(item)
            self._node(definition, node, item, known, handlers, ancestors)
        for raw, path in self.invalid:
            # A node that failed validation still gets its expressions checked.
            for key in (*CONFIG_KEYS, "when", "foreach"):
                if key in raw:
                    self._expressions(
                        raw[key],
                        (*path, key),
                        definition,
                        None,
                        known,
                        set(),
                        None,
                        {"item", "index", "error", "failed_node"},
                    )
        self._outputs(definition, known)
        self._inputs(definition)
        self._notifications(definition)

    def _edges(self, definition: Definition, known: set[str]) -> None:
        for k, edge in enumerate(definition.edges or []):
            for end, name in (("from", edge.source), ("to", edge.target)):
                if name not in known:
                    data = self.document.data["edges"][k]
                    key = end if end in data else ("source" if end == "from" else "target")
                    self.add(
                        ("edges", k, key),
                        f"edge {end} unknown node {name!r}{self._suggest(name, known)}",
                    )

    def _end_edges(self, definition: Definition, ends: set[str]) -> None:
        """An end node has no successors: an edge out of it would silently start its target
        at once (the end node is not part of the graph)."""
        for k, edge in enumerate(definition.edges or []):
            if edge.source in ends:
                data = self.document.data["edges"][k]
                key = "from" if "from" in data else "source"
                self.add(
                    ("edges", k, key),
                    f"edge from end node {edge.source!r}: an end node has no successors",
                )

    def _handlers(
        self, definition: Definition, by_id: dict[str, _Located], known: set[str]
    ) -> None:
        for item in by_id.values():
            node = item.node
            if node.compensate and node.compensate not in known:
                self.add(
                    (*item.path, "compensate"),
                    f"compensate names unknown node "
                    f"{node.compensate!r}{self._suggest(node.compensate, known)}",
                )
            if isinstance(node.on_error, Fallback) and node.on_error.fallback not in known:
                name = node.on_error.fallback
                self.add(
                    (*item.path, "on_error", "fallback"),
                    f"fallback names unknown node {name!r}{self._suggest(name, known)}",
                )
            if isinstance(node.on_error, Fallback) and node.on_error.fallback == node.id:
                self.add((*item.path, "on_error", "fallback"), "a node cannot be its own fallback")
        for j, name in enumerate(definition.error_handling.on_failure):
            if name not in known:
                self.add(
                    ("error_handling", "on_failure", j),
                    f"on_failure names unknown node {name!r}{self._suggest(name, known)}",
                )
        for where, default in (
            ("defaults", definition.defaults.on_error),
            ("on_error", definition.on_error),
        ):
            if isinstance(default, Fallback) and default.fallback not in known:
                path: PathKey = ("defaults", "on_error") if where == "defaults" else ("on_error",)
                self.add(path, f"fallback names unknown node {default.fallback!r}")

    def _cycles(self, graph: dict[str, Node], by_id: dict[str, _Located]) -> list[str] | None:
        """A topological order of ``graph``, or None after reporting every cycle."""
        indegree = {i: 0 for i in graph}
        dependents: dict[str, list[str]] = {i: [] for i in graph}
        for node_id, node in graph.items():
            for dep in set(node.depends_on):
                if dep in graph and dep != node_id:
                    indegree[node_id] += 1
                    dependents[dep].append(node_id)
        ready = [i for i, d in indegree.items() if d == 0]
        order: list[str] = []
        while ready:
            current = ready.pop()
            order.append(current)
            for nxt in dependents[current]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) == len(graph):
            return order
        left = {i for i, d in indegree.items() if d > 0}
        for cycle in _cycles_in(left, graph):
            first = by_id[cycle[0]]
            shown = [*cycle, cycle[0]]
            if len(shown) > _SHOWN_CYCLE:  # a message stays one readable line
                shown = [*shown[: _SHOWN_CYCLE - 2], f"… ({len(cycle):,} nodes)", shown[-1]]
            self.add((*first.path, "id"), "cycle: " + " → ".join(shown))
        return None

    def _type(self, item: _Located) -> None:
        name = item.node.type
        if name in WORKFLOW_TYPES or name in STRUCTURAL_NODE_TYPES:
            return
        if self.catalog is None:
            return
        if self.catalog.canonical(name) is None:
            names = [*self.catalog.names(), *WORKFLOW_TYPES]
            self.add(
                (*item.path, "type"), f"unknown node type {name!r}{self._suggest(name, names)}"
            )

    # -- one node ----------------------------------------------------------------------------

    def _node(
        self,
        definition: Definition,
        node: Node,
        item: _Located,
        known: set[str],
        handlers: set[str],
        ancestors: _Ancestry | None,
    ) -> None:
        path = item.path
        allowed_extra = set()
        if node.foreach is not None:
            allowed_extra |= {"item", "index"}
        if node.id in handlers:
            allowed_extra |= {"error", "failed_node"}
        upstream = ancestors.of(node.id) if ancestors is not None else None
        written = next((k for k in CONFIG_KEYS if (*path, k) in self.document.keys), "config")
        config_path = (*path, written)
        self._config(definition, node, config_path, known, handlers, upstream, allowed_extra)
        if isinstance(node.when, str):
            self._expressions(
                node.when,
                (*path, "when"),
                definition,
                node.id,
                known,
                handlers,
                upstream,
                allowed_extra - {"item", "index"},
            )
        if isinstance(node.foreach, str):
            self._expressions(
                node.foreach,
                (*path, "foreach"),
                definition,
                node.id,
                known,
                handlers,
                upstream,
                allowed_extra - {"item", "index"},
            )

    def _config(
        self,
        definition: Definition,
        node: Node,
        config_path: PathKey,
        known: set[str],
        handlers: set[str],
        upstream: _Upstream | None,
        allowed_extra: set[str],
    ) -> None:
        raw = RAW_CONFIG_KEYS.get(_canonical(node.type, self.catalog), frozenset())
        templated = {k: v for k, v in node.config.items() if k not in raw}
        self._expressions(
            templated, config_path, definition, node.id, known, handlers, upstream, allowed_extra
        )
        if node.type == "wait_for_event" and "filters" in node.config:
            # Filters read the event they test.
            self._expressions(
                node.config["filters"],
                (*config_path, "filters"),
                definition,
                node.id,
                known,
                handlers,
                upstream,
                allowed_extra | {"event"},
            )
        model = self._config_model(node.type)
        if model is None:
            return
        if node.type == "set":
            for name in node.config:
                if name not in definition.vars:
                    self.add(
                        (*config_path, name),
                        f"set assigns {name!r}, which is not declared "
                        f"in vars{self._suggest(name, definition.vars)}",
                        key=True,
                    )
            return
        expression_paths = set(_expression_paths(templated, ()))
        try:
            model.model_validate(node.config)
        except ValidationError as e:
            for err in _errors(model, e):
                loc = err.loc
                if any(loc[: len(p)] == p for p in expression_paths):
                    continue
                if not loc and expression_paths:
                    continue  # a whole-config rule may hold once the expressions are evaluated
                if err.kind == "missing" and loc and _default_expression(model, str(loc[-1])):
                    continue
                if err.kind == "extra_forbidden" and loc:
                    allowed = _fields_at(model, loc[:-1])
                    self.add(
                        (*config_path, *loc),
                        f"unknown config key {loc[-1]!r} for "
                        f"{node.type}{self._suggest(str(loc[-1]), allowed)}",
                        key=True,
                    )
                elif err.kind == "missing" and loc:
                    self.add(
                        config_path if node.config else config_path[:-1],
                        f"{node.type} needs config {_where(loc)}",
                    )
                else:
                    where = _where(loc)
                    self.add(
                        (*config_path, *loc),
                        f"config {where}{err.joiner}{err.message}"
                        if where
                        else f"config: {err.message}",
                    )
        at = config_path if node.config else config_path[:-1]
        for name in _missing_defaults(model, node.config):
            filled_text = _fill_default(model, name, node.depends_on)
            if filled_text is None:
                if _default_is_optional(model, name):
                    continue
                self.add(
                    at,
                    f"{node.type} needs config {name!r}: it defaults to the output of the "
                    f"node's only dependency, but {node.id!r} has {len(node.depends_on)}",
                )
                continue
            filled = compile_string(filled_text)
            for used in iter_expressions(filled):
                for input_name in sorted(used.references.inputs - set(definition.inputs)):
                    if definition.inputs:
                        self.add(
                            at,
                            f"{node.type} needs config {name!r}: it defaults to "
                            f"inputs.{input_name}, which this workflow does not declare",
                        )

    def _config_model(self, type_name: str) -> type[BaseModel] | None:
        if type_name in WORKFLOW_TYPE_CONFIGS:
            return WORKFLOW_TYPE_CONFIGS[type_name]
        if self.catalog is None:
            return None
        return self.catalog.config_model(type_name)

    def _expressions(
        self,
        value: Any,
        path: PathKey,
        definition: Definition,
        node_id: str | None,
        known: set[str],
        handlers: set[str],
        upstream: _Upstream | None,
        allowed_extra: set[str],
    ) -> None:
        for sub_path, text in _strings(value, path):
            if self.expressions_left <= 0:
                return
            self.expressions_left -= text.count("${{")
            if self.expressions_left < 0:
                self.add(
                    sub_path,
                    f"too many expressions: more than {MAX_EXPRESSIONS:,} in one definition "
                    "(the rest are not checked)",
                )
                return
            try:
                compiled = compile_string(text)
            except ExpressionError as e:
                self.add(sub_path, e.message, offset=e.offset)
                continue
            if not isinstance(compiled, Template):
                continue
            for expression in iter_expressions(compiled):
                self._references(
                    expression,
                    sub_path,
                    definition,
                    node_id,
                    known,
                    handlers,
                    upstream,
                    allowed_extra,
                )

    def _references(
        self,
        expression: Expression,
        path: PathKey,
        definition: Definition,
        node_id: str | None,
        known: set[str],
        handlers: set[str],
        upstream: _Upstream | None,
        allowed_extra: set[str],
    ) -> None:
        refs = expression.references
        at = expression.offset
        special = {"item", "index", "error", "failed_node", "event"}
        for root in sorted(refs.roots & special - allowed_extra):
            if root in ("item", "index"):
                why = "only a foreach node has item and index"
            elif root == "event":
                why = "only a wait_for_event filter sees the event it tests"
            else:
                why = "only a handler (fallback, compensate, on_failure) sees error"
            self.add(path, f"{root!r} is not defined here: {why}", offset=at)
        for name in sorted(refs.nodes):
            if name not in known:
                self.add(
                    path,
                    f"unknown node {name!r} in expression{self._suggest(name, known)}",
                    offset=at,
                )
            elif (
                node_id is not None
                and upstream is not None
                and node_id not in handlers
                and not upstream(name)
                and name != node_id
            ):
                self.add(
                    path,
                    f"{node_id!r} reads nodes.{name}, which is not upstream of it: "
                    f"add {name!r} to depends_on",
                    offset=at,
                )
        if definition.inputs:
            for name in sorted(refs.inputs - set(definition.inputs)):
                self.add(
                    path,
                    f"unknown input {name!r}{self._suggest(name, definition.inputs)}",
                    offset=at,
                )
        for name in sorted(refs.vars - set(definition.vars)):
            self.add(path, f"unknown var {name!r}{self._suggest(name, definition.vars)}", offset=at)

    def _outputs(self, definition: Definition, known: set[str]) -> None:
        self._expressions(
            definition.outputs, ("outputs",), definition, None, known, set(), None, set()
        )

    def _notifications(self, definition: Definition) -> None:
        """Each ``notifications:`` channel's config fits its type (a webhook needs its url…).
        The workflow sends it as written: only ``${{ secrets.NAME }}`` may stand in a value."""
        model = self.catalog.config_model(LIFECYCLE_TYPE) if self.catalog is not None else None
        for index, notification in enumerate(definition.notifications):
            base: PathKey = ("notifications", index, "config")
            templated = set()
            for sub_path, text in _strings(notification.config, base):
                if "${{" not in text:
                    continue
                templated.add(sub_path)
                if "${{" in _SECRET_REFERENCE.sub("", text):
                    self.add(
                        sub_path,
                        "a notification's config is sent as written: expressions are not "
                        "evaluated here, only ${{ secrets.NAME }} is replaced",
                    )
            if model is None:
                continue
            kind = notification.type.removeprefix("notify.")
            article = "an" if kind[0] in "aeiou" else "a"
            try:
                model.model_validate(
                    {"channel": {"type": notification.type, "config": notification.config}}
                )
            except ValidationError as e:
                for err in _errors(model, e):
                    loc = err.loc[2:] if err.loc[:2] == ("channel", "config") else err.loc
                    path = (*base, *loc)
                    if any(path[: len(t)] == t for t in templated):
                        continue
                    if err.kind == "extra_forbidden" and loc:
                        allowed = _channel_fields(model, notification.type, loc[:-1])
                        name = str(loc[-1])
                        self.add(
                            path,
                            f"unknown config key {name!r} for {article} {kind} notification"
                            f"{self._suggest(name, allowed)}",
                            key=True,
                        )
                    elif err.kind == "missing" and loc:
                        at = base if notification.config else base[:-1]
                        self.add(at, f"{article} {kind} notification needs config {_where(loc)}")
                    else:
                        where = _where(loc)
                        self.add(
                            path if loc else base,
                            f"config {where}{err.joiner}{err.message}"
                            if where
                            else f"config: {err.message}",
                        )

    def _inputs(self, definition: Definition) -> None:
        for name, spec in definition.inputs.items():
            if spec.default is not None:
                problem = input_type_error(spec, spec.default)
                if problem:
                    self.add(("inputs", name, "default"), f"default of input {name!r} {problem}")
        for index, trigger in enumerate(definition.triggers):
            self._trigger_inputs(definition, index, trigger)

    def _trigger_inputs(self, definition: Definition, index: int, trigger: Any) -> None:
        """A trigger's inputs must start a valid run: declared names, right types, and every
        required input given (by the trigger, or at run time by the event or upload)."""
        declared = definition.inputs
        if not declared:
            return
        path: PathKey = ("triggers", index)
        given: dict[str, Any] = dict(getattr(trigger, "inputs", {}) or {})
        supplied = set(given)
        if isinstance(trigger, DocumentUploadTrigger):
            supplied.add(trigger.input)
            spec = declared.get(trigger.input)
            if spec is None:
                self.add(
                    path,
                    f"document_upload sets inputs.{trigger.input}, which this workflow "
                    f"does not declare{self._suggest(trigger.input, declared)}",
                )
            elif spec.type not in ("string", "any"):
                self.add(
                    path,
                    f"document_upload sets inputs.{trigger.input} to a URI, but it is "
                    f"declared as {spec.type}",
                )
        if isinstance(trigger, EventTrigger):
            supplied.add("event")
            if "event" not in declared:
                self.add(
                    path,
                    "an event trigger passes its payload as inputs.event: declare an `event` input",
                )
        for name, value in given.items():
            spec = declared.get(name)
            if spec is None:
                self.add(
                    (*path, "inputs", name),
                    f"unknown input {name!r}{self._suggest(name, declared)}",
                    key=True,
                )
            elif (problem := input_type_error(spec, value)) is not None:
                self.add((*path, "inputs", name), f"input {name!r} {problem}")
        for name, spec in declared.items():
            if spec.required and spec.default is None and name not in supplied:
                self.add(
                    path,
                    f"{trigger.type} trigger starts runs without the required "
                    f"input {name!r}: give it in the trigger's inputs",
                )


def check(
    document: Document, catalog: NodeCatalog | None = None
) -> tuple[Definition | None, list[Problem]]:
    """Validate a parsed document: the definition (None if broken) and every problem found."""
    checker = _Checker(document, catalog)
    checker.problems.extend(document.problems)
    with cyclic_gc_paused():
        definition = checker.run() if not document.problems else None
        if definition is not None and not checker.problems:
            definition = normalize(definition, catalog)
    return definition, _at_most(sorted(set(checker.problems)))


def _at_most(problems: list[Problem]) -> list[Problem]:
    """The first ``MAX_PROBLEMS`` problems, and one more saying how many were left out."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    after = problems[MAX_PROBLEMS]
    left = len(problems) - MAX_PROBLEMS
    more = f"… and {left:,} more (the first {MAX_PROBLEMS:,} problems are shown)"
    return [*problems[:MAX_PROBLEMS], Problem(after.file, after.line, after.column, more)]


def normalize(definition: Definition, catalog: NodeCatalog | None = None) -> Definition:
    """Make node types canonical and fill config fields that default to an expression."""
    spelling = definition.spelling
    graph = {n.id: n for n in definition.graph()}
    nodes = []
    for node in definition.raw_nodes():
        canonical = _canonical(node.type, catalog)
        update: dict[str, Any] = {"type": canonical}
        model = None if catalog is None else catalog.config_model(canonical)
        if model is not None and canonical not in WORKFLOW_TYPES:
            missing = _missing_defaults(model, node.config)
            if missing:
                deps = graph[node.id].depends_on if node.id in graph else []
                config = dict(node.config)
                for name in missing:
                    filled = _fill_default(model, name, deps)
                    if filled is not None:
                        config[name] = filled
                update["config"] = config
        nodes.append(node.model_copy(update=update))
    return definition.model_copy(update={spelling: nodes})


def _canonical(name: str, catalog: NodeCatalog | None) -> str:
    if catalog is not None:
        found = catalog.canonical(name)
        if found:
            return found
    return canonical_type(name)


# --- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Error:
    """One pydantic error as validation reports it."""

    loc: tuple[str | int, ...]
    """Where, as a path into the data (no union labels)."""
    kind: str
    message: str
    joiner: str = ": "
    """Between the place and the message: ``retry.backoff: Input should…`` or
    ``retry.backoff must be one of…``."""


def _errors(model: Any, error: ValidationError) -> list[_Error]:
    """pydantic's errors with their locations made paths into the data.

    When a value fits none of the members of a union, pydantic gives one error per member;
    they become one message naming every choice (``on_error must be one of fail, continue,
    pause or {fallback: …} (did you mean 'continue'?)``), unless the value's shape chose a
    member (a mapping for ``{fallback: …}``): then that member's own errors are reported."""
    walked = [(_walk(model, err["loc"]), err) for err in error.errors()]
    deeper: set[tuple[str | int, ...]] = set()
    for (loc, _, _), _err in walked:
        deeper.update(loc[:i] for i in range(len(loc)))
    out: list[_Error] = []
    unions: dict[tuple[str | int, ...], list[tuple[Any, ErrorDetails]]] = {}
    for (loc, member, in_union), err in walked:
        if in_union:
            if loc not in deeper:
                unions.setdefault(loc, []).append((member, err))
            continue
        if err["type"] == "literal_error":
            out.append(_literal_error(loc, [(member, err)], err.get("input")))
        elif err["type"] == "union_tag_invalid" and "ctx" in err:
            # A tagged union's tag (a trigger's type) is a closed set too.
            key = str(err["ctx"].get("discriminator", "")).strip("'")
            tags = re.findall(r"'([^']*)'", str(err["ctx"].get("expected_tags", "")))
            tag = err["ctx"].get("tag")
            hint = _suggest(tag, tags) if isinstance(tag, str) else ""
            message = f"must be one of {', '.join(tags)}{hint}"
            out.append(_Error((*loc, key) if key else loc, "literal_error", message, " "))
        elif err["type"] == "union_tag_not_found" and "ctx" in err:
            key = str(err["ctx"].get("discriminator", "")).strip("'")  # the tag is missing
            out.append(_Error((*loc, key), "missing", err["msg"]))
        else:
            message = err["msg"].removeprefix("Value error, ")
            out.append(_Error(loc, err["type"], message))
    for loc, members in unions.items():
        out.append(_literal_error(loc, members, members[0][1].get("input")))
    return out


def _literal_error(
    loc: tuple[str | int, ...], members: list[tuple[Any, ErrorDetails]], given: Any
) -> _Error:
    """One message for a value that is none of the choices of a closed set (or union)."""
    values: list[str] = []
    others: list[str] = []
    for member, err in members:
        if typing.get_origin(member) is typing.Literal:
            values.extend(str(v) for v in typing.get_args(member))
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type") and (
            models := _models_in(member)
        ):
            required = [n for n, f in models[0].model_fields.items() if f.is_required()]
            others.append("{" + ", ".join(f"{n}: …" for n in required) + "}")
        else:
            others.append(err["msg"].removeprefix("Value error, ").removeprefix("Input should be "))
    choices = [f"one of {', '.join(values)}"] if values else []
    text = " or ".join([*choices, *others])
    hint = _suggest(given, values) if isinstance(given, str) and values else ""
    if not values:
        return _Error(loc, "union", f"Input should be {text}")
    return _Error(loc, "literal_error", f"must be {text}{hint}", joiner=" ")


def _walk(model: Any, loc: Iterable[Any]) -> tuple[tuple[str | int, ...], Any, bool]:
    """A pydantic error location as a path into the data, the annotation found at its end, and
    whether the error is about one alternative of a union at that place.

    pydantic puts a label in front of each member of a union it tried (``str``, ``Fallback``,
    ``literal['fail','continue']``, a discriminator's tag such as ``event``). Walking the
    model's annotations along the location says which parts are labels, so a config key that
    happens to be named ``event`` or ``str`` stays a key."""
    out: list[str | int] = []
    current: Any = model
    in_union = False
    for part in loc:
        members = _union_members(current) if current is not None else None
        if members is not None:
            current = _member(members, part)
            # A discriminator picks one member: its errors are that member's own, not one
            # per alternative.
            in_union = members[1] is None
            continue
        if current is None and isinstance(part, str) and _LABEL.match(part):
            continue  # inside something this walk cannot follow: drop what reads as a label
        out.append(part)
        in_union = False
        current = _step(current, part) if current is not None else None
    return tuple(out), current, in_union


_LABEL = re.compile(
    r"^(?:function-(?:after|before|wrap|plain)|literal|list|dict|tuple|set|frozenset|"
    r"nullable|union|tagged-union|lax-or-strict|json-or-python|chain|default|model)\["
)


def _union_members(annotation: Any) -> tuple[list[Any], str | None] | None:
    """The members (None left out) and discriminator of a union with several members."""
    discriminator = None
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        for meta in args[1:]:
            discriminator = getattr(meta, "discriminator", None) or discriminator
        annotation = args[0]
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(members) < 2:
        return None
    return members, discriminator if isinstance(discriminator, str) else None


def _member(union: tuple[list[Any], str | None], label: Any) -> Any:
    """The member of a union that pydantic's location label names (None if unknown)."""
    members, discriminator = union
    for member in members:
        models = _models_in(member)
        if models and discriminator is not None:
            field = models[0].model_fields.get(discriminator)
            if field is not None and label in typing.get_args(field.annotation):
                return member
            continue
        named = models[0].__name__ if models else _label_of(member)
        if named == (label if models else str(label).split("[", 1)[0]):
            return member
    return None


def _label_of(annotation: Any) -> str:
    """The start of pydantic's label of a union member: ``str``, ``list``, ``literal``…"""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "literal"
    if origin is not None:
        return getattr(origin, "__name__", "")
    return getattr(annotation, "__name__", "")


def _where(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names (and aliases) of the model found at ``loc`` under ``model``."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    names: list[str] = []
    for candidate in _models_in(current):
        for fname, info in candidate.model_fields.items():
            names.append(fname)
            alias = info.validation_alias
            if alias is not None and hasattr(alias, "choices"):
                names.extend(str(c) for c in alias.choices)
    return names


def _channel_fields(model: type[BaseModel], kind: str, loc: tuple[str | int, ...]) -> list[str]:
    """The config keys of the notification channel of type ``kind`` (at ``loc`` inside it)."""
    field = model.model_fields.get("channel")
    for member in _models_in(field.annotation if field is not None else None):
        tag = member.model_fields.get("type")
        config = member.model_fields.get("config")
        if tag is not None and config is not None and kind in typing.get_args(tag.annotation):
            return [name for m in _models_in(config.annotation) for name in _fields_at(m, loc)]
    return []


def _step(annotation: Any, part: str | int) -> Any:
    for candidate in _unwrap(annotation):
        if (
            isinstance(candidate, type)
            and issubclass(candidate, BaseModel)
            and isinstance(part, str)
        ):
            for fname, info in candidate.model_fields.items():
                alias = info.validation_alias
                choices = list(getattr(alias, "choices", []) or [])
                if part == fname or part in choices:
                    return info.annotation
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if origin is list and isinstance(part, int) and args:
            return args[0]
        if origin is dict and args:
            return args[1]
    return None


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [u for a in typing.get_args(annotation) for u in _unwrap(a)]
    return [annotation]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in _unwrap(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _strings(value: Any, path: PathKey) -> Iterator[tuple[PathKey, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _expression_paths(value: Any, path: PathKey) -> Iterator[PathKey]:
    for sub_path, text in _strings(value, path):
        if "${{" in text:
            yield sub_path


def _default_expression(model: type[BaseModel], name: str) -> str | None:
    info = model.model_fields.get(name)
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, dict):
        found = extra.get(DEFAULT_EXPRESSION)
        return found if isinstance(found, str) else None
    return None


def _missing_defaults(model: type[BaseModel], config: dict[str, Any]) -> list[str]:
    """Config fields left out that default to an expression (unless a field named in
    ``default_unless`` was given instead)."""
    return [
        name for name, given in _defaulted_fields(model) if not any(key in config for key in given)
    ]


@lru_cache(maxsize=256)
def _defaulted_fields(model: type[BaseModel]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The fields of a config model that default to an expression, each with the keys that
    count as giving it (its name, its aliases, its ``default_unless``): worked out once per
    model, not once per node."""
    out = []
    for name, info in model.model_fields.items():
        if _default_expression(model, name) is None:
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        unless = extra.get("default_unless") or []
        aliases = [str(c) for c in getattr(info.validation_alias, "choices", []) or []]
        others = [str(u) for u in unless] if isinstance(unless, list) else []
        out.append((name, (name, *aliases, *others)))
    return tuple(out)


def _fill_default(model: type[BaseModel], name: str, deps: Sequence[str]) -> str | None:
    """The default expression of a field, ``upstream`` standing for the node's only
    dependency; None when it names ``upstream`` and the node has not exactly one."""
    expression = _default_expression(model, name)
    if expression is None or not re.search(r"\bupstream\b", expression):
        return expression
    if len(deps) != 1:
        return None
    return re.sub(r"\bupstream\b", f'nodes["{deps[0]}"]', expression)


def _default_is_optional(model: type[BaseModel], name: str) -> bool:
    """Whether a field's default expression may simply not apply (the field stays unset)."""
    info = model.model_fields.get(name)
    extra = info.json_schema_extra if info is not None else None
    return isinstance(extra, dict) and bool(extra.get("default_optional"))


_Upstream = Callable[[str], bool]
"""Whether a node is upstream of (a transitive dependency of) the node being checked."""


class _Ancestry:
    """Whether a node is upstream of another, asked only for the pairs expressions name.

    A direct dependency answers at once. Otherwise a search walks back from the reader and
    never past the referenced node's place in two topological orders (an ancestor comes
    before its descendants in both, so the second order, built with the opposite tie-break,
    prunes parallel branches the first one interleaves); every answer is remembered per
    referenced node, so a node read from a hundred thousand readers is searched for once.
    Memory stays linear: no per-node ancestor sets or bit sets (those are quadratic).
    """

    def __init__(self, order: list[str], graph: dict[str, Node]) -> None:
        self._deps = {i: {d: None for d in graph[i].depends_on if d in graph} for i in order}
        """Each node's dependencies in the graph (a dict: ordered, and `in` is O(1))."""
        self._first = {node_id: i for i, node_id in enumerate(order)}
        self._second = {node_id: i for i, node_id in enumerate(_other_order(order, self._deps))}
        self._reaches: dict[str, dict[str, bool]] = {}
        """Referenced node → node → whether that node reads from below it."""

    def of(self, node_id: str) -> _Upstream | None:
        """The upstream test of ``node_id`` (None for nodes outside the graph)."""
        if node_id not in self._first:
            return None
        return lambda other: self.upstream(node_id, other)

    def upstream(self, reader: str, target: str) -> bool:
        """Whether ``target`` is a transitive dependency of ``reader``."""
        first, second = self._first, self._second
        if target not in first or not (
            first[target] < first[reader] and second[target] < second[reader]
        ):
            return False
        if target in self._deps[reader]:
            return True
        known = self._reaches.setdefault(target, {})
        if reader in known:
            return known[reader]
        low_first, low_second = first[target], second[target]
        stack = [(reader, iter(self._deps[reader]))]
        while stack:
            current, deps = stack[-1]
            found, deeper = False, None
            for dep in deps:
                if dep == target or known.get(dep):
                    found = True
                    break
                if dep in known or first[dep] < low_first or second[dep] < low_second:
                    continue  # known not to, or placed before the target: cannot reach it
                deeper = dep
                break
            if deeper is not None:
                stack.append((deeper, iter(self._deps[deeper])))
            elif found:
                for node_id, _ in stack:  # every node on the path reaches it too
                    known[node_id] = True
                return True
            else:
                known[current] = False
                stack.pop()
        return False


def _other_order(order: list[str], deps: dict[str, dict[str, None]]) -> list[str]:
    """A second topological order, taking ready nodes in the opposite order to the first."""
    indegree = {i: len(deps[i]) for i in order}
    dependents: dict[str, list[str]] = {i: [] for i in order}
    for node_id in order:
        for dep in deps[node_id]:
            dependents[dep].append(node_id)
    ready = [i for i in reversed(order) if indegree[i] == 0]
    out: list[str] = []
    while ready:
        current = ready.pop()
        out.append(current)
        for nxt in reversed(dependents[current]):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return out


def _cycles_in(nodes: set[str], graph: dict[str, Node]) -> list[list[str]]:
    """The cycles among ``nodes`` (strongly connected components, Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(d for d in graph[start].depends_on if d in nodes)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            current, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(d for d in graph[child].depends_on if d in nodes)))
                    )
                    advanced = True
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1:
                    # Dependencies point backwards; print the cycle in execution order.
                    result.append(list(reversed(_order_cycle(component, graph))))
    return result


def _order_cycle(component: list[str], graph: dict[str, Node]) -> list[str]:
    members = set(component)
    start = min(component)
    cycle = [start]
    seen = {start}
    current = start
    while True:
        nxt = next(d for d in sorted(graph[current].depends_on) if d in members)
        if nxt in seen:
            break
        cycle.append(nxt)
        seen.add(nxt)
        current = nxt
    return cycle


__all__ = ["BUILTIN_ALIASES", "DefinitionError", "NodeCatalog", "check", "normalize"]
