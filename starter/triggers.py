"""Triggers (DSL.md section 4): what starts runs besides a person.

- ``schedule`` triggers become Temporal Schedules named ``tideflow-<slug>-<index>``, created,
  updated and deleted to match the definitions folder (:func:`sync_schedules`).
- ``document_upload`` triggers with a ``path`` watch a folder or an ``s3://bucket/prefix``
  (:class:`DocumentWatcher`): each new file matching the filter starts exactly one run, also
  across restarts, because the workflow id is derived from the file and Temporal refuses a
  second start of the same id.
- ``event`` triggers start a run for each emitted event of their name
  (:func:`start_runs_for_event`, called by ``tideflow emit`` and ``POST /events/{name}``).

:class:`TriggerRunner` drives the first two in a loop; ``tideflow api`` runs it in the background
and ``tideflow triggers`` runs it alone. docs/api.md describes the semantics for users.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import mimetypes
import os
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import WorkerSettings
from activities.files import new_s3_client, s3_call
from interpreter import Definition, Problem
from interpreter.inputs import InputError
from interpreter.loader import read_yaml
from interpreter.model import (
    DocumentUploadTrigger,
    EventTrigger,
    ScheduleTrigger,
    TriggerFilter,
)
from interpreter.workflow import WORKFLOW_NAME
from starter import client as tideflow
from starter._catalog import Catalog, Entry
from starter.client import TideflowClient
from starter.client.definitions import plain_payload

log = logging.getLogger("tideflow.triggers")

SCHEDULE_PREFIX = "tideflow-"
"""Schedules whose id starts with this are Tideflow's: synced, and deleted when their trigger is
gone. Other schedules of the namespace are never touched."""

MEMO_KEY = "tideflow"
"""Memo of scheduled runs: which definition and trigger started them, and the fingerprint that
tells :func:`sync_schedules` whether a schedule is up to date."""

EVENT_INPUT = "event"
"""The input an event-started run receives the event's payload in."""

SCHEDULE_CATCHUP = timedelta(minutes=1)
"""A firing missed by more than this (server down) is skipped, as cron would."""


# --- filters ---------------------------------------------------------------------------------


