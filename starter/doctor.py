"""``tideflow doctor``: checks a deployment end to end and says how to fix what is wrong.

Each check answers ``ok``, ``warn`` (works, but look), ``fail`` (something will not work, with
a fix) or ``skip`` (not used here, or not checkable because an earlier check failed):

- the Temporal connection, the namespace and its retention, Tideflow's search attributes;
- a worker polling every task queue the deployed or watched definitions use (runs on the main
  queue, node pools for nodes with ``task_queue:``), naming the definitions and versions;
- the model endpoint, or the local model files, when a definition has AI nodes;
- every configured database, S3 bucket, the payload store and the control-plane store;
- the start outbox's backlog against its bounds;
- encryption keys where payloads need them;
- this machine's clock against the server's.

``GET /health`` of the API runs the same checks and answers them in short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities import WorkerSettings, registry
from interpreter import Definition
from interpreter.model import DocumentUploadTrigger
from interpreter.plan import compile_plan, plans
from starter._catalog import Catalog

Status = Literal["ok", "warn", "fail", "skip"]

TIMEOUT = 5.0
"""Seconds any one check may take."""

MAX_CLOCK_SKEW = 2.0
"""Seconds of clock difference with the server past which ``clock`` fails."""

CLOCK_PROBE_QUEUE = "tideflow-doctor"
"""The task queue of the clock probe (a workflow nobody runs, terminated at once)."""


@dataclass(frozen=True)
class Check:
    """One check's verdict."""

    name: str
    status: Status
    detail: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        """Whether something is wrong."""
        return self.status == "fail"

    def short(self) -> str:
        """``ok``, ``skip``, or the status and detail (what ``/health`` shows)."""
        return self.status if self.status in ("ok", "skip") else f"{self.status}: {self.detail}"


