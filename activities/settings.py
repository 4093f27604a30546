"""Worker settings: where data lives, named connections, provider credentials, the engine's
slots, default retry, metrics, extensions, node pools and outbox bounds.

Read once when the worker starts, from the environment and an optional YAML file
(``TIDEFLOW_CONFIG``, default ``<TIDEFLOW_HOME>/worker.yaml`` when it exists), in this native
form or seed 003's ``workflow_engine:`` form (:mod:`activities.settings_file`). Environment
variables win over the file. A setting that does not fit is a :class:`SettingsError`, one
``FILE:LINE:COL: message`` line per problem. Node types get them through
``NodeContext.settings``; the starter (CLI, API) reads the same file for the task queue, the
default retry it compiles into plans, and the outbox's bounds.
"""

from __future__ import annotations

import fnmatch
import os
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from interpreter.model import Duration, RetrySpec

EXAMPLES_FOLDER = Path(__file__).resolve().parent.parent / "examples"
"""The project's examples (sample definitions and documents), readable by development workers."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelPrice(_Section):
    """USD per million tokens, for the cost line of AI nodes."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0


class CatalogModel(_Section):
    """One named model of the worker's catalogue (``ai.models``): where it answers and what it
    costs. Give ``local`` (a local model) or an endpoint (``base_url``; default the worker's
    ``ai.base_url``)."""

    base_url: str | None = None
    """An OpenAI-compatible endpoint; default the worker's ``ai.base_url`` (or OpenAI's)."""
    api_key: str | None = None
    """The endpoint's key; default the worker's ``ai.api_key``."""
    model: str | None = None
    """The model id sent to the endpoint; default the entry's name."""
    local: str | None = None
    """A local model instead of an endpoint: a known name (``qwen2.5-coder-1.5b``) or a GGUF
    path."""
    input_per_million: float = Field(default=0.0, ge=0)
    """USD per million prompt tokens."""
    output_per_million: float = Field(default=0.0, ge=0)
    """USD per million completion tokens."""
    context: int | None = Field(default=None, gt=0)
    """Context size in tokens (what ``min_context`` compares with)."""

    @model_validator(mode="after")
    def _one_place(self) -> CatalogModel:
        if self.local is not None and (self.base_url is not None or self.api_key is not None):
            raise ValueError("give either local or base_url/api_key, not both")
        return self


class AISettings(_Section):
    """The AI family: named models (a catalogue), an OpenAI-compatible endpoint, local models."""

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    """Default model for nodes that do not name one (at the endpoint, or a catalogue name)."""
    local_model: str | None = None
    """One local model for every AI node that names none, instead of the per-task defaults
    (``TIDEFLOW_LOCAL_MODEL``): a known name (``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``,
    ``smollm2``) or a GGUF path. See docs/local-models.md for how they compare."""
    task_models: dict[Literal["extract", "classify", "summarize", "prompt"], str] = Field(
        default_factory=dict
    )
    """The model of each AI task when a node names none (a catalogue name or ``local:NAME``);
    default the local models the evaluation chose (docs/local-models.md)."""
    models: dict[str, CatalogModel] = Field(default_factory=dict)
    """The model catalogue: name → endpoint (or local model), model id, prices, context."""
    max_local_models: int = Field(default=2, ge=1)
    """How many local models may be loaded at once (each holds 0.3-1.4 GB); the least
    recently used idle one is unloaded to make room."""
    request_timeout_seconds: float = 120.0
    local_request_timeout_seconds: float = 540.0
    """Longest a local model may take to answer one request (it answers one at a time, on the
    worker's CPU: long extractions on a busy 2-core machine take minutes). Below the nodes'
    default 600 s timeout."""
    schema_repairs: int = 2
    """How many times a reply that does not fit the output schema is asked again."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Prices of models used through the endpoint without a catalogue entry."""


class SMTPSettings(_Section):
    """The SMTP server of notify.email."""

    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    sender: str = "tideflow@localhost"
    timeout_seconds: float = 30.0


