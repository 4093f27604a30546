"""The pydantic models of the Tideflow language (DSL.md sections 1, 2 and 4).

A :class:`Definition` accepts the three graph spellings of the seeds as written (``tasks`` with
``depends_on``, ``steps``, ``nodes`` with ``edges``) so validation errors point at what the user
wrote; :meth:`Definition.graph` gives the one normalized list of nodes with their dependencies.
Models forbid unknown keys: a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CONFIG_KEYS = ("config", "with", "inputs")
"""The names a node's config may be written under (``inputs``: seed 002's TaskConfig)."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_FULL = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+$", re.IGNORECASE)
_ISO_DURATION = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds in a duration: ``500ms``, ``30s``, ``5m``, ``2h``, ``1d``, ``1h30m``, ISO 8601
    (``PT5M``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 500ms, 30s, 5m, 2h or 1d)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_FULL.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in _DURATION_PART.findall(value))
    elif isinstance(value, str) and (iso := _ISO_DURATION.match(value.strip().upper())):
        d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise ValueError(f"{value!r} is not a duration (use 500ms, 30s, 5m, 2h or 1d)")
    if seconds < 0:
        raise ValueError(f"{value!r}: a duration cannot be negative")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda s: s, return_type=float),
    Field(json_schema_extra={"type": ["string", "number"], "examples": ["30s", "5m", "2h"]}),
]
"""A duration in seconds, written as ``500ms``, ``30s``, ``5m``, ``2h``, ``1d`` or a number."""


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _as_text(value: Any) -> Any:
    # `version: 1.0` is a float to YAML; a version is text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


StrList = Annotated[list[str], BeforeValidator(_str_list)]
Text = Annotated[
    str, BeforeValidator(_as_text), Field(json_schema_extra={"type": ["string", "number"]})
]
"""Text that YAML may have read as a number (``version: 1.0``)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetrySpec(_Model):
    """How often and how fast a failing node is tried again (a Temporal retry policy)."""

    max_attempts: int = Field(default=3, ge=1, description="attempts in all, the first included")
    backoff: Literal["exponential", "fixed", "constant"] = "exponential"
    backoff_coefficient: float | None = Field(default=None, ge=1.0)
    initial_interval: Duration = 1.0
    max_interval: Duration | None = None
    non_retryable_errors: list[str] = Field(default_factory=list)
    """Error types (e.g. ``PermanentNodeError``) that are never retried."""


class Fallback(_Model):
    """Run another node when this one fails; its output stands in for the failed node's."""

    fallback: str


OnError = Literal["fail", "continue", "pause"] | Fallback


class CacheSpec(_Model):
    """Reuse the output of an identical node config within ``ttl``, across runs."""

    ttl: Duration


class Budget(_Model):
    """What a run (or one AI node) may spend on models before an operator must agree to more."""

    tokens: int | None = Field(default=None, ge=1)
    cost_usd: float | None = Field(default=None, gt=0)


NotificationEvent = Literal[
    "started", "completed", "failed", "cancelled", "needs_attention", "budget"
]


_DEFAULT_EVENTS: tuple[NotificationEvent, ...] = (
    "completed",
    "failed",
    "needs_attention",
    "budget",
)


class Notification(_Model):
    """Where a run's lifecycle events go (``notifications:``): a webhook, email or Slack."""

    on: list[NotificationEvent] = Field(default_factory=lambda: list(_DEFAULT_EVENTS))
    type: Literal["notify.webhook", "notify.email", "notify.slack", "webhook", "email", "slack"]
    config: dict[str, Any] = Field(default_factory=dict)


class ResourceLimits(_Model):
    """What one node may use (seed 002's ``resource_limits``), within the worker's ceilings."""

    cpu_seconds: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, ge=1)
    wall_seconds: float | None = Field(default=None, gt=0)
    output_kb: int | None = Field(default=None, ge=1)
    max_output_kb: int | None = Field(default=None, ge=1)