@dataclass
class Report:
    """Every check, in order."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed."""
        return not any(check.failed for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        """``tideflow doctor --json``."""
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def table(self) -> str:
        """The checks as a table, each failure followed by its fix."""
        width = max([len(c.name) for c in self.checks] + [5])
        lines = [f"{'check':<{width}}  {'status':<6}  detail"]
        for check in self.checks:
            status = check.status.upper() if check.failed else check.status
            lines.append(f"{check.name:<{width}}  {status:<6}  {check.detail}")
            if check.fix and check.status in ("fail", "warn"):
                lines.append(f"{'':<{width}}  {'':<6}  fix: {check.fix}")
        verdict = "healthy" if self.ok else f"{sum(c.failed for c in self.checks)} problem(s)"
        lines.append(verdict)
        return "\n".join(lines)


@dataclass
class Subject:
    """What is checked: the settings, the definitions in use, and how to reach Temporal."""

    settings: WorkerSettings
    definitions: list[Definition] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    """Folders or S3 prefixes document triggers watch."""
    address: str | None = None
    namespace: str | None = None
    client: Any = None
    """A connected :class:`~starter.client.TideflowClient` to use (else one is connected)."""
    outbox: Any = None
    """The :class:`~starter.outbox.Outbox` to measure (else the store's)."""


def subject_of(settings: WorkerSettings, catalog: Catalog | None, **options: Any) -> Subject:
    """The subject of a definitions folder: its valid definitions and watched paths."""
    definitions: list[Definition] = []
    watched: list[str] = []
    if catalog is not None:
        for entry in catalog.valid():
            assert entry.definition is not None
            definitions.append(entry.definition)
            for trigger in entry.definition.triggers:
                if isinstance(trigger, DocumentUploadTrigger) and trigger.path:
                    watched.append(trigger.path)
    return Subject(settings, definitions, watched, **options)


async def diagnose(subject: Subject, *, clock: bool = True) -> Report:
    """Run every check (``clock``: also the clock probe, which starts and terminates a
    workflow on the server)."""
    report = Report()
    settings = subject.settings
    client, connection = await _connect(subject)
    report.checks.append(connection)
    temporal_checks: list[Callable[[], Awaitable[list[Check]]]] = [
        lambda: _namespace(client),
        lambda: _search_attributes(client),
        lambda: _workers(client, subject),
    ]
    if clock:
        temporal_checks.append(lambda: _clock(client))
    names = ["namespace", "search attributes", "workers", "clock"]
    for name, check in zip(names, temporal_checks, strict=False):
        if client is None:
            report.checks.append(Check(name, "skip", "Temporal is unreachable"))
            continue
        report.checks.extend(await _bounded(name, check))
    local = [
        ("model", lambda: _model(subject)),
        ("databases", lambda: _databases(settings)),
        ("s3", lambda: _buckets(subject)),
        ("payload store", lambda: _payload_store(settings)),
        ("store", lambda: _store(settings)),
        ("outbox", lambda: _outbox(subject)),
        ("encryption", lambda: _encryption(settings)),
    ]
    results = await asyncio.gather(*(_bounded(name, check) for name, check in local))
    for checks in results:
        report.checks.extend(checks)
    order = {name: index for index, name in enumerate(_ORDER)}
    report.checks.sort(key=lambda c: order.get(c.name.split(" ")[0], len(order)))
    return report


_ORDER = (
    "temporal",
    "namespace",
    "search",
    "worker",
    "workers",
    "model",
    "database",
    "databases",
    "s3",
    "payload",
    "store",
    "outbox",
    "encryption",
    "clock",
)


async def _bounded(name: str, check: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    try:
        return await asyncio.wait_for(check(), TIMEOUT * 2)
    except TimeoutError:
        return [Check(name, "fail", f"no answer within {TIMEOUT * 2:g} s", _TIMEOUT_FIX)]
    except Exception as e:
        return [Check(name, "fail", _reason(e))]


_TIMEOUT_FIX = "check that the service is up and reachable from this machine"


# -- Temporal --------------------------------------------------------------------------------


async def _connect(subject: Subject) -> tuple[Any, Check]:
    from starter.client import DEFAULT_ADDRESS, TideflowClient

    address = subject.address or os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS)
    fix = f"start the server (`tideflow server`), or point TEMPORAL_ADDRESS at it (now {address})"
    client = subject.client
    try:
        if client is None:
            client = await asyncio.wait_for(
                TideflowClient.connect(address, subject.namespace, settings=subject.settings),
                TIMEOUT,
            )
        await client.temporal.service_client.check_health(timeout=timedelta(seconds=TIMEOUT))
    except Exception as e:
        from starter.cli.errors import connect_failure

        reason = connect_failure(e, address).split(" (start one with")[0]
        return None, Check("temporal", "fail", reason, fix)
    return client, Check("temporal", "ok", f"{address}, namespace {client.namespace}")


async def _namespace(client: Any) -> list[Check]:
    try:
        described = await client.temporal.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace)
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            fix = (
                f"create it: `temporal operator namespace create --namespace {client.namespace}`"
                " or set TEMPORAL_NAMESPACE"
            )
            return [Check("namespace", "fail", f"{client.namespace!r} does not exist", fix)]
        raise
    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    days = retention.total_seconds() / 86400
    detail = f"{client.namespace}, retention {days:g} day(s)"
    if retention.total_seconds() and days < 1:
        fix = (
            "keep closed runs at least a day: `temporal operator namespace update "
            f"--namespace {client.namespace} --retention 72h`"
        )
        return [
            Check(
                "namespace",
                "warn",
                f"{detail}: closed runs (and idempotency keys) are forgotten soon",
                fix,
            )
        ]
    return [Check("namespace", "ok", detail)]


async def _search_attributes(client: Any) -> list[Check]:
    from starter.server import SEARCH_ATTRIBUTES

    listed = await client.temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = set(listed.custom_attributes) | set(listed.system_attributes)
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in known]
    if not missing:
        names = ", ".join(key.name for key in SEARCH_ATTRIBUTES)
        return [Check("search attributes", "ok", names)]
    commands = "; ".join(
        f"temporal operator search-attribute create --namespace {client.namespace} "
        f"--name {name} --type Keyword"
        for name in missing
    )
    return [
        Check(
            "search attributes",
            "fail",
            f"missing in {client.namespace!r}: {', '.join(missing)} (runs would stall)",
            f"start a worker (it registers them) or run: {commands}",
        )
    ]


@dataclass
class _Queue:
    name: str
    kind: Literal["runs", "node pool"]
    users: set[str] = field(default_factory=set)


