"""The outbox's backlog against its bounds (``outbox.max_pending``, ``outbox.max_age``), and
the alert sent through the notify family when it goes past them (seed 003: "alert operators").

One alert when the backlog crosses a bound, none while it stays past it, a new one if it
crosses again after coming back within bounds. The alert is sent by the process that
delivers the outbox (the API), directly, not as a workflow: Temporal may be what is down.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from activities import NodeContext, WorkerResources, WorkerSettings, registry
from activities._secrets import resolve_secrets
from interpreter.node_io import RunInfo
from starter.outbox.records import Backlog, Outbox

log = logging.getLogger("tideflow.outbox")


@dataclass(frozen=True)
class BacklogState:
    """The backlog and whether it is past its bounds."""

    backlog: Backlog
    max_pending: int
    max_age: float
    problems: tuple[str, ...]
    """What is past its bound, in words (empty when within bounds)."""

    @property
    def ok(self) -> bool:
        """Within bounds."""
        return not self.problems

    def summary(self) -> str:
        """One line: the backlog and its bounds."""
        backlog = self.backlog
        if not backlog.pending:
            return "empty"
        age = f", oldest {backlog.oldest_age:.0f} s" if backlog.oldest_age is not None else ""
        text = f"{backlog.pending} start(s) waiting{age}"
        return f"{text}: {'; '.join(self.problems)}" if self.problems else text


def backlog_state(outbox: Outbox, settings: WorkerSettings) -> BacklogState:
    """The outbox's backlog measured against the settings' bounds."""
    bounds = settings.outbox
    backlog = outbox.backlog()
    problems = []
    if backlog.pending > bounds.max_pending:
        problems.append(f"more than {bounds.max_pending} waiting")
    if backlog.oldest_age is not None and backlog.oldest_age > bounds.max_age:
        problems.append(f"waiting longer than {bounds.max_age:g} s")
    return BacklogState(backlog, bounds.max_pending, bounds.max_age, tuple(problems))


class BacklogAlerts:
    """Sends the configured alert when the backlog goes past its bounds."""

    def __init__(self, outbox: Outbox, settings: WorkerSettings) -> None:
        self.outbox = outbox
        self.settings = settings
        self.alerting = False
        """Whether the backlog is past its bounds and the alert was sent."""
        self.sent: list[dict[str, Any]] = []
        """The alerts sent by this process (what each said)."""

    async def check(self) -> BacklogState:
        """Measure the backlog; alert when it has just gone past its bounds."""
        state = await asyncio.to_thread(backlog_state, self.outbox, self.settings)
        if state.ok:
            if self.alerting:
                log.info("outbox backlog back within bounds: %s", state.summary())
            self.alerting = False
            return state
        if not self.alerting:
            self.alerting = True
            log.error("outbox backlog past its bounds: %s", state.summary())
            await self._send(state)
        return state

    async def _send(self, state: BacklogState) -> None:
        alert = self.settings.outbox.alert
        if alert is None:
            return
        message = f"Tideflow start outbox: {state.summary()}"
        details = {
            "alert": "outbox_backlog",
            "message": message,
            "pending": state.backlog.pending,
            "oldest_age_seconds": state.backlog.oldest_age,
            "max_pending": state.max_pending,
            "max_age_seconds": state.max_age,
            "at": time.time(),
        }
        config = _with_message(alert.type, resolve_secrets(dict(alert.config)), message, details)
        try:
            await _notify(alert.type, config, self.settings)
        except Exception as e:  # an alert that cannot be sent must not stop the deliveries
            log.error("outbox alert through %s failed: %s", alert.type, e)
            return
        self.sent.append(details)


def _with_message(
    kind: str, config: dict[str, Any], message: str, details: dict[str, Any]
) -> dict[str, Any]:
    """The alert's config with the message filled in where the configuration left it out."""
    if kind == "notify.webhook" and "payload" not in config and "json" not in config:
        config["payload"] = details
    elif kind == "notify.slack" and not config.get("text") and not config.get("blocks"):
        config["text"] = message
    elif kind == "notify.email":
        config.setdefault("subject", "Tideflow: start outbox backlog")
        config.setdefault("body", message)
    return config


async def _notify(kind: str, raw: dict[str, Any], settings: WorkerSettings) -> None:
    """Run a notify node type's function outside any workflow."""
    node = registry.get(kind)
    if node is None:
        raise ValueError(f"unknown notify type {kind!r}")
    config = node.config_model.model_validate(raw)
    resources = WorkerResources(settings)
    ctx = NodeContext(
        node_id="outbox-alert",
        node_type=kind,
        run=RunInfo(workflow_id="tideflow-outbox", run_id=""),
        attempt=1,
        settings=settings,
        resources=resources,
    )
    try:
        if inspect.iscoroutinefunction(node.function):
            await node.function(config, ctx)
        else:
            await asyncio.to_thread(node.function, config, ctx)
    finally:
        await resources.aclose()
