"""Accepting starts and events into the outbox: what the HTTP API, the triggers and
``tideflow start --queue`` call instead of starting runs themselves.

Each call compiles and checks the request (InputError before anything is kept), writes it to
the outbox (committed: from then on it survives the process), wakes the deliverer and waits a
moment (``outbox.wait_seconds``) for Temporal to take it. The caller gets the entry as it is
then: delivered (with its run), failed (why), waiting for a run slot, or still pending because
Temporal cannot be reached — kept, and delivered in order once it answers.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from activities import WorkerSettings
from interpreter import Definition
from starter._catalog import Catalog
from starter.client import TideflowClient, new_workflow_id
from starter.outbox.delivery import Deliverer
from starter.outbox.records import Entry, NewEntry, Outbox, new_entry_id
from starter.outbox.starts import EventRecord, start_record
from starter.triggers import RefusedStart, StartedRun, event_starts


@dataclass(frozen=True)
class Accepted:
    """An entry a request made (``new``), or found already made by an earlier one."""

    entry: Entry
    new: bool = True

    @property
    def delivered(self) -> bool:
        """Whether Temporal has taken it."""
        return self.entry.status == "delivered"

    @property
    def started_before(self) -> bool:
        """Whether its run had been started by an earlier request (the same key)."""
        result = self.entry.result or {}
        return not self.new or result.get("new") is False


@dataclass(frozen=True)
class EventAccepted:
    """An accepted event: its own entry (the signal to waiting runs) and the starts it made."""

    event: Accepted
    starts: list[Accepted] = field(default_factory=list)
    refused: list[RefusedStart] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        """Whether the event and every start it made reached Temporal."""
        return self.event.delivered and all(s.delivered for s in self.starts)


class StartOutbox:
    """The outbox of a process, with its deliverer and the settings starts are compiled with."""

    def __init__(self, outbox: Outbox, deliverer: Deliverer, settings: WorkerSettings) -> None:
        self.outbox = outbox
        self.deliverer = deliverer
        self.settings = settings

    async def start(
        self,
        definition: Definition,
        inputs: dict[str, Any],
        *,
        source: str,
        task_queue: str | None = None,
        workflow_id: str | None = None,
        memo: dict[str, Any] | None = None,
        priority: int | None = None,
        idempotent: bool = False,
        fingerprint: str | None = None,
        document: str | None = None,
        wait: float | None = None,
        user: str | None = None,
        roles: list[str] | None = None,
        origin: str | None = None,
    ) -> Accepted:
        """Accept a start of ``definition`` and wait up to ``wait`` seconds (default
        ``outbox.wait_seconds``) for its delivery.

        ``idempotent``: the workflow id is a key (derived from a request's key, an event's, a
        file's): accepting it again returns the first entry, and Temporal refuses a second
        run. ``fingerprint`` tells an earlier entry of the same key made by the same request
        from one made by another (compared by the caller)."""
        record = start_record(
            definition,
            inputs,
            workflow_id=workflow_id or new_workflow_id(definition),
            task_queue=task_queue or self.settings.task_queue,
            default_retry=self.settings.default_retry,
            memo=memo,
            priority=priority,
            reject_duplicate=idempotent,
            document=document,
            user=user,
            roles=roles,
            origin=origin,
        )
        row = NewEntry(
            "start",
            record.model_dump(mode="json"),
            source,
            definition=definition.slug,
            workflow_id=record.workflow_id,
            dedupe=_start_dedupe(record.workflow_id) if idempotent else None,
            fingerprint=fingerprint,
        )
        entry, new = (await asyncio.to_thread(self.outbox.accept_many, [row]))[0]
        (settled,) = await self._settle([entry], wait)
        return Accepted(settled, new)

    async def started_before(self, workflow_id: str) -> bool:
        """Whether an idempotent start of this workflow id was accepted already (accepting it
        again would return that one)."""
        return await asyncio.to_thread(self.outbox.holds, _start_dedupe(workflow_id))

    async def event(
        self,
        catalog: Catalog,
        name: str,
        payload: Any = None,
        *,
        source: str,
        correlation: str | None = None,
        key: str | None = None,
        task_queue: str | None = None,
        wait: float | None = None,
    ) -> EventAccepted:
        """Accept an event: its delivery to the open runs waiting for it and a start of every
        definition with an ``event`` trigger of that name, in one transaction. With ``key``,
        the same event accepted again is the first one (no second signal, no second run)."""
        starts, refused = event_starts(catalog, name, payload, key=key)
        queue = task_queue or self.settings.task_queue
        event = EventRecord(name=name, payload=payload, correlation=correlation)
        event_dedupe = None if key is None else f"event:{_digest(name, key)}"
        event_row = NewEntry(
            "event", event.model_dump(mode="json"), source, dedupe=event_dedupe, entry_id=_new_id()
        )
        rows = [event_row]
        for start in starts:
            record = start_record(
                start.definition,
                start.inputs,
                workflow_id=start.workflow_id or new_workflow_id(start.definition),
                task_queue=queue,
                default_retry=self.settings.default_retry,
                reject_duplicate=start.workflow_id is not None,
            )
            rows.append(
                NewEntry(
                    "start",
                    record.model_dump(mode="json"),
                    source,
                    definition=start.slug,
                    workflow_id=record.workflow_id,
                    dedupe=f"start:{record.workflow_id}" if start.workflow_id else None,
                    parent=event_row.entry_id,
                )
            )
        accepted = await asyncio.to_thread(self.outbox.accept_many, rows)
        event_entry, event_new = accepted[0]
        if event_new:
            pairs = accepted[1:]
        else:  # the same event again: what the first one made
            children = await asyncio.to_thread(self.outbox.children, event_entry.id)
            pairs = [(child, False) for child in children]
        settled = await self._settle([event_entry, *(entry for entry, _ in pairs)], wait)
        starts_accepted = [
            Accepted(entry, new) for entry, (_, new) in zip(settled[1:], pairs, strict=True)
        ]
        return EventAccepted(Accepted(settled[0], event_new), starts_accepted, refused)

    async def start_once(
        self,
        client: TideflowClient,
        definition: Definition,
        inputs: dict[str, Any],
        *,
        workflow_id: str,
        task_queue: str,
        source: str,
        memo: dict[str, Any] | None = None,
    ) -> StartedRun:
        """A trigger's start under a derived id, through the outbox (see
        :class:`starter.triggers.StartOnce`); the file is never started twice."""
        del client  # the deliverer has its own
        accepted = await self.start(
            definition,
            inputs,
            source="trigger",
            task_queue=task_queue,
            workflow_id=workflow_id,
            memo=memo,
            idempotent=True,
            wait=0,
            origin="trigger",
        )
        entry = accepted.entry
        return StartedRun(
            definition.slug,
            workflow_id,
            entry.run_id,
            new=not accepted.started_before,
            source=source,
        )

    async def _settle(self, entries: list[Entry], wait: float | None) -> list[Entry]:
        timeout = self.settings.outbox.wait_seconds if wait is None else wait
        ids = [entry.id for entry in entries]
        if timeout <= 0:
            self.deliverer.wake()
            return entries
        settled = await self.deliverer.settle(ids, timeout)
        by_id = {entry.id: entry for entry in settled}
        return [by_id.get(entry_id, entry) for entry_id, entry in zip(ids, entries, strict=True)]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _new_id() -> str:
    return new_entry_id()


def _start_dedupe(workflow_id: str) -> str:
    return f"start:{workflow_id}"
