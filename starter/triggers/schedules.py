"""``schedule`` triggers: Temporal Schedules kept in sync with the definitions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

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
from temporalio.service import RPCError, RPCStatusCode

from interpreter import Definition
from interpreter.model import RetrySpec, ScheduleTrigger
from interpreter.workflow import WORKFLOW_NAME
from starter import client as tideflow
from starter._catalog import Catalog
from starter.client import TideflowClient
from starter.client.definitions import plain_payload, task_priority
from starter.triggers.starting import _digest

SCHEDULE_PREFIX = "tideflow-"
"""Schedules whose id starts with this are Tideflow's: synced, and deleted when their trigger is
gone. Other schedules of the namespace are never touched."""

DEPLOYED_SCHEDULE_PREFIX = "tideflow-deployed."
"""The schedules of the registry's deployed definitions (a slug never holds a dot, so no folder
definition's schedule id starts with it); a folder's sync leaves them alone."""

MEMO_KEY = "tideflow"
"""Memo of scheduled runs: which definition and trigger started them, and the fingerprint that
tells :func:`sync_schedules` whether a schedule is up to date."""

SCHEDULE_CATCHUP = timedelta(minutes=1)
"""A firing missed by more than this (server down) is skipped, as cron would."""


@dataclass(frozen=True)
class ScheduleChange:
    """What :func:`sync_schedules` did to one schedule."""

    schedule_id: str
    action: Literal["created", "updated", "unchanged", "deleted", "kept", "failed"]
    definition: str
    detail: str = ""


def schedule_id(slug: str, index: int, prefix: str = SCHEDULE_PREFIX) -> str:
    """``tideflow-<slug>-<index>``: the schedule of the index-th trigger of a definition
    (``tideflow-deployed.<slug>-<index>`` for a deployed one)."""
    return f"{prefix}{slug}-{index}"


def _owned(sid: str, prefix: str) -> bool:
    """Whether schedule ``sid`` belongs to the catalogs whose ids start with ``prefix``."""
    if not sid.startswith(prefix):
        return False
    return prefix == DEPLOYED_SCHEDULE_PREFIX or not sid.startswith(DEPLOYED_SCHEDULE_PREFIX)


def _schedule_slug(sid: str, prefix: str = SCHEDULE_PREFIX) -> str | None:
    rest = sid.removeprefix(prefix)
    slug, sep, index = rest.rpartition("-")
    return slug if sep and index.isdigit() else None


def build_schedule(
    definition: Definition,
    index: int,
    trigger: ScheduleTrigger,
    *,
    task_queue: str,
    memo: dict[str, Any] | None = None,
    default_retry: RetrySpec | None = None,
) -> tuple[Schedule, str]:
    """The Temporal Schedule of a schedule trigger, and its fingerprint.

    Scheduled runs get the workflow id ``<slug>-scheduled`` (Temporal appends the firing time),
    the same search attributes as any run, and a memo naming the trigger (plus ``memo``: a
    deployed version names itself).
    """
    run_input = tideflow.run_input(
        definition, trigger.inputs, origin="schedule", default_retry=default_retry
    )
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
                **({"memo": memo} if memo else {}),
                # Only when set: schedules made before priorities existed stay unchanged.
                **({"priority": definition.priority} if definition.priority else {}),
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
            **(memo or {}),
            MEMO_KEY: {
                "definition": definition.slug,
                "trigger": index,
                "fingerprint": fingerprint,
            },
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
        priority=task_priority(definition.priority),
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
    """Make the namespace's schedules of the catalog (``tideflow-`` for a folder,
    ``tideflow-deployed.`` for the registry) match the catalog's schedule triggers.

    Idempotent: a schedule whose fingerprint (definition, inputs, spec, task queue) has not
    changed is left alone. Schedules of files that do not validate right now, and of triggers
    with problems, are kept as they are until the file is fixed; schedules whose definition or
    trigger is gone are deleted.
    """
    queue = task_queue or client.task_queue
    prefix = catalog.schedule_prefix
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
            sid = schedule_id(entry.slug, index, prefix)
            wanted.add(sid)
            if index in entry.trigger_problems:
                detail = "; ".join(str(p) for p in entry.trigger_problems[index])
                changes.append(ScheduleChange(sid, "kept", entry.slug, detail))
                continue
            schedule, fingerprint = build_schedule(
                definition,
                index,
                trigger,
                task_queue=queue,
                memo=entry.memo,
                default_retry=client.default_retry,
            )
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
        if not _owned(sid, prefix) or sid in wanted:
            continue
        slug = _schedule_slug(sid, prefix) or ""
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
