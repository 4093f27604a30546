"""Triggers (DSL.md section 4): what starts runs besides a person.

- ``schedule`` triggers become Temporal Schedules named ``tideflow-<slug>-<index>``, created,
  updated and deleted to match the definitions folder (:mod:`~starter.triggers.schedules`).
- ``document_upload`` triggers with a ``path`` watch a folder or an ``s3://bucket/prefix``
  (:mod:`~starter.triggers.watchers`): each new file matching the filter
  (:mod:`~starter.triggers.filters`) starts exactly one run, also across restarts, because the
  workflow id is derived from the file and Temporal refuses a second start of the same id
  (:mod:`~starter.triggers.starting`).
- ``event`` triggers start a run for each emitted event of their name
  (:mod:`~starter.triggers.events`, called by ``tideflow emit`` and ``POST /events/{name}``).

:class:`~starter.triggers.runner.TriggerRunner` drives the first two in a loop over a catalog of
definitions (a folder, or the registry's deployed versions); ``tideflow api`` runs it in the
background and ``tideflow triggers`` runs it alone. docs/api.md describes the semantics for
users.
"""

from __future__ import annotations

from starter.triggers.events import (
    EVENT_INPUT,
    EventStart,
    EventStarts,
    RefusedStart,
    event_inputs,
    event_starts,
    start_runs_for_event,
)
from starter.triggers.filters import check_triggers, describe_filter, guess_mime, matches_filter
from starter.triggers.runner import PollResult, TriggerRunner, new_catalog, trigger_summary
from starter.triggers.schedules import (
    SCHEDULE_PREFIX,
    ScheduleChange,
    build_schedule,
    schedule_id,
    sync_schedules,
)
from starter.triggers.starting import StartedRun, StartOnce
from starter.triggers.watchers import DocumentWatcher, _Found, _Ledger

__all__ = [
    "EVENT_INPUT",
    "SCHEDULE_PREFIX",
    "DocumentWatcher",
    "EventStart",
    "EventStarts",
    "PollResult",
    "RefusedStart",
    "ScheduleChange",
    "StartOnce",
    "StartedRun",
    "TriggerRunner",
    "_Found",
    "_Ledger",
    "build_schedule",
    "check_triggers",
    "describe_filter",
    "event_inputs",
    "event_starts",
    "guess_mime",
    "matches_filter",
    "new_catalog",
    "schedule_id",
    "start_runs_for_event",
    "sync_schedules",
    "trigger_summary",
]