def task_queues(settings: WorkerSettings, definitions: Iterable[Definition]) -> list[_Queue]:
    """The task queues in use: the main one (runs) and every node pool, with who uses them."""
    queues: dict[str, _Queue] = {settings.task_queue: _Queue(settings.task_queue, "runs")}
    for definition in definitions:
        user = f"{definition.slug} {definition.display_version}".strip()
        queues[settings.task_queue].users.add(user)
        plan = plans.get(compile_plan(definition))
        for node in plan.nodes.values():
            if node.task_queue and node.task_queue != settings.task_queue:
                queue = queues.setdefault(node.task_queue, _Queue(node.task_queue, "node pool"))
                queue.users.add(user)
    return list(queues.values())


async def _workers(client: Any, subject: Subject) -> list[Check]:
    checks = []
    for queue in task_queues(subject.settings, subject.definitions):
        kind = (
            TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
            if queue.kind == "runs"
            else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        )
        described = await client.temporal.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue.name),
                task_queue_type=kind,
            )
        )
        users = ", ".join(sorted(queue.users)) or "no definition yet"
        pollers = [poller.identity for poller in described.pollers]
        name = f"worker {queue.name}"
        if pollers:
            shown = ", ".join(sorted(pollers)[:3]) + (" …" if len(pollers) > 3 else "")
            checks.append(Check(name, "ok", f"{queue.kind}: {shown}; used by {users}"))
            continue
        if queue.kind == "runs":
            fix = f"start a worker: `TIDEFLOW_TASK_QUEUE={queue.name} tideflow worker`"
        else:
            fix = (
                f"start a worker serving the pool: `pools: {{{queue.name}: {{}}}}` in its "
                "configuration (TIDEFLOW_CONFIG), then `tideflow worker`"
            )
        checks.append(
            Check(name, "fail", f"no worker polls this {queue.kind} queue (used by {users})", fix)
        )
    return checks


async def _clock(client: Any) -> list[Check]:
    """Start a workflow nobody runs and compare its start time (the server's clock) with the
    middle of the request on this machine's clock; terminate it at once."""
    probe = f"tideflow-doctor-clock-{uuid.uuid4().hex[:8]}"
    before = time.time()
    handle = await client.temporal.start_workflow(
        "TideflowDoctorClock",
        id=probe,
        task_queue=CLOCK_PROBE_QUEUE,
        execution_timeout=timedelta(minutes=1),
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
    )
    after = time.time()
    try:
        described = await handle.describe()
    finally:
        with contextlib.suppress(RPCError):
            await handle.terminate("tideflow doctor: clock probe")
    skew = described.start_time.timestamp() - (before + after) / 2
    margin = (after - before) / 2
    detail = f"{skew:+.2f} s against the server (± {margin:.2f} s)"
    if abs(skew) - margin > MAX_CLOCK_SKEW:
        fix = "synchronise this machine's clock (chrony, systemd-timesyncd or ntpd)"
        return [Check("clock", "fail", detail, fix)]
    return [Check("clock", "ok", detail)]


# -- what nodes use ----------------------------------------------------------------------------


def _uses_ai(definitions: Iterable[Definition]) -> list[str]:
    users = []
    for definition in definitions:
        for node in definition.graph():
            canonical = registry.canonical(node.type) or node.type
            if canonical.startswith("ai."):
                users.append(definition.slug)
                break
    return users


async def _model(subject: Subject) -> list[Check]:
    users = _uses_ai(subject.definitions)
    if not users:
        return [Check("model", "skip", "no definition has AI nodes")]
    ai = subject.settings.ai
    if ai.base_url:
        return [await _endpoint(ai.base_url, ai.api_key)]
    return [await asyncio.to_thread(_local_model, subject.settings)]


async def _endpoint(base_url: str, api_key: str | None) -> Check:
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    fix = "check OPENAI_BASE_URL (ai.base_url) and OPENAI_API_KEY, and that the endpoint is up"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.get(url, headers=headers)
    except httpx.HTTPError as e:
        return Check("model", "fail", f"{base_url}: {_reason(e) or type(e).__name__}", fix)
    if response.status_code in (401, 403):
        return Check("model", "fail", f"{base_url}: the API key is refused", fix)
    if response.status_code >= 400:
        return Check(
            "model", "fail", f"{base_url}: GET /models answered {response.status_code}", fix
        )
    return Check("model", "ok", f"endpoint {base_url}")


