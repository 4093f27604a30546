"""The compiled plan a run carries: plain JSON with a ``format`` version, and its typed form.

The starter validates a definition once and compiles it here (:func:`compile_plan`): the graph
made explicit whatever its spelling, node types canonical, every default resolved (retry,
timeouts, ``on_error``, task queue), handlers marked, child definitions compiled too. The
result is plain JSON that any Temporal client can send (``tideflow compile``).

The workflow never validates again. It reads the plan with :func:`load_plan`, which only checks
the plan's structure (so a plan from a hostile client fails its run with a clear error instead
of taking the worker down) and compiles its expressions (pure CEL, cached by source). It reads
every format it has ever written: format 1 was the source definition itself, validated and
compiled by the worker (:func:`plan_from_definition`); format 2 is this module's JSON.
"""

from __future__ import annotations

import ast
import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from interpreter.expressions import (
    ExpressionError,
    References,
    compile_value,
    iter_expressions,
    references_of,
)
from interpreter.model import Definition, Fallback, Node, RetrySpec
from interpreter.node_types import RAW_CONFIG_KEYS, SCOPED_TYPES, WORKFLOW_TYPES

PLAN_FORMAT: Final = 2
"""The plan format this code writes. Every format ever written stays readable."""

DEFAULT_TIMEOUT_SECONDS = 600.0
"""Start-to-close timeout of an activity node that sets none (Temporal requires one)."""
DEFAULT_HEARTBEAT_SECONDS = 60.0
"""Heartbeat timeout of an activity node that sets none: the registry heartbeats every few
seconds while a node runs, so a worker that dies mid-node is noticed after this long and the
node is retried elsewhere, instead of after the whole start-to-close timeout."""
DEFAULT_FOREACH_CONCURRENCY = 100
"""Items of one ``foreach`` running at once when the node sets no ``concurrency``."""
DEFAULT_BATCH_SIZE = 1000
"""A ``foreach`` over more items than this runs them in child workflows of this many items
each, so no history holds more than a bounded number of item events."""

OnErrorSpec = Literal["fail", "continue", "pause"] | tuple[Literal["fallback"], str]


class PlanError(ValueError):
    """A plan the workflow cannot run (malformed JSON from a client, a bad expression)."""


@dataclass(frozen=True)
class RetryPlan:
    """A node's retry policy, resolved."""

    max_attempts: int = 3
    backoff_coefficient: float = 2.0
    initial_interval: float = 1.0
    max_interval: float | None = None
    non_retryable_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class BudgetPlan:
    """A spending limit: tokens, US dollars, or both."""

    tokens: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class NotificationPlan:
    """Where lifecycle events of the run go."""

    on: tuple[str, ...]
    type: str
    config: dict[str, Any]


@dataclass(frozen=True)
class PlanNode:
    """One node, ready to run."""

    id: str
    type: str
    name: str | None = None
    depends_on: tuple[str, ...] = ()
    join: Literal["all", "any"] = "all"
    handler: bool = False
    config: Any = None
    """The config with every string compiled (:mod:`interpreter.expressions`)."""
    when: Any = None
    foreach: Any = None
    concurrency: int | None = None
    batch_size: int | None = None
    retry: RetryPlan = field(default_factory=RetryPlan)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_SECONDS
    task_queue: str | None = None
    on_error: OnErrorSpec = "fail"
    compensate: str | None = None
    cache_ttl: float | None = None
    child_plan: dict[str, Any] | None = None
    """For ``workflow`` nodes: the child definition's plan (JSON)."""
    budget: BudgetPlan | None = None
    """For AI nodes: what the node may spend."""
    filters: tuple[Any, ...] = ()
    """For ``wait_for_event``: compiled conditions an event must meet."""
    resource_limits: dict[str, Any] | None = None
    """What the node's activity may use (``cpu_seconds``, ``memory_mb``, ``output_kb``…)."""
    local: bool = False
    """Run as a Temporal local activity (``execution: local``)."""
    static_config: bool = False
    """The config holds no expression: it is sent as it is, with no scope to build."""
    references: References = field(default_factory=References)
    """What the node's expressions read (its ``when``, ``foreach`` and config)."""
    code_references: References | None = None
    """For node types running user code: the nodes the code reads (all ended nodes if None)."""

    @property
    def spends(self) -> bool:
        """Whether the node calls models (and so counts against budgets)."""
        return self.type.startswith("ai.")

    @property
    def in_workflow(self) -> bool:
        """Whether the workflow runs the node itself (no activity)."""
        return self.type in WORKFLOW_TYPES

    @property
    def scoped(self) -> bool:
        """Whether the node's activity receives the expression scope (it runs user code)."""
        return self.type in SCOPED_TYPES

    @property
    def fallback(self) -> str | None:
        """The node's fallback handler, if its ``on_error`` names one."""
        return self.on_error[1] if isinstance(self.on_error, tuple) else None

    @property
    def summary(self) -> str:
        """How the node reads in the Temporal Web UI."""
        return f"{self.id} — {self.name}" if self.name else self.id


