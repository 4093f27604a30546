"""Worker settings: where data lives, named connections, provider credentials.

Read once when the worker starts, from the environment and an optional YAML file
(``TIDEFLOW_CONFIG``, default ``<TIDEFLOW_HOME>/worker.yaml`` when it exists). Environment
variables win over the file. Node types get them through ``NodeContext.settings``.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import yaml
from pydantic import BaseModel, ConfigDict, Field

EXAMPLES_FOLDER = Path(__file__).resolve().parent.parent / "examples"
"""The project's examples (sample definitions and documents), readable by development workers."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelPrice(_Section):
    """USD per million tokens, for the cost line of AI nodes."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0


class AISettings(_Section):
    """The AI family: an OpenAI-compatible endpoint, or the embedded local model."""

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    """Default model for nodes that do not name one."""
    local_model: str = "qwen2.5-coder-0.5b"
    """The embedded model used when no endpoint is configured: a known name (``qwen2.5-coder-0.5b``,
    ``smollm2``) or a GGUF path. See docs/local-models.md for how they compare."""
    request_timeout_seconds: float = 120.0
    schema_repairs: int = 2
    """How many times a reply that does not fit the output schema is asked again."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)


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


class WorkerSettings(_Section):
    """Everything a worker and its node types are configured with."""

    home: Path = Path(".tideflow")
    """The data folder: SQLite files, payload store, caches, uploaded documents."""
    task_queue: str = "tideflow"
    payload_threshold: int = 256 * 1024
    """Values bigger than this many bytes travel as references to the payload store."""
    payload_store: str | None = None
    """``file:///folder`` or ``s3://bucket/prefix``; default ``<home>/payloads``."""
    file_root: Path | None = None
    """Root of relative ``file://`` URIs for storage nodes; default ``<home>/files``."""
    file_roots: list[Path] = Field(default_factory=list)
    """More folders nodes may read and write local files in (``TIDEFLOW_FILE_ROOTS``, separated
    by ``:``). Always allowed besides: the file root, ``<home>/uploads`` and, when the payload
    store is a folder, its ``uploads`` subfolder. See :meth:`allowed_file_roots`."""
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
        """Every task queue the worker polls: ``task_queue`` first."""
        return list(dict.fromkeys([self.task_queue, *self.task_queues]))

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
        """Build settings from the optional YAML file, then the environment."""
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("TIDEFLOW_HOME", ".tideflow"))
        config_path = Path(env.get("TIDEFLOW_CONFIG", home / "worker.yaml"))
        data: dict[str, Any] = {}
        if config_path.is_file():
            loaded = yaml.safe_load(config_path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{config_path}: worker config must be a mapping")
            data = loaded
        data.setdefault("home", str(home))
        _apply_env(data, env)
        return cls.model_validate(data)


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    simple = {
        "TIDEFLOW_TASK_QUEUE": ("task_queue",),
        "TIDEFLOW_PAYLOAD_THRESHOLD": ("payload_threshold",),
        "TIDEFLOW_PAYLOAD_STORE": ("payload_store",),
        "TIDEFLOW_FILE_ROOT": ("file_root",),
        "TIDEFLOW_ALLOW_PRIVATE_NETWORKS": ("allow_private_networks",),
        "TIDEFLOW_MAX_DOWNLOAD_MB": ("max_download_mb",),
        "TIDEFLOW_MAX_OUTPUT_MB": ("max_output_mb",),
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
        "TIDEFLOW_TESSERACT_CMD": ("documents", "tesseract_cmd"),
        "TIDEFLOW_DOCUMENTS_FETCH_TIMEOUT": ("documents", "fetch_timeout_seconds"),
    }
    for var, path in simple.items():
        if var in env:
            target = data
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = env[var]
    for var, key in (
        ("TIDEFLOW_NODE_TYPES", "node_types"),
        ("TIDEFLOW_EXCLUDE_NODE_TYPES", "exclude_node_types"),
        ("TIDEFLOW_TASK_QUEUES", "task_queues"),
    ):
        if var in env:
            data[key] = [part.strip() for part in env[var].split(",") if part.strip()]
    if "TIDEFLOW_WORKFLOWS" in env:
        data["workflows"] = env["TIDEFLOW_WORKFLOWS"]
    if "TIDEFLOW_FILE_ROOTS" in env:
        data["file_roots"] = [part for part in env["TIDEFLOW_FILE_ROOTS"].split(os.pathsep) if part]
    # TIDEFLOW_DATABASE_<NAME>=url adds or replaces the named connection <name> (lower case).
    for var, value in env.items():
        if var.startswith("TIDEFLOW_DATABASE_"):
            data.setdefault("databases", {})[var.removeprefix("TIDEFLOW_DATABASE_").lower()] = value