def _local_model(settings: WorkerSettings) -> Check:
    from activities._models import LOCAL_PREFIX, TASK_DEFAULTS, _local_problem

    ai = settings.ai
    # One model for every task (TIDEFLOW_LOCAL_MODEL), or each task's default local model.
    if ai.local_model is not None:
        names = [ai.local_model]
    else:
        chosen = dict(TASK_DEFAULTS)
        for task, model in ai.task_models.items():
            chosen[task] = model
        names = sorted(
            {n.removeprefix(LOCAL_PREFIX) for n in chosen.values() if n.startswith(LOCAL_PREFIX)}
        )
    for name in names:
        problem = _local_problem(name)
        if problem:
            fix = (
                "set TIDEFLOW_LOCAL_MODEL to a known model or a GGUF file, or configure an endpoint"
                if "not installed" not in problem
                else "install it (or set OPENAI_BASE_URL to an endpoint)"
            )
            return Check("model", "fail", problem, fix)
    return Check(
        "model", "ok", "local " + ("model " if len(names) == 1 else "models ") + ", ".join(names)
    )


# -- data --------------------------------------------------------------------------------------


async def _databases(settings: WorkerSettings) -> list[Check]:
    names = sorted({*settings.databases, "default_database"})
    checks = await asyncio.gather(*(_database(settings, name) for name in names))
    return list(checks)


async def _database(settings: WorkerSettings, name: str) -> Check:
    from sqlalchemy.engine import make_url

    url = settings.database_url(name) or ""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = "(unparsable URL)"
    fix = f"check TIDEFLOW_DATABASE_{name.upper()} (databases.{name}) and that the server is up"
    local = _sqlite_file(url)
    if local is not None and not local.exists():
        folder = next((p for p in local.parents if p.exists()), None)
        if folder is not None and os.access(folder, os.W_OK):
            return Check(f"database {name}", "ok", f"{shown} (created on first use)")
        return Check(f"database {name}", "fail", f"{shown}: {local.parent} is not writable", fix)
    try:
        await asyncio.wait_for(asyncio.to_thread(_select_one, url), TIMEOUT)
    except TimeoutError:
        return Check(f"database {name}", "fail", f"{shown}: no answer within {TIMEOUT:g} s", fix)
    except Exception as e:
        return Check(f"database {name}", "fail", f"{shown}: {_reason(e)}", fix)
    return Check(f"database {name}", "ok", shown)


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


def _select_one(url: str) -> None:
    from sqlalchemy import create_engine, text

    connect_args: dict[str, Any] = {}
    if url.startswith(("postgresql", "mysql")):
        connect_args["connect_timeout"] = int(TIMEOUT)
    engine = create_engine(url, connect_args=connect_args, poolclass=_null_pool())
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


async def _buckets(subject: Subject) -> list[Check]:
    buckets: dict[str, set[str]] = {}
    store = subject.settings.resolved_payload_store
    if store.startswith("s3://"):
        buckets.setdefault(urlsplit(store).netloc, set()).add("payload store")
    for path in subject.watched:
        if path.startswith("s3://"):
            buckets.setdefault(urlsplit(path).netloc, set()).add(f"watched {path}")
    if not buckets:
        return [Check("s3", "skip", "no S3 bucket configured")]
    checks = await asyncio.gather(*(_bucket(name, users) for name, users in buckets.items()))
    return list(checks)


async def _bucket(name: str, users: set[str]) -> Check:
    from activities.files import new_s3_client

    def head() -> None:
        new_s3_client(read_timeout=TIMEOUT).head_bucket(Bucket=name)

    fix = "check the bucket exists and AWS_* credentials (or AWS_ENDPOINT_URL) allow it"
    used = ", ".join(sorted(users))
    try:
        await asyncio.wait_for(asyncio.to_thread(head), TIMEOUT * 1.5)
    except Exception as e:
        return Check(f"s3 {name}", "fail", f"{_reason(e)} (used by {used})", fix)
    return Check(f"s3 {name}", "ok", f"used by {used}")