def guess_mime(name: str, declared: str | None = None) -> str:
    """The MIME type of a file: from its name, else the type a client declared, else
    ``application/octet-stream``."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed:
        return guessed
    if declared and declared.split(";")[0].strip() not in ("", "application/octet-stream"):
        return declared.split(";")[0].strip().lower()
    return "application/octet-stream"


def matches_filter(spec: TriggerFilter, relative: str, mime: str) -> bool:
    """Whether a document passes a trigger's filter.

    ``mime_types`` entries may use wildcards (``image/*``); ``glob`` is matched against the
    path relative to the watched folder from the right, so ``*.pdf`` matches at any depth and
    ``invoices/*.pdf`` only inside an ``invoices`` folder. An empty filter accepts everything.
    """
    if spec.mime_types and not any(
        fnmatch.fnmatch(mime.lower(), pattern.lower()) for pattern in spec.mime_types
    ):
        return False
    return not spec.glob or PurePosixPath(relative).match(spec.glob)


def describe_filter(spec: TriggerFilter) -> str:
    """The filter in words, for error messages."""
    parts = []
    if spec.mime_types:
        parts.append("MIME type " + " or ".join(spec.mime_types))
    if spec.glob:
        parts.append(f"name matching {spec.glob!r}")
    return " and ".join(parts) or "any document"


# --- checking what the language cannot ---------------------------------------------------------


def check_triggers(path: Path, definition: Definition) -> dict[int, list[Problem]]:
    """Problems of single triggers that depend on this machine, located in the file: an unknown
    time zone. A trigger with problems stays inactive; the definition still runs. (Whether a
    trigger's inputs fit the definition is checked when the definition is validated.)"""
    found: dict[int, list[str]] = {}
    for index, trigger in enumerate(definition.triggers):
        if isinstance(trigger, ScheduleTrigger) and trigger.timezone:
            try:
                zoneinfo.ZoneInfo(trigger.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                found[index] = [f"unknown time zone {trigger.timezone!r}"]
    if not found:
        return {}
    document = read_yaml(path)
    return {
        index: [
            document.problem(("triggers", index), f"{definition.triggers[index].type} trigger: {m}")
            for m in messages
        ]
        for index, messages in found.items()
    }


# --- starting runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartedRun:
    """A run a trigger started, or found already started (``new`` False)."""

    definition: str
    workflow_id: str
    run_id: str | None
    new: bool = True
    source: str = ""
    """What started it: a file's path or URI, ``event:<name>``."""


async def _start_once(
    client: TideflowClient,
    definition: Definition,
    inputs: dict[str, Any],
    *,
    workflow_id: str,
    task_queue: str,
    source: str,
) -> StartedRun:
    """Start a run under a derived workflow id, at most once: a second start of the same id is
    refused by Temporal (also once the first run has closed) and reported with ``new`` False.
    Raises InputError before anything starts."""
    try:
        run = await client.start(
            definition,
            inputs,
            workflow_id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        return StartedRun(definition.slug, workflow_id, None, new=False, source=source)
    return StartedRun(definition.slug, run.id, run.run_id, source=source)


def _digest(*parts: str, length: int = 20) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefusedStart:
    """A definition whose event trigger matched but whose run could not start."""

    definition: str
    problems: list[str]


@dataclass(frozen=True)
class EventStarts:
    """What an event started: new runs, and definitions that refused it."""

    started: list[StartedRun] = field(default_factory=list)
    refused: list[RefusedStart] = field(default_factory=list)


def event_inputs(trigger: EventTrigger, payload: Any) -> dict[str, Any]:
    """The inputs of an event-started run: the trigger's ``inputs`` plus ``event`` = the payload
    (left out when the event has no payload, so the input's default applies)."""
    inputs = dict(trigger.inputs)
    if payload is not None:
        inputs[EVENT_INPUT] = payload
    return inputs


async def start_runs_for_event(
    client: TideflowClient,
    catalog: Catalog,
    name: str,
    payload: Any = None,
    *,
    task_queue: str | None = None,
    key: str | None = None,
) -> EventStarts:
    """Start a run of every valid definition with an ``event`` trigger named ``name``.

    With ``key`` (an event id), the workflow ids are derived from it, so emitting the same
    event twice starts each run once. A definition whose inputs refuse the payload is reported
    in ``refused``; it does not stop the others.
    """
    queue = task_queue or client.task_queue
    out = EventStarts()
    for entry in catalog.valid():
        definition = entry.definition
        assert definition is not None
        for index, trigger in enumerate(definition.triggers):
            if not isinstance(trigger, EventTrigger) or trigger.name != name:
                continue
            if index in entry.trigger_problems:
                problems = [str(p) for p in entry.trigger_problems[index]]
                out.refused.append(RefusedStart(entry.slug, problems))
                continue
            inputs = event_inputs(trigger, payload)
            try:
                if key is None:
                    handle = await client.start(definition, inputs, task_queue=queue)
                    run = StartedRun(entry.slug, handle.id, handle.run_id, source=f"event:{name}")
                else:
                    run = await _start_once(
                        client,
                        definition,
                        inputs,
                        workflow_id=f"{entry.slug}-event-{_digest(name, key, str(index))}",
                        task_queue=queue,
                        source=f"event:{name}",
                    )
            except InputError as e:
                out.refused.append(RefusedStart(entry.slug, list(e.problems)))
                continue
            out.started.append(run)
    return out


# --- schedules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleChange:
    """What :func:`sync_schedules` did to one schedule."""

    schedule_id: str
    action: Literal["created", "updated", "unchanged", "deleted", "kept", "failed"]
    definition: str
    detail: str = ""


def schedule_id(slug: str, index: int) -> str:
    """``tideflow-<slug>-<index>``: the schedule of the index-th trigger of a definition."""
    return f"{SCHEDULE_PREFIX}{slug}-{index}"


def _schedule_slug(sid: str) -> str | None:
    rest = sid.removeprefix(SCHEDULE_PREFIX)
    slug, sep, index = rest.rpartition("-")
    return slug if sep and index.isdigit() else None


def build_schedule(
    definition: Definition, index: int, trigger: ScheduleTrigger, *, task_queue: str
) -> tuple[Schedule, str]:
    """The Temporal Schedule of a schedule trigger, and its fingerprint.

    Scheduled runs get the workflow id ``<slug>-scheduled`` (Temporal appends the firing time),
    the same search attributes as any run, and a memo naming the trigger.
    """
    run_input = tideflow.run_input(definition, trigger.inputs, origin="schedule")
    fingerprint = _digest(
        json.dumps(
            {
                "format": 2,
                "plan": run_input.plan,
                "inputs": run_input.inputs,
                "cron": trigger.cron,
                "every": trigger.every,
                "timezone": trigger.timezone,
                "task_queue": task_queue,
            },
            sort_keys=True,
            default=str,
        ),
        length=32,
    )
    if trigger.cron is not None:
        spec = ScheduleSpec(cron_expressions=[trigger.cron], time_zone_name=trigger.timezone)
    else:
        assert trigger.every is not None
        spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=trigger.every))],
            time_zone_name=trigger.timezone,
        )
    action = ScheduleActionStartWorkflow(
        WORKFLOW_NAME,
        run_input,
        id=f"{definition.slug}-scheduled",
        task_queue=task_queue,
        typed_search_attributes=tideflow.search_attributes(definition),
        memo={
            MEMO_KEY: {
                "definition": definition.slug,
                "trigger": index,
                "fingerprint": fingerprint,
            }
        },
        # Pre-encoded: readable in the Web UI when payloads are encrypted.
        static_summary=cast(
            str,
            plain_payload(
                f"{definition.display_name} {definition.display_version} (schedule)".replace(
                    "  ", " "
                )
            ),
        ),
    )
    schedule = Schedule(
        action=action,
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=SCHEDULE_CATCHUP),
        state=ScheduleState(note=f"managed by tideflow ({definition.slug}, trigger {index})"),
    )
    return schedule, fingerprint


def _describe(trigger: ScheduleTrigger) -> str:
    when = f"cron {trigger.cron!r}" if trigger.cron is not None else f"every {trigger.every:g}s"
    return f"{when} {trigger.timezone}" if trigger.timezone else when


async def _current_fingerprint(client: TideflowClient, description: Any) -> str | None:
    action = description.schedule.action
    memo = getattr(action, "memo", None) or {}
    raw = memo.get(MEMO_KEY)
    if raw is None:
        return None
    try:
        decoded = (
            (await client.temporal.data_converter.decode([raw]))[0] if hasattr(raw, "data") else raw
        )
    except Exception:  # a memo not written by us: treat as out of date
        return None
    return decoded.get("fingerprint") if isinstance(decoded, dict) else None


async def _ensure_schedule(
    client: TideflowClient, sid: str, schedule: Schedule, fingerprint: str
) -> Literal["created", "updated", "unchanged"]:
    handle = client.temporal.get_schedule_handle(sid)
    try:
        description = await handle.describe()
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            await client.temporal.create_schedule(sid, schedule)
            return "created"
        except ScheduleAlreadyRunningError:  # created meanwhile by another process: update it
            description = await handle.describe()
    if await _current_fingerprint(client, description) == fingerprint:
        return "unchanged"

    def updater(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep the schedule's state: an operator may have paused it in the Web UI.
        state = current.description.schedule.state
        return ScheduleUpdate(
            schedule=Schedule(
                action=schedule.action, spec=schedule.spec, policy=schedule.policy, state=state
            )
        )

    await handle.update(updater)
    return "updated"


async def sync_schedules(
    client: TideflowClient, catalog: Catalog, *, task_queue: str | None = None
) -> list[ScheduleChange]:
    """Make the namespace's ``tideflow-`` schedules match the schedule triggers of the folder.

    Idempotent: a schedule whose fingerprint (definition, inputs, spec, task queue) has not
    changed is left alone. Schedules of files that do not validate right now, and of triggers
    with problems, are kept as they are until the file is fixed; schedules whose definition or
    trigger is gone are deleted.
    """
    queue = task_queue or client.task_queue
    changes: list[ScheduleChange] = []
    wanted: set[str] = set()
    protected_slugs: set[str] = set()
    for entry in catalog.entries():
        if not entry.valid:
            protected_slugs.add(entry.slug)
            continue
        definition = entry.definition
        assert definition is not None
        for index, trigger in enumerate(definition.triggers):
            if not isinstance(trigger, ScheduleTrigger):
                continue
            sid = schedule_id(entry.slug, index)
            wanted.add(sid)
            if index in entry.trigger_problems:
                detail = "; ".join(str(p) for p in entry.trigger_problems[index])
                changes.append(ScheduleChange(sid, "kept", entry.slug, detail))
                continue
            schedule, fingerprint = build_schedule(definition, index, trigger, task_queue=queue)
            try:
                action = await _ensure_schedule(client, sid, schedule, fingerprint)
            except RPCError as e:
                if e.status != RPCStatusCode.INVALID_ARGUMENT:
                    raise
                # The server refused the spec (a cron it cannot parse): retrying cannot help.
                changes.append(ScheduleChange(sid, "failed", entry.slug, e.message))
                continue
            changes.append(ScheduleChange(sid, action, entry.slug, _describe(trigger)))
    async for listed in await client.temporal.list_schedules():
        sid = listed.id
        if not sid.startswith(SCHEDULE_PREFIX) or sid in wanted:
            continue
        slug = _schedule_slug(sid) or ""
        if slug in protected_slugs:
            changes.append(ScheduleChange(sid, "kept", slug, "its definition file is invalid"))
            continue
        try:
            await client.temporal.get_schedule_handle(sid).delete()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:  # already gone (the listing lags behind)
                continue
            raise
        changes.append(ScheduleChange(sid, "deleted", slug, "trigger or definition gone"))
    return changes


# --- watched folders and S3 prefixes ------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    location: str
    """What the run gets: an absolute path or an ``s3://`` URI."""
    relative: str
    """The path below the watched folder or prefix (for the glob)."""
    version: str
    """Size and modification time, or the S3 ETag: a changed file is a new document."""
    modified: float | None
    """Modification time (local files), for the "still being written" check."""


class _Ledger:
    """Workflow ids of documents already started, kept in ``<home>/triggers/started.txt``.

    Saves a start request per file after a restart, and keeps a file from starting again once
    Temporal has forgotten its run (namespace retention). Temporal's refusal of a duplicate id
    stays the guarantee; this is the fast path.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ids: set[str] | None = None

    def _load(self) -> set[str]:
        if self._ids is None:
            self._ids = set()
            if self.path is not None and self.path.is_file():
                self._ids.update(line.strip() for line in self.path.read_text().splitlines())
        return self._ids

    def __contains__(self, workflow_id: str) -> bool:
        return workflow_id in self._load()

    def add(self, workflow_id: str) -> None:
        ids = self._load()
        if workflow_id in ids:
            return
        ids.add(workflow_id)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(workflow_id + "\n")


def _local_folder(path: str, base: Path) -> Path:
    if path.startswith("file://"):
        return Path(unquote(urlsplit(path).path))
    folder = Path(path).expanduser()
    return folder if folder.is_absolute() else (base / folder)


def _list_local(folder: Path) -> list[_Found]:
    found: list[_Found] = []
    for root, dirs, files in os.walk(folder):
        # Hidden entries are skipped: editors and copy tools write partial files as .name.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith("~"):
                continue
            path = Path(root) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append(
                _Found(
                    location=str(path.resolve()),
                    relative=path.relative_to(folder).as_posix(),
                    version=f"{stat.st_size}:{stat.st_mtime_ns}",
                    modified=stat.st_mtime,
                )
            )
    return found


def _list_s3(s3: Any, uri: str) -> list[_Found]:
    parts = urlsplit(uri)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    found: list[_Found] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # a "folder" marker
            found.append(
                _Found(
                    location=f"s3://{bucket}/{key}",
                    relative=key[len(prefix) :].lstrip("/"),
                    version=f"{item.get('ETag', '').strip(chr(34))}:{item.get('Size', 0)}",
                    # S3 shows an object only once its upload is complete.
                    modified=None,
                )
            )
    return found


class DocumentWatcher:
    """Polls the folder or S3 prefix of one ``document_upload`` trigger."""

    def __init__(
        self,
        entry: Entry,
        index: int,
        trigger: DocumentUploadTrigger,
        *,
        ledger: _Ledger,
        settle_seconds: float = 1.0,
    ) -> None:
        assert entry.definition is not None and trigger.path
        self.entry = entry
        self.definition = entry.definition
        self.index = index
        self.trigger = trigger
        self.ledger = ledger
        self.settle_seconds = settle_seconds
        self.is_s3 = trigger.path.startswith("s3://")
        self.source = (
            trigger.path
            if self.is_s3
            else str(_local_folder(trigger.path, entry.file.parent).resolve())
        )
        self._observed: dict[str, str] = {}
        self._refused: set[str] = set()
        self._s3: Any = None
        self._warned = False

    def _list(self) -> list[_Found]:
        if self.is_s3:
            if self._s3 is None:
                self._s3 = new_s3_client()
            return s3_call(self.source, lambda: _list_s3(self._s3, self.source))
        folder = Path(self.source)
        if not folder.is_dir():
            if not self._warned:
                log.warning("%s: watched folder %s does not exist (yet)", self.entry.slug, folder)
                self._warned = True
            return []
        self._warned = False
        return _list_local(folder)

    def ready(self, found: list[_Found], now: float) -> list[_Found]:
        """The files not being written any more: unchanged since the last poll (when seen then)
        and, for local files, not modified within ``settle_seconds``."""
        out = []
        previous = self._observed
        self._observed = {f.location: f.version for f in found}
        for item in found:
            before = previous.get(item.location)
            if before is not None and before != item.version:
                continue  # it grew (or changed) since the last poll: still being written
            if item.modified is not None and now - item.modified < self.settle_seconds:
                continue
            out.append(item)
        return out

    def workflow_id(self, item: _Found) -> str:
        """``<slug>-doc-<hash of location and version>``: the idempotency key of a document."""
        return f"{self.entry.slug}-doc-{_digest(item.location, item.version)}"

    async def poll(self, client: TideflowClient, task_queue: str) -> list[StartedRun]:
        """Start a run for each new, complete file that passes the filter."""
        found = await asyncio.to_thread(self._list)
        started: list[StartedRun] = []
        for item in self.ready(found, time.time()):
            if not matches_filter(self.trigger.filter, item.relative, guess_mime(item.relative)):
                continue
            workflow_id = self.workflow_id(item)
            if workflow_id in self.ledger or workflow_id in self._refused:
                continue
            inputs = {**self.trigger.inputs, self.trigger.input: item.location}
            try:
                run = await _start_once(
                    client,
                    self.definition,
                    inputs,
                    workflow_id=workflow_id,
                    task_queue=task_queue,
                    source=item.location,
                )
            except InputError as e:
                log.error("%s: cannot start for %s: %s", self.entry.slug, item.location, e)
                self._refused.add(workflow_id)
                continue
            self.ledger.add(workflow_id)
            if run.new:
                log.info("%s: started %s for %s", self.entry.slug, run.workflow_id, item.location)
            started.append(run)
        return started


# --- the loop -----------------------------------------------------------------------------------


@dataclass
class PollResult:
    """What one pass of the trigger loop did."""

    schedules: list[ScheduleChange] = field(default_factory=list)
    started: list[StartedRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


ClientGetter = Callable[[], Awaitable[TideflowClient]]
"""How the trigger loop gets its client: on each pass, so a client connected late (or again
after a failure) is picked up."""


class TriggerRunner:
    """Keeps schedules in sync with the definitions folder and polls watched folders.

    Each pass reloads the folder if it changed; schedules are synced after a change (and until
    a sync succeeds), watched folders are polled on every pass.
    """

    def __init__(
        self,
        catalog: Catalog,
        client: ClientGetter,
        *,
        settings: WorkerSettings | None = None,
        poll_seconds: float = 2.0,
        settle_seconds: float = 1.0,
        ledger: bool = True,
    ) -> None:
        self.catalog = catalog
        self._client = client
        self.settings = settings or WorkerSettings.from_env()
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.ledger = _Ledger(self.settings.home / "triggers" / "started.txt" if ledger else None)
        self._synced: int | None = None
        self._errors: set[str] = set()
        self._watchers: dict[tuple[str, ...], DocumentWatcher] = {}

    @property
    def task_queue(self) -> str:
        """The task queue runs are started on."""
        return self.settings.task_queue

    def watchers(self) -> list[DocumentWatcher]:
        """The active folder/S3 watchers (after the catalog was loaded)."""
        self._rebuild_watchers(self.catalog.entries())
        return list(self._watchers.values())

    def _rebuild_watchers(self, entries: Iterable[Entry]) -> None:
        watchers: dict[tuple[str, ...], DocumentWatcher] = {}
        for entry in entries:
            if not entry.valid or entry.definition is None:
                continue
            for index, trigger in enumerate(entry.definition.triggers):
                if not isinstance(trigger, DocumentUploadTrigger) or not trigger.path:
                    continue
                if index in entry.trigger_problems:
                    continue
                key = (
                    entry.slug,
                    str(index),
                    _digest(json.dumps(tideflow.definition_json(entry.definition), default=str)),
                )
                watchers[key] = self._watchers.get(key) or DocumentWatcher(
                    entry, index, trigger, ledger=self.ledger, settle_seconds=self.settle_seconds
                )
        self._watchers = watchers

    async def poll_once(self) -> PollResult:
        """One pass: sync schedules if the folder changed, then poll every watched folder.

        Raises only when Temporal cannot be reached; a failing schedule sync or watcher is
        reported in ``errors`` (and logged once) without stopping the others.
        """
        result = PollResult()
        self.catalog.refresh()
        self._rebuild_watchers(self.catalog.entries())
        client = await self._client()
        generation = self.catalog.generation
        if self._synced != generation:
            try:
                result.schedules = await sync_schedules(
                    client, self.catalog, task_queue=self.task_queue
                )
            except Exception as e:  # retried on the next pass
                result.errors.append(f"schedules: {_reason(e)}")
            else:
                self._synced = generation
                for change in result.schedules:
                    if change.action != "unchanged":
                        log.info(
                            "schedule %s %s %s", change.schedule_id, change.action, change.detail
                        )
        for watcher in list(self._watchers.values()):
            try:
                result.started.extend(await watcher.poll(client, self.task_queue))
            except Exception as e:  # a missing bucket, a permission problem: the others go on
                result.errors.append(f"{watcher.entry.slug} ({watcher.source}): {_reason(e)}")
        self._log_errors(result.errors)
        return result

    def _log_errors(self, errors: list[str]) -> None:
        # A lasting problem is logged when it appears, not on every pass.
        for error in errors:
            if error not in self._errors:
                log.warning("triggers: %s", error)
        self._errors = set(errors)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set (or the task is cancelled); errors are logged and the
        next pass tries again, so an unreachable server only delays triggers."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as e:
                self._log_errors([_reason(e)])
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)


def _reason(error: BaseException) -> str:
    detail = getattr(error, "detail", None) or getattr(error, "message", None)
    return str(detail or error or type(error).__name__)


def trigger_summary(entries: Iterable[Entry]) -> list[str]:
    """One line per trigger of each definition, for ``tideflow triggers`` to print."""
    lines = []
    for entry in entries:
        if not entry.valid or entry.definition is None:
            lines.append(f"{entry.file}: invalid, triggers inactive")
            lines.extend(f"  {p}" for p in entry.problems)
            continue
        for index, trigger in enumerate(entry.definition.triggers):
            what: str = trigger.type
            if isinstance(trigger, ScheduleTrigger):
                what += f" {_describe(trigger)} → {schedule_id(entry.slug, index)}"
            elif isinstance(trigger, DocumentUploadTrigger):
                where = trigger.path or "(HTTP uploads only)"
                what += f" {where} [{describe_filter(trigger.filter)}]"
            elif isinstance(trigger, EventTrigger):
                what += f" {trigger.name!r}"
            state = " (inactive)" if index in entry.trigger_problems else ""
            lines.append(f"{entry.slug}: {what}{state}")
            lines.extend(f"  {p}" for p in entry.trigger_problems.get(index, []))
    return lines


def new_catalog(folder: str | Path) -> Catalog:
    """A catalog of the folder whose entries carry their trigger problems."""
    return Catalog(folder, check_triggers=check_triggers)


__all__ = [
    "EVENT_INPUT",
    "SCHEDULE_PREFIX",
    "DocumentWatcher",
    "EventStarts",
    "PollResult",
    "RefusedStart",
    "ScheduleChange",
    "StartedRun",
    "TriggerRunner",
    "build_schedule",
    "check_triggers",
    "describe_filter",
    "event_inputs",
    "guess_mime",
    "matches_filter",
    "new_catalog",
    "schedule_id",
    "start_runs_for_event",
    "sync_schedules",
    "trigger_summary",
]