class Node(_Model):
    """One node of the graph."""

    id: str = Field(pattern=NODE_ID.pattern)
    type: str
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("config", "with", "inputs")
    )
    """The node's settings; ``with`` (GitHub Actions) and ``inputs`` (seed 002's TaskConfig)
    are other names for it."""
    depends_on: StrList = Field(default_factory=list)
    when: str | bool | None = None
    foreach: str | list[Any] | None = None
    concurrency: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    """A foreach over more items than this runs them in child workflows of this many items."""
    join: Literal["all", "any"] = "all"
    retry: RetrySpec | None = Field(
        default=None, validation_alias=AliasChoices("retry", "retry_policy")
    )
    timeout: Duration | None = None
    heartbeat_timeout: Duration | None = None
    task_queue: str | None = None
    on_error: OnError | None = None
    compensate: str | None = None
    cache: CacheSpec | None = None
    budget: Budget | None = None
    """For AI nodes: what this node may spend (the run's budget applies too)."""
    resource_limits: ResourceLimits | None = None
    execution: Literal["local", "remote"] | None = None
    """``local``: run as a Temporal local activity (cheap nodes: fewer history events, no
    trip through the task queue); ``remote`` (default): a regular activity."""
    position: Any = None
    """Layout of designer exports; ignored."""
    metadata: dict[str, Any] | None = None
    """Free-form annotations; ignored by the engine."""

    @model_validator(mode="before")
    @classmethod
    def _one_config(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in CONFIG_KEYS if k in data]
            if len(given) > 1:
                raise ValueError(f"give one of {' or '.join(given)}, not both")
        return data


class Edge(_Model):
    """An edge of the ``nodes``/``edges`` spelling (designer exports)."""

    source: str = Field(validation_alias=AliasChoices("from", "source"))
    target: str = Field(validation_alias=AliasChoices("to", "target"))
    id: str | None = None
    label: str | None = None


class InputSpec(_Model):
    """A typed input of the workflow, checked before a run starts."""

    type: Literal["string", "number", "integer", "boolean", "object", "array", "any"] = "any"
    required: bool = False
    default: Any = None
    description: str | None = None
    enum: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `inputs: {document: string}` is short for `{document: {type: string}}`.
        return {"type": data} if isinstance(data, str) else data


class Variable(_Model):
    """One of seed 002's ``variables: [{name, type, default}]``: a var and its first value."""

    name: str = Field(pattern=VAR_NAME.pattern)
    type: Literal["string", "number", "integer", "boolean", "object", "array", "any"] = "any"
    default: Any = None
    description: str | None = None


ErrorAction = Literal["retry", "continue", "pause", "terminate", "fail", "fallback", "compensate"]


class ErrorHandler(_Model):
    """One of seed 002's ``error_handlers``: what the nodes it covers do when they fail.

    Applied to the nodes when the definition loads (a node's own setting wins): ``retry``
    sets their retry policy; ``continue``, ``pause`` and ``terminate`` (or ``fail``) their
    ``on_error``; ``fallback`` runs ``handler`` in a failed node's place; ``compensate``
    fails the run and runs ``handler`` once, as ``error_handling.on_failure`` does."""

    id: str | None = None
    nodes: StrList = Field(
        default_factory=list, validation_alias=AliasChoices("nodes", "node", "applies_to")
    )
    """The nodes it covers; empty: every node that is not a handler."""
    action: ErrorAction
    handler: str | None = None
    """The node to run, for ``fallback`` and ``compensate``."""
    retry_policy: RetrySpec | None = Field(
        default=None, validation_alias=AliasChoices("retry_policy", "retry")
    )
    """For ``retry``: the policy (default: 3 attempts, exponential backoff)."""

    @model_validator(mode="after")
    def _handler_when_needed(self) -> ErrorHandler:
        if self.action in ("fallback", "compensate") and not self.handler:
            raise ValueError(f"action {self.action} needs handler: the node to run")
        if self.action not in ("fallback", "compensate") and self.handler:
            raise ValueError(f"handler goes with action fallback or compensate, not {self.action}")
        if self.retry_policy is not None and self.action != "retry":
            raise ValueError(f"retry_policy goes with action retry, not {self.action}")
        return self


class TriggerFilter(_Model):
    """Which uploaded documents start a run."""

    mime_types: list[str] = Field(default_factory=list)
    glob: str | None = None


class ManualTrigger(_Model):
    """Runs started by the CLI, the client or the HTTP API."""

    type: Literal["manual"]


class ApiTrigger(_Model):
    """Runs started through the HTTP API (``POST /definitions/{name}/runs``)."""

    type: Literal["api"]