@dataclass(frozen=True)
class InputPlan:
    """A declared input (the language's ``InputSpec``, as the workflow reads it)."""

    type: str = "any"
    required: bool = False
    default: Any = None
    enum: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Plan:
    """A whole definition, compiled."""

    name: str
    version: str
    slug: str
    nodes: dict[str, PlanNode]
    inputs: dict[str, InputPlan] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    outputs: Any = None
    outputs_references: References = field(default_factory=References)
    on_failure: tuple[str, ...] = ()
    awaited_events: frozenset[str] | None = frozenset()
    """Event names ``wait_for_event`` nodes wait for (None: some name is an expression)."""
    budget: BudgetPlan | None = None
    notifications: tuple[NotificationPlan, ...] = ()
    format: int = PLAN_FORMAT
    digest: str = ""
    """sha256 of the plan's JSON: the same plan, the same digest."""
    raw_nodes: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    """Each node's JSON as the plan holds it (a foreach batch's child gets its node's)."""


# --- compiling (starter side) ----------------------------------------------------------------


class ExecutionCatalog(Protocol):
    """What compiling asks of the node types: how a node runs unless it says."""

    def default_execution(self, name: str, config: Mapping[str, Any]) -> str | None:
        """``local`` for a node cheap enough to run as a local activity, else None."""


def compile_plan(definition: Definition, catalog: ExecutionCatalog | None = None) -> dict[str, Any]:
    """The format-2 plan of a validated definition, as plain JSON. With a ``catalog``, node
    types choose how their nodes run when neither the node nor ``defaults`` says."""
    handlers = definition.handler_ids()
    default_retry = _retry_json(definition.default_retry())
    defaults = definition.defaults
    plan: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "name": definition.display_name or "",
        "version": definition.display_version,
        "slug": definition.slug,
    }
    if definition.inputs:
        plan["inputs"] = {
            name: spec.model_dump(mode="json", exclude_none=True, exclude={"description"})
            for name, spec in definition.inputs.items()
        }
    if definition.vars:
        plan["vars"] = definition.vars
    if definition.outputs:
        plan["outputs"] = definition.outputs
    if definition.error_handling.on_failure:
        plan["on_failure"] = list(definition.error_handling.on_failure)
    plan["retry"] = default_retry
    plan["timeout"] = defaults.timeout or DEFAULT_TIMEOUT_SECONDS
    plan["heartbeat_timeout"] = defaults.heartbeat_timeout or DEFAULT_HEARTBEAT_SECONDS
    task_queue = defaults.task_queue or definition.task_queue
    if task_queue:
        plan["task_queue"] = task_queue
    if definition.budget is not None:
        plan["budget"] = definition.budget.model_dump(exclude_none=True)
    if definition.notifications:
        plan["notifications"] = [
            {"on": list(n.on), "type": _notify_type(n.type), "config": n.config}
            for n in definition.notifications
        ]
    default_on_error = _on_error_json(definition.default_on_error())
    nodes = []
    for node in definition.graph():
        out = _node_json(definition, node, node.id in handlers, default_retry, default_on_error)
        execution: str | None = node.execution or defaults.execution
        if execution is None and catalog is not None and node.type not in WORKFLOW_TYPES:
            execution = catalog.default_execution(node.type, node.config)
        if execution == "local" and node.type not in WORKFLOW_TYPES:
            out["execution"] = "local"
        nodes.append(out)
    plan["nodes"] = nodes
    return plan


