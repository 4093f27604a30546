"""What the app holds for its lifetime (the definitions catalog, the worker settings, the one
client, the limits and the definition parser) and the dependencies through which
routes get them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from activities import WorkerSettings
from interpreter import Definition
from starter._catalog import Catalog, Entry
from starter.api.errors import ApiError, ProblemOut, TemporalUnavailable
from starter.api.limits import ApiLimits
from starter.api.parsing import DefinitionParser
from starter.client import TideflowClient, connect, default_identity
from starter.outbox import BacklogAlerts, StartOutbox

log = logging.getLogger("tideflow.api")

_CONNECT_TIMEOUT = 10.0

TRIGGERS_USER = "tideflow-triggers"
"""Who the app's own client acts as: the trigger loop (requests act as their callers)."""


class TemporalConnection:
    """The app's one client, connected on first need (and again after a failure)."""

    def __init__(self, client: TideflowClient | None, settings: WorkerSettings) -> None:
        self._client = client
        self._settings = settings
        self._lock = asyncio.Lock()

    async def get(self) -> TideflowClient:
        """The client; raises :class:`TemporalUnavailable` when Temporal cannot be reached."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
        return self._client

    async def _connect(self) -> TideflowClient:
        from starter.server import ServerError, ensure_search_attributes

        try:
            # The trigger loop's identity; each request acts as its caller (acting_as).
            temporal = await asyncio.wait_for(
                connect(settings=self._settings, identity=default_identity(TRIGGERS_USER)),
                _CONNECT_TIMEOUT,
            )
        except Exception as e:
            raise TemporalUnavailable(str(e) or type(e).__name__) from e
        try:
            await ensure_search_attributes(temporal, timeout=_CONNECT_TIMEOUT)
        except ServerError as e:  # runs still start when they are registered another way
            log.warning("%s", e)
        return TideflowClient(
            temporal,
            user=TRIGGERS_USER,
            task_queue=self._settings.task_queue,
            origin="trigger",
            default_retry=self._settings.default_retry,
        )


@dataclass
class CachedChecks:
    """The doctor's report ``/health`` reuses for a few seconds, and when it was made."""

    report: Any = None
    made_at: float = 0.0


@dataclass
class Runtime:
    """The app's state, shared by every request."""

    catalog: Catalog
    settings: WorkerSettings
    client: TemporalConnection
    limits: ApiLimits
    parser: DefinitionParser
    outbox: StartOutbox
    """Where every start goes first (delivered to Temporal by its deliverer)."""
    alerts: BacklogAlerts
    checks: CachedChecks = field(default_factory=lambda: CachedChecks())
    """``/health``'s latest deployment checks."""

    def entry(self, slug: str) -> Entry:
        """The catalog entry of ``slug`` (404 when the folder has none)."""
        entry = self.catalog.get(slug)
        if entry is None:
            raise ApiError(404, f"no definition {slug!r} in {self.catalog.folder}")
        return entry

    def valid_definition(self, slug: str) -> Definition:
        """The definition of ``slug``, which must load (422 with its problems otherwise)."""
        entry = self.entry(slug)
        if entry.definition is None or not entry.valid:
            raise ApiError(422, "invalid definition", [ProblemOut.of(p) for p in entry.problems])
        return entry.definition


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.tideflow
    return runtime


async def _client(request: Request) -> TideflowClient:
    """The app's client acting as the request's caller: Temporal records who sent what, runs
    started here have origin ``api``, the audit trail names the caller."""
    from starter.api.permissions import current_identity

    client = await _runtime(request).client.get()
    identity = current_identity(request)
    return client.acting_as(identity.user, identity.approver_names, origin="api")


RuntimeParam = Annotated[Runtime, Depends(_runtime)]
"""A route parameter receiving the app's :class:`Runtime`."""

ClientParam = Annotated[TideflowClient, Depends(_client)]
"""A route parameter receiving the app's client acting as the caller (503 when Temporal is
unreachable)."""