async def _payload_store(settings: WorkerSettings) -> list[Check]:
    store = settings.resolved_payload_store
    parts = urlsplit(store)
    fix = "fix TIDEFLOW_PAYLOAD_STORE (payload_store) or the rights on it"
    if parts.scheme == "file":
        folder = Path(url2pathname(unquote(parts.path)))

        def probe() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f".tideflow-doctor-{secrets.token_hex(4)}"
            path.write_bytes(b"probe")
            try:
                if path.read_bytes() != b"probe":
                    raise OSError("what was written reads back differently")
            finally:
                path.unlink(missing_ok=True)

        try:
            await asyncio.to_thread(probe)
        except OSError as e:
            return [Check("payload store", "fail", f"{store}: {_reason(e)}", fix)]
        return [Check("payload store", "ok", f"{store} (written and read back)")]
    if parts.scheme == "s3":
        from activities.files import new_s3_client

        key = parts.path.strip("/")
        key = f"{key}/.tideflow-doctor" if key else ".tideflow-doctor"

        def s3_probe() -> None:
            s3 = new_s3_client(read_timeout=TIMEOUT)
            s3.put_object(Bucket=parts.netloc, Key=key, Body=b"probe")
            s3.get_object(Bucket=parts.netloc, Key=key)["Body"].read()
            s3.delete_object(Bucket=parts.netloc, Key=key)

        try:
            await asyncio.wait_for(asyncio.to_thread(s3_probe), TIMEOUT * 1.5)
        except Exception as e:
            return [Check("payload store", "fail", f"{store}: {_reason(e)}", fix)]
        return [Check("payload store", "ok", f"{store} (written and read back)")]
    return [Check("payload store", "fail", f"{store}: not a file:// or s3:// URI", fix)]


async def _store(settings: WorkerSettings) -> list[Check]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from starter.store import open_store, store_url

    url = store_url(home=settings.home)
    shown = make_url(url).render_as_string(hide_password=True)
    fix = "fix TIDEFLOW_STORE_URL (or the rights on TIDEFLOW_HOME) and that the server is up"

    def probe() -> None:
        with open_store(url).connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(probe), TIMEOUT)
    except Exception as e:
        return [Check("store", "fail", f"{shown}: {_reason(e) or 'no answer'}", fix)]
    return [Check("store", "ok", shown)]


async def _outbox(subject: Subject) -> list[Check]:
    from starter.outbox import Outbox, backlog_state

    def measure() -> Any:
        outbox = subject.outbox or Outbox.of(subject.settings)
        return backlog_state(outbox, subject.settings)

    state = await asyncio.wait_for(asyncio.to_thread(measure), TIMEOUT)
    if state.ok:
        return [Check("outbox", "ok", state.summary())]
    fix = (
        "make Temporal reachable: the API delivers them in order (`tideflow outbox` lists them, "
        "`tideflow outbox deliver` delivers them now)"
    )
    return [Check("outbox", "fail", state.summary(), fix)]


async def _encryption(settings: WorkerSettings) -> list[Check]:
    """The keys of ``TIDEFLOW_ENCRYPTION_KEYS`` parse and round-trip a payload (never shown)."""
    from temporalio.api.common.v1 import Payload

    from activities.encryption import KEYS_VARIABLE, EncryptionCodec, EncryptionKeys

    del settings  # the keys live in the environment only, never in a configuration file
    try:
        keys = EncryptionKeys.from_env()
    except ValueError as e:
        return [Check("encryption", "fail", str(e))]
    if keys is None:
        return [Check("encryption", "skip", f"payloads are not encrypted ({KEYS_VARIABLE} unset)")]
    probe = Payload(metadata={"encoding": b"json/plain"}, data=secrets.token_bytes(32))
    codec = EncryptionCodec(keys, workflow_id="tideflow-doctor")
    try:
        (back,) = await codec.decode(await codec.encode([probe]))
    except Exception as e:
        return [Check("encryption", "fail", f"a payload does not round-trip: {_reason(e)}")]
    if back.data != probe.data:
        return [Check("encryption", "fail", "a payload does not round-trip")]
    return [
        Check(
            "encryption",
            "ok",
            f"{len(keys.keys)} key(s); new payloads use key {keys.current!r} (AES-256-GCM); "
            "the Web UI needs the codec server (tideflow codec-server) to show them",
        )
    ]


def _reason(error: BaseException) -> str:
    detail = getattr(error, "detail", None) or getattr(error, "message", None)
    text = str(detail or error or type(error).__name__)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