class CodeSettings(_Section):
    """Limits of code.python: what a node gets unless its ``resource_limits`` ask for other
    values, and the ceilings those may not pass (``max_*``, default: the same as the value, so
    that nodes may only lower their limits until an operator raises a ceiling)."""

    cpu_seconds: int = 10
    memory_mb: int = 512
    wall_seconds: float = 30.0
    max_open_files: int = 64
    output_kb: int | None = None
    """Largest answer (return value and printed text, as JSON) of the code; None: only the
    worker's ``max_output_mb`` applies."""
    max_cpu_seconds: int | None = None
    max_memory_mb: int | None = None
    max_wall_seconds: float | None = None

    @property
    def cpu_ceiling(self) -> int:
        """The most CPU seconds a node's ``resource_limits`` may ask for."""
        return max(self.max_cpu_seconds or self.cpu_seconds, 1)

    @property
    def memory_ceiling(self) -> int:
        """The most memory (MiB) a node's ``resource_limits`` may ask for."""
        return max(self.max_memory_mb or self.memory_mb, 1)

    @property
    def wall_ceiling(self) -> float:
        """The most wall-clock seconds a node's ``resource_limits`` may ask for."""
        return self.max_wall_seconds or self.wall_seconds


class DocumentsSettings(_Section):
    """documents.parse: downloads and OCR."""

    fetch_timeout_seconds: float = 60.0
    """Timeout of one http(s):// or s3:// download (connect and each read)."""
    tesseract_cmd: str = "tesseract"
    """The tesseract binary (Debian package ``tesseract-ocr``): a name on PATH or a path."""
    ocr_dpi: int = 300
    """Resolution PDF pages are rendered at before OCR."""
    ocr_page_timeout_seconds: float = 300.0
    """Longest tesseract may take on one page or image."""


MetricFamily = Literal["latency", "throughput", "failures", "slots", "polls"]
"""Families of the worker's Prometheus metrics (seed 003's ``monitoring.metrics`` names the first
three); :data:`METRIC_FAMILIES` lists the Temporal metrics in each."""

_ALL_FAMILIES: tuple[MetricFamily, ...] = typing.get_args(MetricFamily)

METRIC_FAMILIES: dict[str, tuple[str, ...]] = {
    "latency": (
        "temporal_activity_execution_latency",
        "temporal_activity_schedule_to_start_latency",
        "temporal_workflow_task_execution_latency",
        "temporal_workflow_endtoend_latency",
    ),
    "throughput": ("temporal_workflow_completed", "temporal_activity_poll_no_task"),
    "failures": (
        "temporal_activity_execution_failed",
        "temporal_workflow_failed",
        "temporal_workflow_task_execution_failed",
    ),
    "slots": ("temporal_worker_task_slots_available", "temporal_worker_task_slots_used"),
    "polls": ("temporal_num_pollers", "temporal_request"),
}


class MonitoringSettings(_Section):
    """The worker's metrics export: Temporal's worker metrics for Prometheus at ``address``
    (``TIDEFLOW_METRICS_ADDRESS`` turns it on)."""

    enabled: bool = False
    address: str = "127.0.0.1:9464"
    """``host:port`` the ``/metrics`` endpoint listens on."""
    metrics: list[MetricFamily] = Field(default_factory=lambda: list(_ALL_FAMILIES))
    """The families operators watch; the endpoint serves every Temporal worker metric, these
    among them (:data:`METRIC_FAMILIES`)."""


class ExtensionSettings(_Section):
    """An extension whose hooks the worker calls on run and node events, found by ``name`` in
    the ``tideflow.extensions`` entry-point group (:mod:`activities.hooks`)."""

    name: str = Field(min_length=1)
    enabled: bool = True
    timeout_seconds: float = Field(default=5.0, gt=0)
    """Longest a hook may take on one event before it is disabled on this worker."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Handed to the extension's setup function as they are."""
    _where: str = PrivateAttr(default="")

    @property
    def where(self) -> str:
        """``FILE:LINE:COL`` of the extension's name in the configuration file (or empty)."""
        return self._where


def _rate(value: Any) -> Any:
    """``10/s``, ``600/m``, ``3600/h`` or a number: tasks per second."""
    if isinstance(value, str):
        count, slash, unit = value.replace(" ", "").partition("/")
        per = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
        per |= {"h": 3600.0, "hour": 3600.0}
        try:
            rate = float(count)
        except ValueError:
            rate = -1.0
        if not slash or unit not in per or rate <= 0:
            raise ValueError(f"{value!r} is not a rate (write 10/s, 600/m or 3600/h)")
        return rate / per[unit]
    return value


