"""``tideflow upgrade-check``: will the code installed here replay the runs already in flight?

Before rolling out new workers, an operator replays the history of every open run in the
namespace (and of the most recent closed ones, with ``--closed N``) against the workflow code
installed now. A history the code would not produce again — a nondeterministic change — would
break that run the moment a new worker picks it up; this finds it first and names the run and
the first event where the replay diverges (found by replaying shorter and shorter prefixes of
the history, one workflow task at a time).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from interpreter.workflow import DEFINITION_KEY, WORKFLOW_NAME, TideflowWorkflow


@dataclass(frozen=True)
class Divergence:
    """A run the installed code would not replay."""

    workflow_id: str
    run_id: str
    definition: str
    event_id: int
    """The first event of the history the code would not produce (0 when unknown)."""
    event_type: str
    message: str

    def __str__(self) -> str:
        where = f"event {self.event_id} ({self.event_type})" if self.event_id else "its history"
        what = f" [{self.definition}]" if self.definition else ""
        return f"{self.workflow_id}/{self.run_id}{what}: diverges at {where}: {self.message}"


@dataclass
class UpgradeCheck:
    """What :func:`check_upgrade` found."""

    checked: int = 0
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every run replayed."""
        return not self.divergences


async def check_upgrade(
    client: Client, *, closed: int = 0, replayer: Replayer | None = None
) -> UpgradeCheck:
    """Replay every open Tideflow run (and the ``closed`` most recent closed ones)."""
    replayer = replayer or default_replayer()
    result = UpgradeCheck()
    base = f'WorkflowType = "{WORKFLOW_NAME}"'
    queries: list[tuple[str, int | None]] = [(f'{base} AND ExecutionStatus = "Running"', None)]
    if closed > 0:
        queries.append((f'{base} AND ExecutionStatus != "Running"', closed))
    for query, limit in queries:
        async for execution in client.list_workflows(query, limit=limit):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            history = await handle.fetch_history()
            result.checked += 1
            failure = await _replay(replayer, history)
            if failure is None:
                continue
            definition = execution.typed_search_attributes.get(DEFINITION_KEY) or ""
            event = await _first_divergent_event(replayer, history)
            result.divergences.append(
                Divergence(
                    workflow_id=execution.id,
                    run_id=execution.run_id,
                    definition=definition,
                    event_id=event.event_id if event is not None else 0,
                    event_type=_event_name(event) if event is not None else "",
                    message=_reason(failure),
                )
            )
    return result


async def check_histories(folder: Path, *, replayer: Replayer | None = None) -> UpgradeCheck:
    """Replay every recorded history under ``folder`` (JSON files as ``temporal workflow show
    --output json`` writes them; a ``workflow_ids.json`` beside them names their workflow ids,
    which child runs' ids derive from)."""
    replayer = replayer or default_replayer()
    result = UpgradeCheck()
    for path in sorted(folder.rglob("*.json")):
        if path.name == _INDEX:
            continue
        index = path.parent / _INDEX
        ids = json.loads(index.read_text()) if index.exists() else {}
        workflow_id = ids.get(path.name) or path.stem
        history = WorkflowHistory.from_json(workflow_id, json.loads(path.read_text()))
        result.checked += 1
        failure = await _replay(replayer, history)
        if failure is None:
            continue
        event = await _first_divergent_event(replayer, history)
        result.divergences.append(
            Divergence(
                workflow_id=str(path),
                run_id=workflow_id,
                definition="",
                event_id=event.event_id if event is not None else 0,
                event_type=_event_name(event) if event is not None else "",
                message=_reason(failure),
            )
        )
    return result


_INDEX = "workflow_ids.json"


def default_replayer() -> Replayer:
    """A replayer of the installed TideflowWorkflow, with the worker's converter and sandbox."""
    from starter.client import data_converter
    from worker import workflow_runner

    return Replayer(
        workflows=[TideflowWorkflow],
        data_converter=data_converter(),
        workflow_runner=workflow_runner(),
    )


async def _replay(replayer: Replayer, history: WorkflowHistory) -> BaseException | None:
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


async def _first_divergent_event(
    replayer: Replayer, history: WorkflowHistory
) -> HistoryEvent | None:
    """The first event after the commands of the earliest workflow task that fails to replay.

    Prefixes ending after each completed workflow task (and its commands) are replayed in a
    binary search: a prefix that replays means every task in it is deterministic."""
    events = list(history.events)
    ends = _task_ends(events)
    if not ends:
        return None
    low, high = 0, len(ends) - 1
    failing: int | None = None
    while low <= high:
        middle = (low + high) // 2
        prefix = WorkflowHistory(history.workflow_id, events[: ends[middle][1]])
        if await _replay(replayer, prefix) is None:
            low = middle + 1
        else:
            failing = middle
            high = middle - 1
    if failing is None:
        return None
    completed, end = ends[failing]
    commands = events[completed + 1 : end]
    return commands[0] if commands else events[completed]


def _task_ends(events: list[HistoryEvent]) -> list[tuple[int, int]]:
    """For each completed workflow task: its index, and where its commands end."""
    out = []
    for index, event in enumerate(events):
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            continue
        end = index + 1
        while end < len(events) and events[end].event_type in _COMMAND_EVENTS:
            end += 1
        out.append((index, end))
    return out


_COMMAND_EVENTS = frozenset(
    {
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
        EventType.EVENT_TYPE_TIMER_STARTED,
        EventType.EVENT_TYPE_TIMER_CANCELED,
        EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)


def _event_name(event: HistoryEvent) -> str:
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").title().replace("_", "")
    attributes: Any = None
    if event.HasField("activity_task_scheduled_event_attributes"):
        attributes = event.activity_task_scheduled_event_attributes
        return f"{name} {attributes.activity_type.name} {attributes.activity_id}"
    return name


def _reason(failure: BaseException) -> str:
    text = str(failure)
    marker = "Nondeterminism error: "
    if marker in text:
        text = text.split(marker, 1)[1]
        text = text.split('", source', 1)[0]
    return text.replace("\\'", "'").strip()


def render(result: UpgradeCheck) -> str:
    """What ``tideflow upgrade-check`` prints."""
    if result.ok:
        return f"ok: {result.checked} run(s) replay with the installed code"
    lines = [str(d) for d in result.divergences]
    lines.append(
        f"{len(result.divergences)} of {result.checked} run(s) would not replay: "
        "do not roll out this code while they are open"
    )
    return "\n".join(lines)


async def _main(closed: int, histories: Path | None) -> int:
    from starter.client import connect

    if histories is not None:
        result = await check_histories(histories)
    else:
        result = await check_upgrade(await connect(), closed=closed)
    print(render(result))
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the check against ``TEMPORAL_ADDRESS``; exit status 0 when every run replays."""
    import argparse

    parser = argparse.ArgumentParser(prog="tideflow upgrade-check", description=__doc__)
    parser.add_argument(
        "--closed",
        type=int,
        default=0,
        metavar="N",
        help="also check the N most recent closed runs",
    )
    parser.add_argument(
        "--histories",
        type=Path,
        metavar="DIR",
        help="replay recorded history files instead of the server's runs (CI: tests/histories)",
    )
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.closed, args.histories))


if __name__ == "__main__":
    import os
    import sys

    code = main()
    sys.stdout.flush()
    os._exit(code)
