"""Worker start-up and definition validation, as a user meets them (issue 12's targets: under
2 s from ``tideflow worker`` to polling, under 1 s to validate 1,000 nodes).

    .venv/bin/python -m bench.startup --address HOST:PORT   # against a running server
    .venv/bin/python -m bench.startup                       # starts the embedded dev server

Each attempt starts ``python -m worker`` (what ``tideflow worker`` runs) in a fresh process
with an empty data folder and times, from the spawn: the log line saying it polls (imports,
settings, connection, workers built), and the first run completed (a one-node definition
started as soon as it polls). Validation is :func:`bench.validation.measure` (a fresh process,
CPU seconds of parsing and checking) of a 1,000-node chain and fan-out. :mod:`bench.compare`
includes the table in ``bench/results/compare.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import validation
from bench._table import table

ROOT = Path(__file__).resolve().parent.parent
POLLING = b"worker polling task queue"
"""What ``worker.main`` logs once its workers poll."""

_HELLO = """\
name: startup-probe
tasks:
  - id: hello
    type: code.python
    config: {code: "return 1"}
"""


@dataclass(frozen=True)
class StartUp:
    """One worker start: seconds from the spawn to polling and to the first completed run."""

    to_polling: float
    to_first_run: float


async def measure_worker(address: str, namespace: str = "default") -> StartUp:
    """Start a worker process on a fresh task queue and time it (see the module's docstring)."""
    from activities import registry
    from interpreter import load_string
    from starter import client as tideflow

    queue = f"startup-{uuid.uuid4().hex[:8]}"
    client = await tideflow.connect(address, namespace)
    definition = load_string(_HELLO, "startup.yaml", registry)
    with tempfile.TemporaryDirectory(prefix="tideflow-startup-") as home:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": namespace,
            "TIDEFLOW_HOME": home,
            "TIDEFLOW_TASK_QUEUE": queue,
            "PYTHONPATH": str(ROOT),
        }
        began = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stderr is not None
            while True:
                line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
                if not line:
                    raise RuntimeError(f"the worker exited ({await process.wait()})")
                if POLLING in line:
                    break
            polling = time.perf_counter() - began
            report = await tideflow.run(client, definition, task_queue=queue)
            first = time.perf_counter() - began
            if report.status != "completed":
                raise RuntimeError(f"the probe run {report.status}: {report.error}")
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()
    return StartUp(polling, first)


def validation_rows(sizes: tuple[int, ...] = (1000,)) -> list[list[object]]:
    """Rows: shape, nodes, parse s, check s, total CPU s, peak MiB (one fresh process each)."""
    rows: list[list[object]] = []
    for shape in validation.SHAPES:
        for n in sizes:
            m = validation.measure(shape, n, ROOT)
            parse, check = float(str(m["parse"])), float(str(m["check"]))
            rows.append(
                [shape, n, f"{parse:.3f}", f"{check:.3f}", f"{parse + check:.3f}", m["peak_mb"]]
            )
    return rows


async def report(address: str, attempts: int = 3) -> str:
    """The start-up and validation tables, with the targets."""
    starts = [await measure_worker(address) for _ in range(attempts)]
    polling = [s.to_polling for s in starts]
    first = [s.to_first_run for s in starts]
    start_rows = [
        ["spawn → polling", f"{min(polling):.2f}", f"{statistics.median(polling):.2f}", "< 2 s"],
        ["spawn → first run completed", f"{min(first):.2f}", f"{statistics.median(first):.2f}", ""],
    ]
    valid = validation_rows()
    return (
        f"### Worker start-up (`python -m worker`, fresh process, {attempts} attempts)\n\n"
        + table(["measure", "best s", "median s", "target"], start_rows)
        + "\n\n### Validation of 1,000 nodes (fresh process, CPU seconds; target < 1 s)\n\n"
        + table(["shape", "nodes", "parse s", "check s", "total s", "peak MiB"], valid)
        + "\n"
    )


async def _main(args: argparse.Namespace) -> None:
    if args.address:
        print(await report(args.address, args.attempts))
        return
    from starter.server import DevServer, free_port

    with tempfile.TemporaryDirectory(prefix="tideflow-startup-server-") as tmp:
        server = DevServer(data_dir=Path(tmp), port=free_port(), headless=True)
        server.start()
        try:
            print(await report(server.address, args.attempts))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--address", help="a running Temporal server (default: start one)")
    parser.add_argument("--attempts", type=int, default=3)
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