def _node_json(
    definition: Definition,
    node: Node,
    handler: bool,
    default_retry: dict[str, Any],
    default_on_error: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node.id, "type": node.type}
    if node.name:
        out["name"] = node.name
    depends_on = list(dict.fromkeys(node.depends_on))
    if depends_on:
        out["depends_on"] = depends_on
    if node.join == "any":
        out["join"] = "any"
    if handler:
        out["handler"] = True
    config = dict(node.config)
    if node.type == "workflow":
        child = config.pop("definition", None)
        config.pop("file", None)
        if isinstance(child, Mapping):
            out["child_plan"] = compile_plan(Definition.model_validate(child))
    if config:
        out["config"] = config
    for key in ("when", "foreach", "concurrency", "timeout", "heartbeat_timeout", "task_queue"):
        value = getattr(node, key)
        if value is not None:
            out[key] = value
    if node.batch_size is not None:
        out["batch_size"] = node.batch_size
    if node.retry is not None and _retry_json(node.retry) != default_retry:
        out["retry"] = _retry_json(node.retry)
    on_error = _on_error_json(node.on_error) if node.on_error is not None else default_on_error
    if on_error == {"fallback": node.id}:
        on_error = "fail"  # a fallback's own default fallback would be itself
    if on_error != "fail":
        out["on_error"] = on_error
    if node.compensate:
        out["compensate"] = node.compensate
    if node.cache is not None:
        out["cache_ttl"] = node.cache.ttl
    if node.budget is not None:
        out["budget"] = node.budget.model_dump(exclude_none=True)
    if node.resource_limits is not None:
        out["resource_limits"] = node.resource_limits.model_dump(exclude_none=True)
    return out


def _notify_type(name: str) -> str:
    return name if name.startswith("notify.") else f"notify.{name}"


def _retry_json(spec: RetrySpec) -> dict[str, Any]:
    coefficient = spec.backoff_coefficient or (2.0 if spec.backoff == "exponential" else 1.0)
    out: dict[str, Any] = {
        "max_attempts": spec.max_attempts,
        "backoff_coefficient": coefficient,
        "initial_interval": spec.initial_interval,
    }
    if spec.max_interval:
        out["max_interval"] = spec.max_interval
    if spec.non_retryable_errors:
        out["non_retryable_errors"] = list(spec.non_retryable_errors)
    return out


def _on_error_json(value: Any) -> Any:
    if isinstance(value, Fallback):
        return {"fallback": value.fallback}
    return value


