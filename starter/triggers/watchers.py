"""``document_upload`` triggers with a ``path``: watched folders and S3 prefixes."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from activities.files import new_s3_client, s3_call
from interpreter.inputs import InputError
from interpreter.model import DocumentUploadTrigger
from starter._catalog import Entry
from starter.client import TideflowClient
from starter.triggers.filters import guess_mime, matches_filter
from starter.triggers.starting import StartedRun, StartOnce, _digest, _start_once

log = logging.getLogger("tideflow.triggers")


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

    async def poll(
        self, client: TideflowClient, task_queue: str, start: StartOnce | None = None
    ) -> list[StartedRun]:
        """Start a run for each new, complete file that passes the filter (through ``start``:
        at most once under the file's derived id)."""
        start = start or _start_once
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
                run = await start(
                    client,
                    self.definition,
                    inputs,
                    workflow_id=workflow_id,
                    task_queue=task_queue,
                    source=item.location,
                    memo=self.entry.memo,
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
