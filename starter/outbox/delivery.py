"""Delivering the outbox: entries go to Temporal in the order they were accepted, once each.

A :class:`Deliverer` makes passes over the open entries, oldest first. Before a pass it asks
Temporal for its health (an unreachable server answers at once, where a start would retry for
seconds); while Temporal cannot be reached nothing moves, so nothing overtakes an earlier
entry. A start whose definition has ``concurrency.max_runs`` runs open waits (``waiting``), and
so do the later starts of that definition, while other definitions' starts go on. A request
Temporal refuses for good (a conflicting workflow id) is marked failed and the pass goes on.

Several deliverers (API replicas, ``tideflow outbox deliver``) may share one store: a start
carries its entry's id in its memo, so two deliveries of one entry make one run.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from starter.client import TideflowClient
from starter.outbox.records import Entry, Outbox
from starter.outbox.starts import (
    Delivered,
    Refused,
    StartRecord,
    deliver_event,
    deliver_start,
    is_transient,
)

if TYPE_CHECKING:
    from starter.outbox.alerts import BacklogAlerts

log = logging.getLogger("tideflow.outbox")

ClientGetter = Callable[[], Awaitable[TideflowClient]]
"""How a deliverer gets its client on each pass (a client connected late is picked up)."""

HEALTH_TIMEOUT = timedelta(seconds=3)


@dataclass
class PassResult:
    """What one pass did."""

    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    unavailable: str | None = None
    """Why Temporal could not be reached (the pass stopped there)."""


class Deliverer:
    """Hands an outbox's entries to Temporal, in order, exactly once each."""

    def __init__(
        self,
        outbox: Outbox,
        client: ClientGetter,
        *,
        poll_seconds: float = 1.0,
        alerts: BacklogAlerts | None = None,
    ) -> None:
        self.outbox = outbox
        self._client = client
        self.poll_seconds = poll_seconds
        self.alerts = alerts
        self.unavailable: str | None = None
        """Why the last pass could not reach Temporal (None once it could)."""
        self._wake = asyncio.Event()
        self._decided = asyncio.Condition()
        self._lock = asyncio.Lock()
        self._begun = 0
        self._finished = 0
        self._looping = False

    # -- passes ---------------------------------------------------------------------------------

    async def deliver(self) -> PassResult:
        """One pass over the open entries (one pass at a time in this process)."""
        async with self._lock:
            self._begun += 1
            number = self._begun
            try:
                result = await self._pass()
            finally:
                self._finished = number
        async with self._decided:
            self._decided.notify_all()
        if self.alerts is not None:
            await self.alerts.check()
        return result

    async def _pass(self) -> PassResult:
        result = PassResult()
        entries = await asyncio.to_thread(self.outbox.open_entries)
        if not entries:
            return result
        try:
            client = await self._client()
            await client.temporal.service_client.check_health(timeout=HEALTH_TIMEOUT)
        except Exception as e:
            return await self._stop(result, _unreachable(e))
        self.unavailable = None
        full: dict[str, str] = {}
        slots: dict[str, int] = {}
        for entry in entries:
            if entry.kind == "start":
                record = StartRecord.model_validate(entry.request)
                why = full.get(record.slug)
                if why is None and record.max_runs is not None:
                    why = await self._no_slot(client, record, slots)
                if why is not None:
                    full[record.slug] = why
                    if entry.status != "waiting" or entry.error != why:
                        await asyncio.to_thread(self.outbox.waiting, entry.id, why)
                    result.waiting.append(entry.id)
                    continue
            try:
                delivered = await self._deliver(client, entry)
            except Refused as e:
                await asyncio.to_thread(
                    partial(self.outbox.failed, entry.id, e.message, status=e.status)
                )
                log.error("outbox %s refused: %s", entry.id, e.message)
                result.failed.append(entry.id)
                continue
            except Exception as e:
                if not is_transient(e):
                    raise
                return await self._stop(result, _unreachable(e))
            await asyncio.to_thread(
                self.outbox.delivered,
                entry.id,
                run_id=delivered.run_id,
                result={"new": delivered.new, **delivered.result},
            )
            if entry.kind == "start":
                record = StartRecord.model_validate(entry.request)
                if record.slug in slots:
                    slots[record.slug] += 1
            result.delivered.append(entry.id)
        return result

    async def _deliver(self, client: TideflowClient, entry: Entry) -> Delivered:
        attempt = await asyncio.to_thread(self.outbox.attempt, entry.id)
        if entry.kind == "event":
            return await deliver_event(client, entry)
        return await deliver_start(client, entry, attempt)

    async def _stop(self, result: PassResult, why: str) -> PassResult:
        """Temporal cannot be reached: what is left stays pending, in order, saying why."""
        if self.unavailable is None:
            log.warning("outbox: %s; starts wait until it answers", why)
        self.unavailable = result.unavailable = why
        await asyncio.to_thread(self.outbox.unreachable, why)
        return result

    async def _no_slot(
        self, client: TideflowClient, record: StartRecord, slots: dict[str, int]
    ) -> str | None:
        """Why a start of a limited definition must wait (None: a slot is free)."""
        assert record.max_runs is not None
        if record.slug not in slots:
            slots[record.slug] = await self._open_runs(client, record.slug)
        if slots[record.slug] < record.max_runs:
            return None
        return f"waiting for a run slot: {slots[record.slug]} of {record.max_runs} runs open"

    async def _open_runs(self, client: TideflowClient, slug: str) -> int:
        """Open runs of a definition: those the outbox started and has not seen end, and any
        other that Temporal's visibility lists (started another way)."""
        open_ids: set[str] = set()
        for entry in await asyncio.to_thread(self.outbox.delivered_open_runs, slug):
            assert entry.workflow_id is not None
            try:
                described = await client.get_run(entry.workflow_id, entry.run_id).describe()
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise
                described = None
            if described is None or described.status != WorkflowExecutionStatus.RUNNING:
                await asyncio.to_thread(self.outbox.closed, entry.id)
            else:
                open_ids.add(entry.workflow_id)
        query = f'TideflowDefinition="{slug}" AND ExecutionStatus="Running"'
        async for execution in client.temporal.list_workflows(query, limit=1000):
            open_ids.add(execution.id)
        return len(open_ids)

    # -- waiting for entries --------------------------------------------------------------------

    async def settle(self, entry_ids: list[str], timeout: float) -> list[Entry]:
        """Wake the deliverer and wait (at most ``timeout`` seconds) until each entry is
        delivered, failed or waiting for a slot, or Temporal is found unreachable; return the
        entries as they are then. Without a :meth:`run` loop (a command), one pass is made
        here."""
        if not self._looping:
            await self.deliver()
            return await asyncio.to_thread(self._entries, entry_ids)
        wanted = self._begun + 1  # the first pass to begin from now on sees the entries
        self.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            entries = await asyncio.to_thread(self._entries, entry_ids)
            left = deadline - loop.time()
            if all(e.status != "pending" for e in entries) or left <= 0:
                return entries
            if self._finished >= wanted and self.unavailable:
                return entries
            async with self._decided:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._decided.wait(), min(left, self.poll_seconds))

    def _entries(self, entry_ids: list[str]) -> list[Entry]:
        entries = [self.outbox.get(entry_id) for entry_id in entry_ids]
        return [e for e in entries if e is not None]

    def wake(self) -> None:
        """Start a pass now (an entry was accepted)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Make passes until ``stop`` is set: at once when woken, else every ``poll_seconds``
        (backing off to 5 s while Temporal is unreachable)."""
        stop = stop or asyncio.Event()
        self._looping = True
        try:
            await self._loop(stop)
        finally:
            self._looping = False

    async def _loop(self, stop: asyncio.Event) -> None:
        idle = self.poll_seconds
        while not stop.is_set():
            self._wake.clear()
            try:
                result = await self.deliver()
            except Exception as e:  # a store problem: logged, tried again
                log.error("outbox: delivery pass failed: %s", _reason(e))
                result = PassResult(unavailable=_reason(e))
            idle = min(idle * 2, 5.0) if result.unavailable else self.poll_seconds
            waker = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waker, stopper}, timeout=idle, return_when="FIRST_COMPLETED")
            finally:
                waker.cancel()
                stopper.cancel()


def _unreachable(error: BaseException) -> str:
    """Why Temporal cannot be reached, in one short line."""
    from starter.cli.errors import connect_failure

    address = os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")
    return connect_failure(Exception(_reason(error)), address).split(" (start one with")[0]


def _reason(error: BaseException) -> str:
    detail = getattr(error, "detail", None) or getattr(error, "message", None)
    return str(detail or error or type(error).__name__)
