"""Record the histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.record_histories

Starts a private Temporal dev server and a Tideflow worker, runs each example below to its end
and writes its history to ``tests/histories/<name>.json``. Re-record after a deliberate change
to what the workflow records; a change that breaks replay of the old files would break every run
in flight when a worker is upgraded, so keep the old files next to the new ones when that
matters.
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
from pathlib import Path

import tests.testing_node_types  # noqa: F401  (the examples use test.* node types)
from activities import WorkerSettings, registry
from interpreter import load_string
from starter import client as tideflow_client
from starter.server import SEARCH_ATTRIBUTES

HISTORIES = Path(__file__).resolve().parent / "histories"

EXAMPLES: dict[str, str] = {
    "sequential": """
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
        """,
    "diamond_when": """
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
        """,
    "errors_continue_fallback": """
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
        """,
    "wait_timer": """
        name: Replay wait
        tasks:
          - {id: before, type: test.echo}
          - {id: pause, type: wait, depends_on: [before], config: {duration: 300ms}}
          - {id: after, type: test.echo, depends_on: [pause]}
        """,
    "foreach": """
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
        """,
    "saga_failure": """
        name: Replay saga
        error_handling:
          on_failure: [notify]
        tasks:
          - {id: book, type: test.echo, compensate: unbook}
          - {id: charge, type: test.permanent, depends_on: [book]}
          - {id: unbook, type: test.echo, config: {value: "${{ failed_node }}"}}
          - {id: notify, type: test.echo, config: {value: "${{ error }}"}}
        """,
}
"""Name → definition. Each must end (completed or failed) without outside help."""


async def record(out: Path = HISTORIES) -> list[Path]:
    """Run every example on a private dev server and write its history; return the files."""
    from temporalio.testing import WorkflowEnvironment

    from worker import running_worker

    out.mkdir(parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=tideflow_client.data_converter(),
    )
    written = []
    try:
        with tempfile.TemporaryDirectory() as home:
            task_queue = f"record-{uuid.uuid4().hex[:8]}"
            settings = WorkerSettings(home=Path(home), task_queue=task_queue)
            async with running_worker(env.client, settings):
                for name, text in EXAMPLES.items():
                    definition = load_string(textwrap.dedent(text), f"{name}.yaml", registry)
                    report = await tideflow_client.run(
                        env.client,
                        definition,
                        workflow_id=f"replay-{name.replace('_', '-')}",
                        task_queue=task_queue,
                    )
                    history = await env.client.get_workflow_handle(
                        report.workflow_id, run_id=report.run_id
                    ).fetch_history()
                    path = out / f"{name}.json"
                    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
                    written.append(path)
                    print(f"{path.name}: {report.status}, {len(history.events)} events")
    finally:
        await env.shutdown()
    return written


if __name__ == "__main__":
    # The failing examples fail on purpose: keep the worker's tracebacks out of the way.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    asyncio.run(record())
    # Temporal's native runtime threads can abort the interpreter while it finalizes
    # (PyGILState_Release); every file is written and closed by now, so skip finalization.
    sys.stdout.flush()
    os._exit(0)