class PoolSettings(_Section):
    """A task queue this worker polls for node activities (a node pool: nodes with
    ``task_queue:`` of that name), or the main queue's activity limits when named after it."""

    rate_limit: float | None = Field(default=None, gt=0)
    """Activities per second started from this task queue, across every worker that polls it
    (Temporal's task-queue rate limit); written ``10/s``, ``600/m`` or a number."""
    max_concurrent_activities: int | None = Field(default=None, ge=1)
    """Activity slots of this worker on the pool (default: ``max_concurrent_activities``)."""

    _rate_limit = field_validator("rate_limit", mode="before")(_rate)


class OutboxAlert(_Section):
    """Where the outbox's backlog alert goes: a notify node type and its config."""

    type: Literal["notify.webhook", "notify.email", "notify.slack"]
    config: dict[str, Any] = Field(default_factory=dict)


class OutboxSettings(_Section):
    """Bounds of the start outbox (starts kept while Temporal cannot take them)."""

    max_pending: int = Field(default=100, ge=1)
    """More starts than this waiting is an alert (and a failed ``doctor``/``/health`` check)."""
    max_age: Duration = 300.0
    """A start waiting longer than this is an alert."""
    alert: OutboxAlert | None = None
    wait_seconds: float = Field(default=5.0, ge=0)
    """How long a start request waits for its delivery before it is answered 202 (pending)."""


