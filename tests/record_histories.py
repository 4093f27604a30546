"""Record the histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.record_histories [NAME ...]

Starts a private Temporal dev server and a Tideflow worker, runs each example below to its end
— driving the ones that need an operator (signals, updates, cancel) — and writes the history of
every run it made (each run of a continue-as-new chain, each child) to
``tests/histories/format<N>/<name>[.<k>].json``, N being the plan format the client writes.

Histories are kept forever, a folder per plan format: the workflow must replay every history
any released version recorded, or an upgrade would break runs in flight. Re-record only the
format this code writes, and only after a deliberate change; never delete older folders.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tests.testing_node_types  # noqa: F401  (the examples use test.* node types)
from activities import WorkerSettings, registry
from interpreter import load_string
from interpreter.control import RunInput
from starter import client as tideflow_client
from starter.client import TideflowClient
from starter.server import SEARCH_ATTRIBUTES

HISTORIES = Path(__file__).resolve().parent / "histories"
FORMAT = 2 if "plan" in RunInput.model_fields else 1
"""The plan format the installed client writes (the recorder also runs under older code)."""

Drive = Callable[[Any, str], Awaitable[None]]
"""A driver: given the client and the workflow id, does what an operator would."""


@dataclass(frozen=True)
class Example:
    """A definition to run, and what an operator does while it runs."""

    definition: str
    drive: Drive | None = None
    history_limit: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    formats: frozenset[int] = frozenset({1, 2})
    """The plan formats whose code has what the example needs."""


async def _until(probe: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f}s")
        await asyncio.sleep(0.05)


def _node_is(client: Any, workflow_id: str, node: str, *statuses: str) -> Callable[[], Any]:
    async def probe() -> bool:
        state = await tideflow_client.status(client, workflow_id)
        return state.nodes.get(node) in statuses

    return probe


async def _pause_resume(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "slow", "running"), "slow running")
    await tideflow_client.pause(client, workflow_id)
    await _until(_node_is(client, workflow_id, "slow", "completed"), "slow completed")
    await tideflow_client.resume(client, workflow_id)


async def _events(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "paid", "waiting"), "paid waiting")
    await tideflow_client.emit(client, workflow_id, "paid", {"eur": 1}, "7")
    await tideflow_client.emit(client, workflow_id, "unrelated", None)
    await tideflow_client.emit(client, workflow_id, "paid", {"eur": 99}, "42")


async def _approve(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "sign_off", "waiting"), "sign_off waiting")
    await tideflow_client.approve(client, workflow_id, "sign_off", True, "looks right", by="ana")


async def _retry(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "flaky", "needs_attention"), "needs attention")
    await tideflow_client.retry(client, workflow_id, "flaky")


async def _skip(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "broken", "needs_attention"), "needs attention")
    await tideflow_client.skip(client, workflow_id, "broken", {"value": "by hand"})


async def _set_vars(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "gate", "waiting"), "gate waiting")
    await tideflow_client.set_vars(client, workflow_id, {"go": True})
    await tideflow_client.approve(client, workflow_id, "gate", True)


async def _fail(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "charge", "needs_attention"), "needs attention")
    await tideflow_client.fail(client, workflow_id, "charge", "card expired", by="ana")


async def _cancel(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "long", "running"), "long running")
    await tideflow_client.cancel(client, workflow_id)


async def _raise_budget(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "second", "needs_attention"), "budget stop")
    await TideflowClient(client).get_run(workflow_id).raise_budget(add_tokens=100, by="ana")


async def _review(client: Any, workflow_id: str) -> None:
    await _until(_node_is(client, workflow_id, "kind", "waiting"), "review waiting")
    run = TideflowClient(client, user="ana").get_run(workflow_id)
    await run.approve("kind", comment="a letter", output="letter")


def _chain(count: int) -> str:
    lines = ["name: Replay chain", "tasks:"]
    for i in range(count):
        deps = f", depends_on: [n{i - 1}]" if i else ""
        lines.append(f"  - {{id: n{i}, type: test.echo, config: {{value: {i}}}{deps}}}")
    return "\n".join(lines)


EXAMPLES: dict[str, Example] = {
    "sequential": Example("""
        name: Replay sequential
        inputs:
          who: {type: string, default: world}
        vars:
          greeting: ""
        tasks:
          - {id: a, type: test.echo, config: {value: "${{ inputs.who }}"}}
          - id: greet
            type: set
            depends_on: [a]
            config: {greeting: "hello ${{ nodes.a.output.value }}"}
          - id: b
            type: test.echo
            depends_on: [greet]
            config: {value: "${{ vars.greeting }}"}
        outputs:
          greeting: ${{ nodes.b.output.value }}
        """),
    "diamond_when": Example("""
        name: Replay diamond
        inputs:
          amount: {type: number, default: 50}
        tasks:
          - {id: top, type: test.echo, config: {value: 1}}
          - id: big
            type: test.echo
            depends_on: [top]
            when: ${{ inputs.amount > 1000.0 }}
          - id: small
            type: test.echo
            depends_on: [top]
            when: ${{ inputs.amount <= 1000.0 }}
          - {id: after_big, type: test.echo, depends_on: [big]}
          - id: bottom
            type: test.echo
            depends_on: [big, small]
            config: {value: "${{ nodes.big.status }}/${{ nodes.small.status }}"}
          - {id: first, type: test.echo, depends_on: [big, small], join: any}
        """),
    "errors_continue_fallback": Example("""
        name: Replay errors
        defaults:
          retry: {max_attempts: 3, backoff: fixed, initial_interval: 50ms}
        tasks:
          - {id: flaky, type: test.flaky, config: {failures: 1}}
          - {id: broken, type: test.permanent, on_error: continue}
          - id: primary
            type: test.permanent
            config: {message: primary is down}
            on_error: {fallback: backup}
          - {id: backup, type: test.echo, config: {value: "${{ failed_node }}: ${{ error }}"}}
          - id: after
            type: test.echo
            depends_on: [flaky, broken, primary]
            config: {value: ["${{ nodes.broken.status }}", "${{ nodes.primary.output.value }}"]}
        """),
    "wait_timer": Example("""
        name: Replay wait
        tasks:
          - {id: before, type: test.echo}
          - {id: pause, type: wait, depends_on: [before], config: {duration: 300ms}}
          - {id: after, type: test.echo, depends_on: [pause]}
        """),
    "foreach": Example("""
        name: Replay foreach
        inputs:
          skus: {type: array, default: [a, b, c, d, e]}
        tasks:
          - id: each
            type: test.echo
            foreach: ${{ inputs.skus }}
            concurrency: 2
            config: {value: "${{ index }}:${{ upperAscii(item) }}"}
          - id: total
            type: test.echo
            depends_on: [each]
            config: {value: "${{ size(nodes.each.output) }}"}
        outputs:
          values: ${{ nodes.each.output.map(o, o.value) }}
        """),
    "saga_failure": Example("""
        name: Replay saga
        error_handling:
          on_failure: [notify]
        tasks:
          - {id: book, type: test.echo, compensate: unbook}
          - {id: charge, type: test.permanent, depends_on: [book]}
          - {id: unbook, type: test.echo, config: {value: "${{ failed_node }}"}}
          - {id: notify, type: test.echo, config: {value: "${{ error }}"}}
        """),
    "pause_resume": Example(
        """
        name: Replay pause
        tasks:
          - {id: slow, type: test.sleep, config: {seconds: 1.0}}
          - {id: next, type: test.echo, depends_on: [slow]}
        """,
        _pause_resume,
    ),
    "wait_for_event": Example(
        """
        name: Replay events
        tasks:
          - {id: first, type: test.echo}
          - id: paid
            type: wait_for_event
            depends_on: [first]
            config: {event: paid, correlation: "42", timeout: 1h}
          - {id: after, type: test.echo, depends_on: [paid],
             config: {value: "${{ nodes.paid.output.payload }}"}}
        """,
        _events,
    ),
    "approval": Example(
        """
        name: Replay approval
        tasks:
          - id: sign_off
            type: approval
            config: {message: ship it?, approvers: [ana], timeout: 1h}
          - {id: after, type: test.echo, depends_on: [sign_off],
             config: {value: "${{ nodes.sign_off.output.comment }}"}}
        """,
        _approve,
    ),
    "attention_retry": Example(
        """
        name: Replay retry
        tasks:
          - {id: flaky, type: test.flaky, config: {failures: 1}, on_error: pause,
             retry: {max_attempts: 1}}
          - {id: after, type: test.echo, depends_on: [flaky]}
        """,
        _retry,
    ),
    "attention_skip": Example(
        """
        name: Replay skip
        tasks:
          - {id: broken, type: test.permanent, on_error: pause}
          - {id: after, type: test.echo, depends_on: [broken],
             config: {value: "${{ nodes.broken.output.value }}"}}
        """,
        _skip,
    ),
    "set_vars": Example(
        """
        name: Replay vars
        vars: {go: false}
        tasks:
          - {id: gate, type: approval}
          - {id: when_go, type: test.echo, depends_on: [gate], when: "${{ vars.go }}"}
        """,
        _set_vars,
    ),
    "child_workflow": Example("""
        name: Replay parent
        tasks:
          - {id: before, type: test.echo, config: {value: 2}}
          - id: child
            type: workflow
            depends_on: [before]
            config:
              inputs: {n: "${{ nodes.before.output.value }}"}
              definition:
                name: Replay child
                inputs: {n: {type: integer}}
                tasks:
                  - {id: inner, type: test.echo, config: {value: "${{ inputs.n }}"}}
                outputs: {n: "${{ nodes.inner.output.value }}"}
          - {id: after, type: test.echo, depends_on: [child],
             config: {value: "${{ nodes.child.output.outputs.n }}"}}
        """),
    "continue_as_new": Example(_chain(8), history_limit=14),
    "cancel_failing_compensation": Example(
        """
        name: Replay cancel
        tasks:
          - {id: reserve, type: test.echo, compensate: release}
          - {id: long, type: test.sleep, depends_on: [reserve], config: {seconds: 60},
             heartbeat_timeout: 2s}
          - {id: release, type: test.permanent, config: {message: undo is down}}
        """,
        _cancel,
        formats=frozenset({2}),  # format-1 code never ended such a run (the bug it fixed)
    ),
    "fail_node": Example(
        """
        name: Replay fail
        tasks:
          - {id: book, type: test.echo, compensate: unbook}
          - {id: charge, type: test.permanent, depends_on: [book], on_error: pause}
          - {id: unbook, type: test.echo}
        """,
        _fail,
        formats=frozenset({2}),
    ),
    "raise_budget": Example(
        """
        name: Replay budget
        budget: {tokens: 100}
        tasks:
          - {id: first, type: ai.test_spend, config: {tokens: 150}}
          - {id: second, type: ai.test_spend, depends_on: [first], config: {tokens: 10}}
        """,
        _raise_budget,
        formats=frozenset({2}),
    ),
    "review": Example(
        """
        name: Replay review
        tasks:
          - {id: kind, type: test.review}
          - {id: after, type: test.echo, depends_on: [kind],
             config: {value: "${{ nodes.kind.output.label }}"}}
        """,
        _review,
        formats=frozenset({2}),
    ),
    "foreach_batches": Example(
        """
        name: Replay batches
        tasks:
          - id: each
            type: test.echo
            foreach: ${{ [1, 2, 3, 4, 5, 6, 7] }}
            batch_size: 3
            concurrency: 100
            config: {value: "${{ item }}"}
        """,
        formats=frozenset({2}),
    ),
    "local_execution": Example(
        """
        name: Replay local
        defaults:
          execution: local
          retry: {max_attempts: 3, backoff: fixed, initial_interval: 50ms}
        tasks:
          - {id: flaky, type: test.flaky, config: {failures: 1}}
          - {id: next, type: test.echo, depends_on: [flaky], config: {value: 2}}
          - {id: remote, type: test.echo, depends_on: [next], execution: remote}
        """,
        formats=frozenset({2}),
    ),
    "continue_as_new_foreach": Example(
        """
        name: Replay foreach chain
        tasks:
          - id: each
            type: test.echo
            foreach: ${{ [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }}
            concurrency: 2
            config: {value: "${{ item }}"}
        """,
        history_limit=20,
        formats=frozenset({2}),
    ),
}
"""Name → example. Together they cover every feature a history can hold: timers, signals,
every update, approvals, events, child workflows and batches, continue-as-new, cancel."""


def wanted() -> dict[str, Example]:
    """The examples the installed code can record."""
    return {name: ex for name, ex in EXAMPLES.items() if FORMAT in ex.formats}


async def record(names: list[str] | None = None, out: Path | None = None) -> list[Path]:
    """Run the examples on a private dev server and write their histories; return the files."""
    from temporalio.testing import WorkflowEnvironment

    from worker import running_worker

    folder = out or HISTORIES / f"format{FORMAT}"
    folder.mkdir(parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES),
        # Inputs and results inline: the corpus must replay without this run's payload store.
        data_converter=tideflow_client.data_converter(
            WorkerSettings.from_env().model_copy(update={"history_inline_limit": 0})
        ),
    )
    written: list[Path] = []
    try:
        with tempfile.TemporaryDirectory() as home:
            task_queue = f"record-{uuid.uuid4().hex[:8]}"
            settings = WorkerSettings(home=Path(home), task_queue=task_queue)
            async with running_worker(env.client, settings):
                for name, example in wanted().items():
                    if names and name not in names:
                        continue
                    written.extend(await _record_one(env.client, task_queue, name, example, folder))
    finally:
        await env.shutdown()
    return written


async def _record_one(
    client: Any, task_queue: str, name: str, example: Example, folder: Path
) -> list[Path]:
    definition = load_string(textwrap.dedent(example.definition), f"{name}.yaml", registry)
    workflow_id = f"replay-{name.replace('_', '-')}"
    payload = tideflow_client.run_input(definition, example.inputs)
    if example.history_limit is not None:
        payload = payload.model_copy(update={"history_limit": example.history_limit})
    # Started as any Temporal client would, so this runs under every format's code.
    handle = await client.start_workflow(
        "TideflowWorkflow",
        payload,
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=tideflow_client.search_attributes(definition),
    )
    if example.drive is not None:
        await example.drive(client, workflow_id)
    report = await tideflow_client.result(client, workflow_id, handle.result_run_id)
    executions = [e async for e in client.list_workflows(f'WorkflowId STARTS_WITH "{workflow_id}"')]
    executions.sort(key=lambda e: (e.id != workflow_id, e.id, e.start_time))
    paths = []
    for index, execution in enumerate(executions):
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        suffix = "" if index == 0 else f".{index}"
        path = folder / f"{name}{suffix}.json"
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        _index(folder, path.name, execution.id)
        paths.append(path)
        print(f"{path.relative_to(HISTORIES)}: {execution.id} {len(history.events)} events")
    print(f"{name}: {report.status}")
    return paths


def workflow_id_of(path: Path) -> str:
    """The workflow id a recorded history belongs to (replays need it: child and batch ids
    derive from it)."""
    index = path.parent / INDEX
    ids = json.loads(index.read_text()) if index.exists() else {}
    return str(ids.get(path.name) or f"replay-{path.name.split('.')[0].replace('_', '-')}")


INDEX = "workflow_ids.json"
"""Per format folder: history file → the workflow id it was recorded under."""


def _index(folder: Path, name: str, workflow_id: str) -> None:
    index = folder / INDEX
    ids = json.loads(index.read_text()) if index.exists() else {}
    ids[name] = workflow_id
    index.write_text(json.dumps(dict(sorted(ids.items())), indent=1) + "\n")


if __name__ == "__main__":
    # The failing examples fail on purpose: keep the worker's tracebacks out of the way.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    asyncio.run(record(sys.argv[1:] or None))
    # Temporal's native runtime threads can abort the interpreter while it finalizes
    # (PyGILState_Release); every file is written and closed by now, so skip finalization.
    sys.stdout.flush()
    os._exit(0)
