"""Node types for the foundation's tests, registered into ``activities.registry`` on import.

They exercise the workflow's machinery (retries, timeouts, cancellation, parallelism,
compensation order) with outcomes a test controls exactly. They are real activities run by the
real worker; what they saw is recorded in module-level tables keyed by workflow id and node id,
which the tests read back (the worker runs in the test process).

- ``test.echo`` ``{value}`` → ``{value, node}``; every call is appended to :data:`CALLS`.
- ``test.flaky`` ``{failures, value}`` fails (retryably) ``failures`` times per run and node,
  then returns ``{value, calls, attempt}``.
- ``test.permanent`` ``{message}`` always raises ``PermanentNodeError`` (never retried).
- ``test.sleep`` ``{seconds, fail_after, group}`` sleeps while heartbeating (or fails for good
  after ``fail_after`` seconds); records in-flight counts (per run and node, or across runs
  under ``("group", group)``) and cancellations; returns ``{slept}``.
- ``test.rendezvous`` ``{group, parties, timeout}`` waits until ``parties`` nodes of the same run
  and group are running at once (proof of parallelism without timing); fails if they never
  meet.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities import NodeContext, PermanentNodeError, RetryableNodeError, node_type
from interpreter.node_io import NodeResult, ReviewRequest

CALLS: dict[str, list[str]] = defaultdict(list)
"""Workflow id → node ids of the ``test.echo`` calls, in call order."""
ATTEMPTS: dict[tuple[str, str], int] = defaultdict(int)
"""(workflow id, node id) → how many times a flaky or permanent node was called."""
IN_FLIGHT: dict[tuple[str, str], int] = defaultdict(int)
"""(workflow id, node id without ``[index]``) → ``test.sleep`` calls running right now."""
MAX_IN_FLIGHT: dict[tuple[str, str], int] = defaultdict(int)
"""(workflow id, node id without ``[index]``) → the most ``test.sleep`` calls seen at once."""
CANCELLED: set[tuple[str, str]] = set()
"""(workflow id, node id) of ``test.sleep`` calls that were cancelled."""
_ARRIVED: dict[tuple[str, str], set[str]] = defaultdict(set)

_ITEM_SUFFIX = re.compile(r"\[\d+\]$")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EchoConfig(_Config):
    """Config of ``test.echo``."""

    value: Any = None
    """Any JSON value, returned as it arrived (expressions already evaluated)."""


class FlakyConfig(_Config):
    """Config of ``test.flaky``."""

    failures: int = Field(ge=0, description="attempts that fail before one succeeds")
    value: Any = None


class PermanentConfig(_Config):
    """Config of ``test.permanent``."""

    message: str = "broken on purpose"


class SleepConfig(_Config):
    """Config of ``test.sleep``."""

    seconds: float = Field(ge=0)
    heartbeat_every: float = Field(default=0.05, gt=0)
    fail_after: float | None = Field(default=None, ge=0)
    """Fail (for good) after this many seconds instead of finishing."""
    group: str | None = None
    """Count in-flight calls across runs under ``("group", group)`` (concurrency limits)."""


class RendezvousConfig(_Config):
    """Config of ``test.rendezvous``."""

    group: str = "all"
    parties: int = Field(ge=1)
    timeout: float = Field(default=10.0, gt=0, description="seconds to wait for the others")


def _key(ctx: NodeContext) -> tuple[str, str]:
    return ctx.run.workflow_id, ctx.node_id


@node_type("test.echo", EchoConfig)
async def echo(config: EchoConfig, ctx: NodeContext) -> dict[str, Any]:
    """Return the config's value and the node id; record the call."""
    CALLS[ctx.run.workflow_id].append(ctx.node_id)
    return {"value": config.value, "node": ctx.node_id}


@node_type("test.flaky", FlakyConfig)
async def flaky(config: FlakyConfig, ctx: NodeContext) -> dict[str, Any]:
    """Fail ``failures`` times for this run and node, then succeed."""
    key = _key(ctx)
    ATTEMPTS[key] += 1
    calls = ATTEMPTS[key]
    if calls <= config.failures:
        raise RetryableNodeError(f"flaky on purpose: call {calls} of {config.failures} failing")
    return {"value": config.value, "calls": calls, "attempt": ctx.attempt}


@node_type("test.permanent", PermanentConfig)
async def permanent(config: PermanentConfig, ctx: NodeContext) -> None:
    """Fail with a cause no retry can fix."""
    ATTEMPTS[_key(ctx)] += 1
    raise PermanentNodeError(config.message)


@node_type("test.sleep", SleepConfig)
async def sleep(config: SleepConfig, ctx: NodeContext) -> dict[str, Any]:
    """Sleep ``seconds`` while heartbeating, so a cancellation reaches the node."""
    gauge = (
        ("group", config.group)
        if config.group
        else (ctx.run.workflow_id, _ITEM_SUFFIX.sub("", ctx.node_id))
    )
    IN_FLIGHT[gauge] += 1
    MAX_IN_FLIGHT[gauge] = max(MAX_IN_FLIGHT[gauge], IN_FLIGHT[gauge])
    seconds = config.seconds if config.fail_after is None else config.fail_after
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            ctx.heartbeat()
            await asyncio.sleep(min(left, config.heartbeat_every))
        if config.fail_after is not None:
            raise PermanentNodeError(f"failed after {config.fail_after} s on purpose")
    except asyncio.CancelledError:
        CANCELLED.add(_key(ctx))
        raise
    finally:
        IN_FLIGHT[gauge] -= 1
    return {"slept": config.seconds}


@node_type("test.rendezvous", RendezvousConfig)
async def rendezvous(config: RendezvousConfig, ctx: NodeContext) -> dict[str, Any]:
    """Wait until ``parties`` nodes of this run and group are running at the same time."""
    arrived = _ARRIVED[(ctx.run.workflow_id, config.group)]
    arrived.add(ctx.node_id)
    deadline = time.monotonic() + config.timeout
    while len(arrived) < config.parties:
        if time.monotonic() > deadline:
            raise PermanentNodeError(
                f"rendezvous {config.group!r}: only {sorted(arrived)} of {config.parties} "
                f"parties were running at once"
            )
        await asyncio.sleep(0.01)
    return {"group": config.group, "met": sorted(arrived)}


class SpendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: int = Field(default=100, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)


@node_type("ai.test_spend", SpendConfig)
async def spend(config: SpendConfig, ctx: NodeContext) -> dict[str, Any]:
    """Spend like a model call (tokens and cost count against budgets) without a model: an
    ``ai.`` type, so budgets apply to it."""
    ctx.add_usage(prompt_tokens=config.tokens, cost_usd=config.cost_usd, model="test")
    return {"tokens": config.tokens}


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = "invoice"
    options: list[str] = Field(default_factory=lambda: ["invoice", "letter"])


@node_type("test.review", ReviewConfig)
async def review(config: ReviewConfig, ctx: NodeContext) -> NodeResult:
    """Answer ``{label}`` and ask a person to confirm it (what a doubtful ``ai.classify``
    does), without a model."""
    return NodeResult(
        output={"label": config.label},
        review=ReviewRequest(
            message=f"is it {config.label!r}?",
            options=list(config.options),
            field="label",
            details={"confidence": 0.4},
        ),
    )