class WorkerSettings(_Section):
    """Everything a worker and its node types are configured with."""

    home: Path = Path(".tideflow")
    """The data folder: SQLite files, payload store, caches, uploaded documents."""
    task_queue: str = "tideflow"
    payload_threshold: int = 256 * 1024
    """Values bigger than this many bytes travel as references to the payload store."""
    history_inline_limit: int = 1024
    """A run's input (its plan) and result (its report) over this many bytes are stored in the
    payload store and referenced from history (``TIDEFLOW_HISTORY_INLINE_LIMIT``; 0 keeps them
    inline, readable in the Web UI without a codec server)."""
    payload_store: str | None = None
    """``file:///folder`` or ``s3://bucket/prefix``; default ``<home>/payloads``."""
    file_root: Path | None = None
    """Root of relative ``file://`` URIs for storage nodes; default ``<home>/files``."""
    file_roots: list[Path] = Field(default_factory=list)
    """More folders nodes may read and write local files in (``TIDEFLOW_FILE_ROOTS``, separated
    by ``:``). Always allowed besides: the file root, ``<home>/uploads`` and, when the payload
    store is a folder, its ``uploads`` subfolder. See :meth:`allowed_file_roots`."""
    allow_private_networks_for_inline: bool = False
    """Whether runs of definitions posted inline to the HTTP API (origin ``inline``) may reach
    loopback and private addresses too (``TIDEFLOW_ALLOW_PRIVATE_NETWORKS_FOR_INLINE``): a
    stranger may have written them, so ``allow_private_networks`` alone does not open them."""
    allow_private_networks: bool = False
    """Whether http.request and documents.parse may reach loopback and private addresses
    (``TIDEFLOW_ALLOW_PRIVATE_NETWORKS``). Off for a plain worker, on for ``tideflow dev``, the
    embedded worker and the demo (:meth:`for_development`). Link-local and cloud metadata
    addresses are refused either way."""
    max_download_mb: float = Field(default=100.0, gt=0)
    """Largest body a node downloads or reads (documents.parse sources, storage.read,
    http.request responses), in MiB (``TIDEFLOW_MAX_DOWNLOAD_MB``)."""
    max_output_mb: float = Field(default=64.0, gt=0)
    """Largest output a node may return, as JSON, in MiB (``TIDEFLOW_MAX_OUTPUT_MB``)."""
    reference_threshold: int = Field(default=1024 * 1024, ge=1024)
    """Parts of a node's output bigger than this many bytes (as JSON) stay out of the workflow:
    they are stored and passed on by reference (``TIDEFLOW_REFERENCE_THRESHOLD``)."""
    databases: dict[str, str] = Field(default_factory=dict)
    """Named SQLAlchemy URLs; ``default_database`` defaults to SQLite in the data folder."""
    ai: AISettings = Field(default_factory=AISettings)
    smtp: SMTPSettings = Field(default_factory=SMTPSettings)
    slack_webhook_url: str | None = None
    code: CodeSettings = Field(default_factory=CodeSettings)
    documents: DocumentsSettings = Field(default_factory=DocumentsSettings)
    max_concurrent_activities: int = 100
    node_types: list[str] = Field(default_factory=lambda: ["*"])
    """The node types this worker runs (shell patterns: ``code.*``; ``TIDEFLOW_NODE_TYPES``,
    comma separated). A node of another type that reaches it fails at once, naming the type and
    the queue (give the node the ``task_queue:`` of a worker that runs it)."""
    exclude_node_types: list[str] = Field(default_factory=list)
    """Node types this worker never runs, whatever ``node_types`` says
    (``TIDEFLOW_EXCLUDE_NODE_TYPES``): ``[code.python]`` keeps untrusted code off a pool."""
    task_queues: list[str] = Field(default_factory=list)
    """More task queues this worker polls for nodes besides ``task_queue``
    (``TIDEFLOW_TASK_QUEUES``, comma separated)."""
    workflows: bool = True
    """Whether the worker also runs workflows on ``task_queue``; off for a node pool
    (``TIDEFLOW_WORKFLOWS=false``)."""

    def serves(self, node_type: str) -> bool:
        """Whether this worker runs nodes of ``node_type`` (see :attr:`node_types`)."""
        if any(fnmatch.fnmatchcase(node_type, p) for p in self.exclude_node_types):
            return False
        return any(fnmatch.fnmatchcase(node_type, p) for p in self.node_types)

    @property
    def served_queues(self) -> list[str]:
        """Every task queue the worker polls: ``task_queue`` first, then ``task_queues`` and
        the node pools."""
        return list(dict.fromkeys([self.task_queue, *self.task_queues, *self.pools]))

    max_concurrent_local_activities: int = 100
    """Nodes running as local activities at once (``execution: local``). Local activities run
    inside workflow tasks: the worker keeps its workflow-task slots at 50 so they cannot starve
    it (MACHINE-NOTES: 200 runs of local activities hung with the SDK's default of 100)."""
    record_metrics: bool = True
    """Write every node attempt's numbers (outcome, duration, CPU, memory, tokens, cost) to the
    engine's metrics store for ``tideflow stats`` (``TIDEFLOW_RECORD_METRICS``)."""
    store_url: str | None = None
    """The control plane's SQL store (``TIDEFLOW_STORE_URL``); default SQLite
    ``<home>/control.db``."""
    metrics_retention_days: float = Field(default=30.0, ge=0)
    """Node metrics older than this are deleted (0 keeps them)."""
    ui_url: str | None = None
    """The Temporal Web UI's address, for links in run notifications (``TIDEFLOW_UI_URL``;
    default http://localhost:8233)."""
    api_url: str | None = None
    """Where ``tideflow api`` answers, for links to its run page in run notifications
    (``TIDEFLOW_API_URL``, e.g. http://tideflow.example.com:8000)."""

    @property
    def resolved_store_url(self) -> str:
        """The store's URL: ``store_url``, else SQLite in the data folder."""
        if self.store_url:
            return self.store_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.home / 'control.db').resolve()}"

    workflow_sandbox: bool = False
    """Run the workflow inside the Temporal SDK's sandbox (``TIDEFLOW_WORKFLOW_SANDBOX``). The
    one workflow is Tideflow's own code, not users': off, it runs without the sandbox's
    per-payload and per-activation crossings (about a fifth of the worker's CPU per node,
    bench/README.md). The test suite turns it on, so a non-deterministic call in the
    interpreter fails a test."""
    max_concurrent_workflow_tasks: int = Field(default=50, ge=1)
    """Workflow task slots: how many runs the worker advances at once (seed 003's
    ``max_concurrent_workflows``). Bounded so a burst of runs cannot starve the event loop."""
    default_retry: RetrySpec | None = None
    """The retry of nodes whose definition sets none (seed 003's ``error_handling``); the
    starter compiles it into the plan, so a run keeps the retry it started with."""
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    extensions: list[ExtensionSettings] = Field(default_factory=list)
    pools: dict[str, PoolSettings] = Field(default_factory=dict)
    """Node pools (task queues) this worker serves besides its own, with their limits."""
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    config_file: Path | None = None
    """The configuration file these settings were read from, if any."""

    @property
    def resolved_file_root(self) -> Path:
        """The folder ``file://`` storage URIs are confined to."""
        return (self.file_root or self.home / "files").resolve()

    def allowed_file_roots(self) -> list[Path]:
        """The folders local files of nodes must lie in (resolved, symlinks followed)."""
        roots = [self.resolved_file_root, (self.home / "uploads").resolve()]
        store = urlsplit(self.resolved_payload_store)
        if store.scheme == "file":
            roots.append(Path(url2pathname(unquote(store.path))).resolve() / "uploads")
        roots.extend(root.expanduser().resolve() for root in self.file_roots)
        return list(dict.fromkeys(roots))

    @property
    def max_download_bytes(self) -> int:
        """``max_download_mb`` in bytes."""
        return int(self.max_download_mb * 1024 * 1024)

    @property
    def max_output_bytes(self) -> int:
        """``max_output_mb`` in bytes."""
        return int(self.max_output_mb * 1024 * 1024)

    def for_development(self) -> WorkerSettings:
        """These settings for a worker on the developer's own machine (``tideflow dev``, the
        embedded worker of ``tideflow run --embedded``, the demo): private networks allowed
        unless the configuration says otherwise, and the project's ``examples`` folder readable
        (the README's and the demo's sample documents live there)."""
        update: dict[str, Any] = {}
        if "allow_private_networks" not in self.model_fields_set:
            update["allow_private_networks"] = True
        if EXAMPLES_FOLDER.is_dir() and EXAMPLES_FOLDER not in self.file_roots:
            update["file_roots"] = [*self.file_roots, EXAMPLES_FOLDER]
        return self.model_copy(update=update)

    @property
    def resolved_payload_store(self) -> str:
        """The payload store URI."""
        return self.payload_store or (self.home / "payloads").resolve().as_uri()

    def database_url(self, name: str) -> str | None:
        """The URL of a named connection; ``default_database`` always exists."""
        if name in self.databases:
            return self.databases[name]
        if name == "default_database":
            return f"sqlite:///{(self.home / 'tideflow.db').resolve()}"
        return None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerSettings:
        """Build settings from the optional YAML file, then the environment.

        Raises :class:`SettingsError` naming where each problem is (``FILE:LINE:COL`` in the
        file, or the environment variable)."""
        from activities import settings_file

        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("TIDEFLOW_HOME", ".tideflow"))
        explicit = env.get("TIDEFLOW_CONFIG")
        config_path = Path(explicit) if explicit else home / "worker.yaml"
        if explicit and not config_path.is_file():
            raise SettingsError([f"TIDEFLOW_CONFIG={explicit}: no such file"])
        source = settings_file.read(config_path) if config_path.is_file() else None
        data: dict[str, Any] = source.data if source else {}
        data.setdefault("home", str(home))
        if source:
            data["config_file"] = str(config_path)
        from_env = _apply_env(data, env)
        try:
            settings = cls.model_validate(data)
        except ValidationError as e:
            raise SettingsError(settings_file.problems(e, source, from_env)) from None
        if source:
            for index, extension in enumerate(settings.extensions):
                extension._where = source.where(("extensions", index, "name"))
        return settings


