"""A foreach far bigger than one history, on the real embedded dev server.

    .venv/bin/python -m bench.foreach                   # 100,000 items, concurrency 200
    .venv/bin/python -m bench.foreach --items 10000     # quicker

One YAML run maps ``bench.noop`` over N items (``foreach`` with ``concurrency``): past its
batch size the items run in child workflows of 1,000 items, several at once, and the run
continues as new if its own history grows long. The baseline calls the same no-op activity N
times from hand-written workflows shaped the same way (runs of 1,000 activities, as many at
once and with as many activities in flight). Reported: wall time, items per second, the largest
history of any run involved (parent chain and children), and the worker process's peak RSS.
Server, worker and this client share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._table import table
from bench.engine import HAND_QUEUE, YAML_QUEUE, WorkerProcess

BATCH = 1000
CHILD_SHARE = 50


def definition(items: int, concurrency: int) -> str:
    """The YAML run: one foreach over ``inputs.items``."""
    return f"""
name: bench foreach {items}
inputs:
  items: {{type: array}}
tasks:
  - id: each
    type: bench.noop
    foreach: ${{{{ inputs.items }}}}
    concurrency: {concurrency}
    config: {{value: "${{{{ item }}}}"}}
"""


async def largest_history(client: Any, prefix: str) -> tuple[int, int]:
    """The most events any run whose workflow id starts with ``prefix`` holds, and how many
    runs there are (continue-as-new chain and children)."""
    largest, runs = 0, 0
    async for execution in client.list_workflows(f'WorkflowId STARTS_WITH "{prefix}"'):
        runs += 1
        largest = max(largest, execution.history_length or 0)
    return largest, runs


async def run_yaml(client: Any, items: int, concurrency: int) -> dict[str, Any]:
    """The YAML run; check its output."""
    import activities
    from interpreter import load_string
    from starter import client as tideflow

    loaded = load_string(definition(items, concurrency), catalog=activities.registry)
    workflow_id = f"bench-foreach-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    handle = await tideflow.start(
        client,
        loaded,
        {"items": list(range(items))},
        workflow_id=workflow_id,
        task_queue=YAML_QUEUE,
    )
    report = await tideflow.result(client, handle.id, handle.result_run_id)
    wall = time.perf_counter() - started
    output = report.nodes["each"].output
    if report.status != "completed" or len(output) != items:
        raise RuntimeError(f"the foreach did not complete: {report.status} {report.error}")
    largest, runs = await largest_history(client, workflow_id)
    return {"wall": wall, "largest": largest, "runs": runs}


async def run_handwritten(client: Any, items: int, concurrency: int) -> dict[str, Any]:
    """The same activities from hand-written workflows of 1,000 calls, shaped like the
    foreach's batches (as many at once, as many calls in flight)."""
    from bench._handwritten import HandWritten, HandWrittenInput

    runs = math.ceil(items / BATCH)
    at_once = min(runs, max(1, concurrency // CHILD_SHARE))
    limit = max(1, math.ceil(concurrency / at_once))
    gate = asyncio.Semaphore(at_once)
    prefix = f"bench-hand-foreach-{uuid.uuid4().hex[:8]}"

    async def one(index: int) -> None:
        count = min(BATCH, items - index * BATCH)
        async with gate:
            result = await client.execute_workflow(
                HandWritten.run,
                HandWrittenInput(count=count, parallel=True, limit=limit),
                id=f"{prefix}-{index}",
                task_queue=HAND_QUEUE,
            )
        if len(result) != count:
            raise RuntimeError("a hand-written run lost activities")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    wall = time.perf_counter() - started
    largest, count = await largest_history(client, prefix)
    return {"wall": wall, "largest": largest, "runs": count}


async def run_benchmark(args: argparse.Namespace) -> None:
    """Start server and worker, run both, print the table."""
    import bench._noop  # noqa: F401  (registers bench.noop)
    from activities import WorkerSettings
    from starter import client as tideflow
    from starter.server import DevServer, free_port

    with tempfile.TemporaryDirectory(prefix="tideflow-bench-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "TIDEFLOW_HOME": str(home / "home")}
        os.environ["TIDEFLOW_HOME"] = env["TIDEFLOW_HOME"]
        server = DevServer(data_dir=home / "server", port=free_port(), headless=True)
        server.start()
        worker: WorkerProcess | None = None
        try:
            worker = await WorkerProcess.start(server.address, env)
            client = await tideflow.connect(server.address, settings=WorkerSettings.from_env())
            load = os.getloadavg()[0]
            print(f"{os.cpu_count()} cores, load average {load:.2f} at start", flush=True)
            rss_start = await worker.peak_rss_mib()
            yaml = await run_yaml(client, args.items, args.concurrency)
            rss_yaml = await worker.peak_rss_mib()
            print(f"  YAML: {yaml}", flush=True)
            hand = await run_handwritten(client, args.items, args.concurrency)
            print(f"  hand-written: {hand}", flush=True)
            rows = [
                [
                    "YAML foreach",
                    args.items,
                    args.concurrency,
                    yaml["wall"],
                    args.items / yaml["wall"],
                    yaml["runs"],
                    yaml["largest"],
                    rss_yaml,
                ],
                [
                    "hand-written (runs of 1,000)",
                    args.items,
                    args.concurrency,
                    hand["wall"],
                    args.items / hand["wall"],
                    hand["runs"],
                    hand["largest"],
                    "",
                ],
            ]
            print(
                f"\nworker RSS at start {rss_start:.0f} MiB; load average "
                f"{os.getloadavg()[0]:.2f} at the end\n"
            )
            print(
                table(
                    [
                        "engine",
                        "items",
                        "concurrency",
                        "wall s",
                        "items/s",
                        "runs",
                        "largest history (events)",
                        "worker peak RSS MiB",
                    ],
                    rows,
                )
            )
        finally:
            if worker is not None:
                await worker.stop()
            server.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    asyncio.run(run_benchmark(args))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