def plan_digest(plan: Mapping[str, Any]) -> str:
    """sha256 of a plan's canonical JSON."""
    return hashlib.sha256(
        json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


# --- loading (workflow side) -----------------------------------------------------------------


def load_plan(data: Any) -> Plan:
    """The typed plan of a format-2 plan's JSON; raise :class:`PlanError` when it is malformed.

    Only the structure is checked (types of fields, known node ids, no cycle): the language was
    validated when the plan was compiled."""
    if not isinstance(data, Mapping):
        raise PlanError("the plan is not a JSON object")
    found = data.get("format")
    if found != PLAN_FORMAT:
        raise PlanError(f"plan format {found!r} is not one this worker reads (it reads 1 and 2)")
    try:
        return _load(data)
    except ExpressionError as e:
        raise PlanError(f"bad expression in the plan: {e.message}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, PlanError):
            raise
        raise PlanError(f"malformed plan: {type(e).__name__}: {e}") from None


def _load(data: Mapping[str, Any]) -> Plan:
    default_retry = _retry(data.get("retry") or {})
    default_timeout = float(data.get("timeout") or DEFAULT_TIMEOUT_SECONDS)
    default_heartbeat = data.get("heartbeat_timeout", DEFAULT_HEARTBEAT_SECONDS)
    default_queue = _opt_str(data.get("task_queue"), "task_queue")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise PlanError("the plan has no nodes")
    nodes: dict[str, PlanNode] = {}
    sources: dict[str, dict[str, Any]] = {}
    for raw in raw_nodes:
        node = _node(raw, default_retry, default_timeout, default_heartbeat, default_queue)
        if node.id in nodes:
            raise PlanError(f"node id {node.id!r} appears twice in the plan")
        nodes[node.id] = node
        sources[node.id] = {
            **raw,
            "retry": _retry_json_of(node.retry),
            "timeout": node.timeout,
            "heartbeat_timeout": node.heartbeat_timeout,
        }
    _check_graph(nodes, data.get("on_failure") or [])
    outputs = compile_value(data.get("outputs") or {})
    events: set[str] | None = set()
    for node in nodes.values():
        if node.type == "wait_for_event" and events is not None:
            name = node.config.get("event") if isinstance(node.config, dict) else None
            events = events | {name} if isinstance(name, str) else None
    inputs = {
        str(name): InputPlan(
            type=str(spec.get("type", "any")),
            required=bool(spec.get("required", False)),
            default=spec.get("default"),
            enum=tuple(spec["enum"]) if spec.get("enum") is not None else None,
        )
        for name, spec in (data.get("inputs") or {}).items()
    }
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        raise PlanError("vars must be an object")
    notifications = tuple(
        NotificationPlan(
            on=tuple(str(e) for e in n.get("on") or ()),
            type=str(n["type"]),
            config=dict(n.get("config") or {}),
        )
        for n in data.get("notifications") or ()
    )
    return Plan(
        name=str(data.get("name") or ""),
        version=str(data.get("version") or ""),
        slug=str(data.get("slug") or ""),
        nodes=nodes,
        inputs=inputs,
        vars=dict(variables),
        outputs=outputs,
        outputs_references=references_of(outputs),
        on_failure=tuple(str(n) for n in data.get("on_failure") or []),
        awaited_events=frozenset(events) if events is not None else None,
        budget=_budget(data.get("budget")),
        notifications=notifications,
        digest=plan_digest(data),
        raw_nodes=sources,
    )


def _budget(raw: Any) -> BudgetPlan | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise PlanError("a budget must be an object")
    tokens, usd = raw.get("tokens"), raw.get("cost_usd")
    return BudgetPlan(
        tokens=int(tokens) if tokens is not None else None,
        cost_usd=float(usd) if usd is not None else None,
    )


def _retry_json_of(retry: RetryPlan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "max_attempts": retry.max_attempts,
        "backoff_coefficient": retry.backoff_coefficient,
        "initial_interval": retry.initial_interval,
    }
    if retry.max_interval:
        out["max_interval"] = retry.max_interval
    if retry.non_retryable_errors:
        out["non_retryable_errors"] = list(retry.non_retryable_errors)
    return out


def _node(
    raw: Any,
    default_retry: RetryPlan,
    default_timeout: float,
    default_heartbeat: Any,
    default_queue: str | None,
) -> PlanNode:
    if not isinstance(raw, Mapping):
        raise PlanError("a plan node is not an object")
    node_id = raw.get("id")
    kind = raw.get("type")
    if not isinstance(node_id, str) or not isinstance(kind, str):
        raise PlanError("a plan node needs a string id and type")
    raw_keys = RAW_CONFIG_KEYS.get(kind, frozenset())
    config_in = raw.get("config") or {}
    if not isinstance(config_in, Mapping):
        raise PlanError(f"node {node_id!r}: config must be an object")
    config = {k: v if k in raw_keys else compile_value(v) for k, v in config_in.items()}
    when = raw.get("when")
    when = compile_value(when) if isinstance(when, str) else when
    foreach = raw.get("foreach")
    foreach = compile_value(foreach) if foreach is not None else None
    on_error: OnErrorSpec
    on_error_in = raw.get("on_error", "fail")
    if isinstance(on_error_in, Mapping) and isinstance(on_error_in.get("fallback"), str):
        on_error = ("fallback", on_error_in["fallback"])
    elif on_error_in in ("fail", "continue", "pause"):
        on_error = on_error_in
    else:
        raise PlanError(f"node {node_id!r}: on_error {on_error_in!r} is not one this worker knows")
    join = raw.get("join", "all")
    if join not in ("all", "any"):
        raise PlanError(f"node {node_id!r}: join {join!r} is not all or any")
    heartbeat = raw.get("heartbeat_timeout", default_heartbeat)
    refs = references_of(config) | references_of(when) | references_of(foreach)
    code_refs = None
    if kind in SCOPED_TYPES and isinstance(config.get("code"), str):
        code_refs = python_references(config["code"])
    child = raw.get("child_plan")
    filters: tuple[Any, ...] = ()
    if kind == "wait_for_event" and isinstance(config_in.get("filters"), list):
        filters = tuple(compile_value(f) for f in config_in["filters"])
        for compiled in filters:
            refs = refs | references_of(compiled)
    return PlanNode(
        id=node_id,
        type=kind,
        name=_opt_str(raw.get("name"), "name"),
        depends_on=tuple(str(d) for d in raw.get("depends_on") or ()),
        join=join,
        handler=bool(raw.get("handler", False)),
        config=config,
        when=when,
        foreach=foreach,
        concurrency=_opt_int(raw.get("concurrency"), node_id, "concurrency"),
        batch_size=_opt_int(raw.get("batch_size"), node_id, "batch_size"),
        retry=_retry(raw["retry"]) if raw.get("retry") else default_retry,
        timeout=float(raw.get("timeout") or default_timeout),
        heartbeat_timeout=float(heartbeat) if heartbeat else None,
        task_queue=_opt_str(raw.get("task_queue"), "task_queue") or default_queue,
        on_error=on_error,
        compensate=_opt_str(raw.get("compensate"), "compensate"),
        cache_ttl=float(raw["cache_ttl"]) if raw.get("cache_ttl") is not None else None,
        child_plan=dict(child) if isinstance(child, Mapping) else None,
        budget=_budget(raw.get("budget")),
        filters=filters,
        resource_limits=dict(limits)
        if isinstance(limits := raw.get("resource_limits"), Mapping)
        else None,
        local=raw.get("execution") == "local" and kind not in WORKFLOW_TYPES,
        static_config=not any(True for _ in iter_expressions(config)),
        references=refs,
        code_references=code_refs,
    )


def _retry(raw: Any) -> RetryPlan:
    if not isinstance(raw, Mapping):
        raise PlanError("a retry policy must be an object")
    max_interval = raw.get("max_interval")
    return RetryPlan(
        max_attempts=int(raw.get("max_attempts", 3)),
        backoff_coefficient=float(raw.get("backoff_coefficient", 2.0)),
        initial_interval=float(raw.get("initial_interval", 1.0)),
        max_interval=float(max_interval) if max_interval else None,
        non_retryable_errors=tuple(str(e) for e in raw.get("non_retryable_errors") or ()),
    )


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PlanError(f"{what} must be a string, got {type(value).__name__}")


def _opt_int(value: Any, node_id: str, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlanError(f"node {node_id!r}: {what} must be a positive integer")
    return value


def _check_graph(nodes: dict[str, PlanNode], on_failure: Any) -> None:
    """Known ids everywhere and no cycle among regular nodes (linear: Kahn's algorithm)."""
    for node in nodes.values():
        for other in (*node.depends_on, node.compensate, node.fallback):
            if other is not None and other not in nodes:
                raise PlanError(f"node {node.id!r} names unknown node {other!r}")
    for name in on_failure:
        if name not in nodes:
            raise PlanError(f"on_failure names unknown node {name!r}")
    regular = {i: n for i, n in nodes.items() if not n.handler}
    indegree = {i: 0 for i in regular}
    dependents: dict[str, list[str]] = {i: [] for i in regular}
    for node_id, node in regular.items():
        for dep in set(node.depends_on):
            if dep in regular:
                indegree[node_id] += 1
                dependents[dep].append(node_id)
            elif dep in nodes:
                raise PlanError(f"node {node_id!r} depends on handler {dep!r}")
    ready = deque(i for i, d in indegree.items() if d == 0)
    seen = 0
    while ready:
        current = ready.popleft()
        seen += 1
        for nxt in dependents[current]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if seen != len(regular):
        stuck = sorted(i for i, d in indegree.items() if d > 0)
        raise PlanError(f"the plan's graph has a cycle through {', '.join(stuck[:5])}")


_DICT_METHODS = frozenset(dir(dict))


def python_references(code: str) -> References | None:
    """The nodes a ``code.python`` body reads, when it names them literally
    (``nodes["a"]``, ``nodes.a``, ``nodes.get("a")``); None when it reads ``nodes`` any
    other way (then every ended node is in its scope)."""
    try:
        tree = ast.parse(f"def _f():\n{_indent(code)}")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names: set[str] = set()
    literal_uses: set[int] = set()
    for sub in ast.walk(tree):
        target: str | None = None
        base: ast.AST | None = None
        if isinstance(sub, ast.Subscript) and _is_nodes(sub.value):
            base = sub.value
            if isinstance(sub.slice, ast.Constant) and isinstance(sub.slice.value, str):
                target = sub.slice.value
        elif isinstance(sub, ast.Attribute) and _is_nodes(sub.value):
            base = sub.value
            if sub.attr not in _DICT_METHODS:
                target = sub.attr
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and _is_nodes(sub.func.value)
            and sub.func.attr == "get"
            and sub.args
            and isinstance(sub.args[0], ast.Constant)
            and isinstance(sub.args[0].value, str)
        ):
            base = sub.func.value
            target = sub.args[0].value
        if base is not None and target is not None:
            names.add(target)
            literal_uses.add(id(base))
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Name) and sub.id == "nodes" and id(sub) not in literal_uses:
            return None
    return References(roots=frozenset({"nodes"}), nodes=frozenset(names))


def _is_nodes(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "nodes"


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in (code.splitlines() or ["pass"])) + "\n    pass"


# --- format 1: the source definition ----------------------------------------------------------


def plan_from_definition(data: Any) -> dict[str, Any]:
    """The format-2 plan of a format-1 run input's definition (validated as format-1 workers
    did); raises ``DefinitionError``."""
    from interpreter import load_data

    return compile_plan(load_data(data, "<workflow input>"))


class PlanCache:
    """Loaded plans by digest, so a worker compiles a plan's expressions once, not on every run
    and every replay. A loaded plan is a pure function of its JSON, so sharing it between runs
    cannot change what any run does."""

    def __init__(self, size: int = 64) -> None:
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._legacy: OrderedDict[str, tuple[Plan, dict[str, Any]]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # workflow tasks run on several threads

    def get(self, data: Mapping[str, Any]) -> Plan:
        """The loaded plan of ``data``; raises :class:`PlanError`."""
        key = plan_digest(data)
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                return found
        plan = load_plan(data)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return plan

    def from_definition(self, data: Mapping[str, Any]) -> tuple[Plan, dict[str, Any]]:
        """The loaded plan of a format-1 definition and its format-2 JSON; raises
        ``DefinitionError``."""
        key = "v1:" + plan_digest(data)
        with self._lock:
            found = self._legacy.get(key)
            if found is not None:
                self._legacy.move_to_end(key)
                return found
        compiled = plan_from_definition(dict(data))
        made = (load_plan(compiled), compiled)
        with self._lock:
            self._legacy[key] = made
            while len(self._legacy) > self._size:
                self._legacy.popitem(last=False)
        return made


plans = PlanCache()
"""The worker-wide plan cache the workflow uses."""