class SettingsError(ValueError):
    """Worker settings that do not fit: one line per problem (``FILE:LINE:COL: message``, or
    ``VARIABLE: message`` for the environment)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Put the environment's settings into ``data``; return which variable set which path."""
    origins: dict[tuple[str, ...], str] = {}
    simple = {
        "TIDEFLOW_TASK_QUEUE": ("task_queue",),
        "TIDEFLOW_PAYLOAD_THRESHOLD": ("payload_threshold",),
        "TIDEFLOW_HISTORY_INLINE_LIMIT": ("history_inline_limit",),
        "TIDEFLOW_PAYLOAD_STORE": ("payload_store",),
        "TIDEFLOW_FILE_ROOT": ("file_root",),
        "TIDEFLOW_ALLOW_PRIVATE_NETWORKS": ("allow_private_networks",),
        "TIDEFLOW_ALLOW_PRIVATE_NETWORKS_FOR_INLINE": ("allow_private_networks_for_inline",),
        "TIDEFLOW_MAX_DOWNLOAD_MB": ("max_download_mb",),
        "TIDEFLOW_MAX_OUTPUT_MB": ("max_output_mb",),
        "TIDEFLOW_REFERENCE_THRESHOLD": ("reference_threshold",),
        "OPENAI_BASE_URL": ("ai", "base_url"),
        "OPENAI_API_KEY": ("ai", "api_key"),
        "TIDEFLOW_AI_MODEL": ("ai", "model"),
        "TIDEFLOW_LOCAL_MODEL": ("ai", "local_model"),
        "TIDEFLOW_SMTP_HOST": ("smtp", "host"),
        "TIDEFLOW_SMTP_PORT": ("smtp", "port"),
        "TIDEFLOW_SMTP_USERNAME": ("smtp", "username"),
        "TIDEFLOW_SMTP_PASSWORD": ("smtp", "password"),
        "TIDEFLOW_SMTP_STARTTLS": ("smtp", "starttls"),
        "TIDEFLOW_SMTP_SSL": ("smtp", "ssl"),
        "TIDEFLOW_SMTP_SENDER": ("smtp", "sender"),
        "SLACK_WEBHOOK_URL": ("slack_webhook_url",),
        "TIDEFLOW_UI_URL": ("ui_url",),
        "TIDEFLOW_STORE_URL": ("store_url",),
        "TIDEFLOW_RECORD_METRICS": ("record_metrics",),
        "TIDEFLOW_API_URL": ("api_url",),
        "TIDEFLOW_TESSERACT_CMD": ("documents", "tesseract_cmd"),
        "TIDEFLOW_DOCUMENTS_FETCH_TIMEOUT": ("documents", "fetch_timeout_seconds"),
        "TIDEFLOW_METRICS_ADDRESS": ("monitoring", "address"),
        "TIDEFLOW_MAX_WORKFLOW_TASKS": ("max_concurrent_workflow_tasks",),
        "TIDEFLOW_WORKFLOW_SANDBOX": ("workflow_sandbox",),
    }
    for var, path in simple.items():
        if var in env:
            target = data
            for key in path[:-1]:
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                target = target[key]
            target[path[-1]] = env[var]
            origins[path] = var
    if env.get("TIDEFLOW_METRICS_ADDRESS"):
        data["monitoring"]["enabled"] = True
    for var, key in (
        ("TIDEFLOW_NODE_TYPES", "node_types"),
        ("TIDEFLOW_EXCLUDE_NODE_TYPES", "exclude_node_types"),
        ("TIDEFLOW_TASK_QUEUES", "task_queues"),
    ):
        if var in env:
            data[key] = [part.strip() for part in env[var].split(",") if part.strip()]
            origins[(key,)] = var
    if "TIDEFLOW_WORKFLOWS" in env:
        data["workflows"] = env["TIDEFLOW_WORKFLOWS"]
        origins[("workflows",)] = "TIDEFLOW_WORKFLOWS"
    if "TIDEFLOW_FILE_ROOTS" in env:
        data["file_roots"] = [part for part in env["TIDEFLOW_FILE_ROOTS"].split(os.pathsep) if part]
        origins[("file_roots",)] = "TIDEFLOW_FILE_ROOTS"
    # TIDEFLOW_DATABASE_<NAME>=url adds or replaces the named connection <name> (lower case).
    for var, value in env.items():
        if var.startswith("TIDEFLOW_DATABASE_"):
            name = var.removeprefix("TIDEFLOW_DATABASE_").lower()
            if not isinstance(data.get("databases"), dict):
                data["databases"] = {}
            data["databases"][name] = value
            origins[("databases", name)] = var
    return origins
