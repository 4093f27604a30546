"""The trigger loop: schedules synced after a change, watched folders polled on every pass."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from activities import WorkerSettings
from interpreter.model import DocumentUploadTrigger, EventTrigger, ScheduleTrigger
from starter import client as tideflow
from starter._catalog import Catalog, Entry
from starter.client import TideflowClient
from starter.triggers.filters import check_triggers, describe_filter
from starter.triggers.schedules import ScheduleChange, _describe, schedule_id, sync_schedules
from starter.triggers.starting import StartedRun, StartOnce, _digest
from starter.triggers.watchers import DocumentWatcher, _Ledger

log = logging.getLogger("tideflow.triggers")


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
        start: StartOnce | None = None,
    ) -> None:
        self.catalog = catalog
        self.start = start
        """How file triggers start runs (the API hands its outbox's)."""
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
                result.started.extend(await watcher.poll(client, self.task_queue, self.start))
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


def trigger_summary(
    entries: Iterable[Entry], catalog_prefix: str = Catalog.schedule_prefix
) -> list[str]:
    """One line per trigger of each definition, for ``tideflow triggers`` to print
    (``catalog_prefix``: the schedule ids' prefix of the catalog the entries come from)."""
    lines = []
    for entry in entries:
        if not entry.valid or entry.definition is None:
            lines.append(f"{entry.file}: invalid, triggers inactive")
            lines.extend(f"  {p}" for p in entry.problems)
            continue
        for index, trigger in enumerate(entry.definition.triggers):
            what: str = trigger.type
            if isinstance(trigger, ScheduleTrigger):
                sid = schedule_id(entry.slug, index, catalog_prefix)
                what += f" {_describe(trigger)} → {sid}"
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