class ScheduleTrigger(_Model):
    """Runs started by a Temporal Schedule."""

    type: Literal["schedule"]
    cron: str | None = None
    every: Duration | None = None
    timezone: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cron_or_every(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule trigger needs exactly one of cron or every")
        cron = self.cron
        if cron is not None and not cron.startswith("@") and len(cron.split()) not in (5, 6, 7):
            raise ValueError(f"cron {cron!r} needs 5 fields: minute hour day month weekday")
        return self


class DocumentUploadTrigger(_Model):
    """Runs started when a matching document arrives in a watched folder or S3 prefix, or is
    uploaded through the HTTP API; the run gets ``inputs.<input>`` = the document's URI."""

    type: Literal["document_upload"]
    filter: TriggerFilter = Field(default_factory=TriggerFilter)
    path: str | None = None
    """A folder or ``s3://bucket/prefix`` to watch."""
    input: str = "document"
    inputs: dict[str, Any] = Field(default_factory=dict)


class EventTrigger(_Model):
    """Runs started by an emitted event (``tideflow emit NAME``)."""

    type: Literal["event"]
    name: str
    inputs: dict[str, Any] = Field(default_factory=dict)


Trigger = Annotated[
    ManualTrigger | ApiTrigger | ScheduleTrigger | DocumentUploadTrigger | EventTrigger,
    Field(discriminator="type"),
]


class Defaults(_Model):
    """Settings every node inherits unless it sets its own."""

    timeout: Duration | None = None
    heartbeat_timeout: Duration | None = None
    retry: RetrySpec | None = None
    on_error: OnError | None = None
    task_queue: str | None = None
    execution: Literal["local", "remote"] | None = None


class ErrorHandling(_Model):
    """The seeds' error-handling block: ``retry`` is the default retry; ``on_failure`` nodes run
    once when the run fails."""

    retry: RetrySpec | None = None
    on_failure: StrList = Field(default_factory=list)
    on_error: OnError | None = None


class ConcurrencyLimit(_Model):
    """How many runs of a definition may run at once; further starts wait in the start outbox
    until one ends."""

    max_runs: int = Field(ge=1)


class Metadata(BaseModel):
    """Designer exports' metadata; ``name`` and ``id`` stand in for name and version."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    id: Text | None = None
    version: Text | None = None
    description: str | None = None


class Definition(_Model):
    """A whole workflow definition."""

    name: str | None = Field(default=None, validation_alias=AliasChoices("name", "id"))
    """The name; seed 002's form writes it as ``id``."""
    version: Text | None = None
    description: str | None = None
    metadata: Metadata | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    variables: list[Variable] | None = None
    """Seed 002's form of ``vars``: a list of ``{name, type, default}`` (folded into ``vars``
    when the definition loads; a mapping here is read as ``vars``)."""
    triggers: list[Trigger] = Field(default_factory=list)
    defaults: Defaults = Field(default_factory=Defaults)
    error_handling: ErrorHandling = Field(default_factory=ErrorHandling)
    on_error: OnError | None = None
    """Default ``on_error`` of every node."""
    task_queue: str | None = None
    """Task queue of this definition's activities (default: the worker's)."""
    tasks: list[Node] | None = None
    steps: list[Node] | None = None
    nodes: list[Node] | None = None
    edges: list[Edge] | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    budget: Budget | None = None
    """What the run's AI nodes may spend together."""
    notifications: list[Notification] = Field(default_factory=list)
    error_handlers: list[ErrorHandler] = Field(default_factory=list)
    """Seed 002's error handlers, applied to the nodes they cover when the definition loads
    (:func:`interpreter.seed_forms.apply_error_handlers`)."""

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "id" in data and "name" in data:
            raise ValueError("give name, or id (seed 002's form), not both")
        variables = data.get("variables")
        if isinstance(variables, dict):  # `variables:` as a mapping is vars under another name
            if "vars" in data:
                raise ValueError("give vars or variables, not both")
            data = {k: v for k, v in data.items() if k != "variables"}
            data["vars"] = variables
        elif variables is not None and "vars" in data:
            raise ValueError("give vars or variables, not both")
        return data

    @model_validator(mode="after")
    def _fold_variables(self) -> Definition:
        if self.variables is not None:
            self.vars = {v.name: v.default for v in self.variables}
            self.variables = None
        return self

    concurrency: ConcurrencyLimit | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    """Temporal task priority of the run and its nodes: 1 first, 5 last (default 3)."""

    @model_validator(mode="after")
    def _one_spelling(self) -> Definition:
        given = [k for k in ("tasks", "steps", "nodes") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"use one of tasks, steps or nodes, not {' and '.join(given)}")
        if self.edges is not None and self.nodes is None:
            raise ValueError("edges go with nodes: a tasks or steps graph uses depends_on")
        if self.display_name is None:
            raise ValueError("a definition needs a name")
        return self

    @property
    def display_name(self) -> str | None:
        """The name, or the designer export's ``metadata.name``."""
        return self.name or (self.metadata.name if self.metadata else None)

    @property
    def display_version(self) -> str:
        """The version, or the designer export's ``metadata.version``/``metadata.id``."""
        if self.version:
            return self.version
        if self.metadata:
            return self.metadata.version or self.metadata.id or ""
        return ""

    @property
    def slug(self) -> str:
        """The name as an identifier: ``Invoice Processing`` → ``invoice-processing``."""
        return slugify(self.display_name or "workflow")

    @property
    def spelling(self) -> Literal["tasks", "steps", "nodes"]:
        """Which graph spelling the definition uses."""
        if self.steps is not None:
            return "steps"
        if self.nodes is not None:
            return "nodes"
        return "tasks"

    def raw_nodes(self) -> list[Node]:
        """The nodes as written, in order."""
        return self.tasks or self.steps or self.nodes or []

    def graph(self) -> list[Node]:
        """The nodes with their dependencies made explicit, whatever the spelling.

        ``steps`` run in sequence unless a step names ``depends_on``; ``edges`` become
        ``depends_on`` of their target. Trigger nodes of designer exports (``type: trigger``)
        are not part of the graph: their successors start at once; nor are ``end`` nodes (seed
        002's form), which mark where the graph ends.
        """
        nodes = self.raw_nodes()
        structural = {n.id for n in nodes if n.type in STRUCTURAL_NODE_TYPES}
        if self.spelling == "tasks":
            out = list(nodes)
        elif self.spelling == "steps":
            out = []
            previous: str | None = None
            for node in nodes:
                if "depends_on" not in node.model_fields_set and previous is not None:
                    node = node.model_copy(update={"depends_on": [previous]})
                out.append(node)
                previous = node.id
        else:
            incoming: dict[str, list[str]] = {}
            for edge in self.edges or []:
                if edge.source not in structural and edge.target not in structural:
                    incoming.setdefault(edge.target, []).append(edge.source)
            out = [
                node.model_copy(
                    update={"depends_on": [*node.depends_on, *incoming.get(node.id, [])]}
                )
                if node.id in incoming
                else node
                for node in nodes
            ]
        if not structural:
            return out
        return [
            node.model_copy(
                update={"depends_on": [d for d in node.depends_on if d not in structural]}
            )
            if structural.intersection(node.depends_on)
            else node
            for node in out
            if node.id not in structural
        ]

    def default_on_error(self) -> OnError:
        """What a failing node does when it sets no ``on_error``."""
        return self.defaults.on_error or self.on_error or self.error_handling.on_error or "fail"

    def default_retry(self) -> RetrySpec:
        """The retry policy of a node that sets none."""
        return self.defaults.retry or self.error_handling.retry or RetrySpec()

    def handler_ids(self) -> set[str]:
        """Nodes that only run when invoked: fallbacks, compensations, on_failure handlers."""
        ids = set(self.error_handling.on_failure)
        for node in self.raw_nodes():
            if node.compensate:
                ids.add(node.compensate)
            if isinstance(node.on_error, Fallback):
                ids.add(node.on_error.fallback)
        for default in (self.defaults.on_error, self.on_error, self.error_handling.on_error):
            if isinstance(default, Fallback):
                ids.add(default.fallback)
        return ids


TRIGGER_NODE_TYPES = frozenset({"trigger", "manual_trigger", "start"})
"""Designer-export node types that stand for how a run starts, not for work."""

END_NODE_TYPES = frozenset({"end"})
"""Node types that mark where the graph ends (seed 002's ``End``): not work either."""

STRUCTURAL_NODE_TYPES = TRIGGER_NODE_TYPES | END_NODE_TYPES
"""Node types of the nodes/edges spelling that shape the drawing, not the run."""


def slugify(text: str) -> str:
    """Lower-case words joined by ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "workflow"
