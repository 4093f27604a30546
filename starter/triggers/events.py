"""``event`` triggers: a run of every definition listening for an emitted event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interpreter import Definition
from interpreter.inputs import InputError, resolve_inputs
from interpreter.model import EventTrigger
from starter._catalog import Catalog
from starter.client import TideflowClient
from starter.triggers.starting import StartedRun, _digest, _start_once

EVENT_INPUT = "event"
"""The input an event-started run receives the event's payload in."""


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


@dataclass(frozen=True)
class EventStart:
    """A run an event is to start: the definition, its inputs and, for an event with a key, the
    workflow id derived from it (None: a new id)."""

    slug: str
    definition: Definition
    inputs: dict[str, Any]
    workflow_id: str | None
    memo: dict[str, Any] | None = None


def event_starts(
    catalog: Catalog, name: str, payload: Any = None, *, key: str | None = None
) -> tuple[list[EventStart], list[RefusedStart]]:
    """The runs an event named ``name`` starts: one per ``event`` trigger of that name of every
    valid definition, with the trigger's inputs and the payload (checked: a definition whose
    inputs refuse it is in the second list). With ``key`` the workflow ids derive from it."""
    starts: list[EventStart] = []
    refused: list[RefusedStart] = []
    for entry in catalog.valid():
        definition = entry.definition
        assert definition is not None
        for index, trigger in enumerate(definition.triggers):
            if not isinstance(trigger, EventTrigger) or trigger.name != name:
                continue
            if index in entry.trigger_problems:
                problems = [str(p) for p in entry.trigger_problems[index]]
                refused.append(RefusedStart(entry.slug, problems))
                continue
            inputs = event_inputs(trigger, payload)
            try:
                resolve_inputs(definition, inputs)
            except InputError as e:
                refused.append(RefusedStart(entry.slug, list(e.problems)))
                continue
            workflow_id = (
                None if key is None else f"{entry.slug}-event-{_digest(name, key, str(index))}"
            )
            starts.append(EventStart(entry.slug, definition, inputs, workflow_id, entry.memo))
    return starts, refused


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
    starts, refused = event_starts(catalog, name, payload, key=key)
    out = EventStarts(refused=refused)
    for start in starts:
        if start.workflow_id is None:
            handle = await client.start(
                start.definition, start.inputs, task_queue=queue, memo=start.memo
            )
            run = StartedRun(start.slug, handle.id, handle.run_id, source=f"event:{name}")
        else:
            run = await _start_once(
                client,
                start.definition,
                start.inputs,
                workflow_id=start.workflow_id,
                task_queue=queue,
                source=f"event:{name}",
                memo=start.memo,
            )
        out.started.append(run)
    return out
