"""YAML runs against a hand-written Temporal workflow, on the real embedded dev server.

    .venv/bin/python -m bench.engine            # N=20; 1, 50 and 200 concurrent; fan-out 100
    .venv/bin/python -m bench.engine --quick    # a short run (about a minute)

The script starts ``temporal server start-dev`` (the venv's ``temporal`` binary, through
``starter.server.DevServer``: SQLite with ``journal_mode=wal`` and ``synchronous=normal``,
headless, free ports, Tideflow's search attributes) and one worker process, and stops both at
the end. The worker process serves two task queues with the same options: Tideflow's worker
(``worker.running_worker``: ``TideflowWorkflow`` plus every registered node type, among them
``bench.noop`` from :mod:`bench._noop`) and a worker for the hand-written workflow of
:mod:`bench._handwritten`, which calls the same ``bench.noop`` activity.

For each workload the script starts M runs at once and waits for all of them, YAML first, then
hand-written (``--repeat`` alternates and keeps the best wall time). It reports wall time,
activities per second, history events and bytes of one run, and CPU time per activity of the
worker process (``resource.getrusage`` in that process, all its threads) and of the server
(``/proc/<pid>/stat``). Client, worker and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._table import table

YAML_QUEUE = "bench-yaml"
HAND_QUEUE = "bench-hand"
RUN_TIMEOUT = 600.0
"""Longest one batch of runs may take before the benchmark gives up (a hung worker)."""
_TICK = os.sysconf("SC_CLK_TCK")
_ANSWER = "@bench "
"""Prefix of the worker process's answers on stdout, where the SDK core also logs."""


# -- workloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """N no-op activities per run, in sequence or all at once, M runs at a time."""

    activities: int
    parallel: bool
    concurrent: int
    rounds: int = 1
    """Batches run one after another (more than one for M=1, to average latency)."""

    @property
    def label(self) -> str:
        """How the workload reads in the tables."""
        kind = "fan-out" if self.parallel else "sequence"
        return f"{kind} of {self.activities}"

    def yaml(self) -> str:
        """The definition: ``steps`` for a sequence, independent ``tasks`` for a fan-out."""
        key = "tasks" if self.parallel else "steps"
        lines = [f"name: bench {self.label}", "version: '1'", f"{key}:"]
        for i in range(self.activities):
            lines += [f"  - id: s{i}", "    type: bench.noop", f"    config: {{value: {i}}}"]
        return "\n".join(lines) + "\n"


@dataclass
class Measure:
    """One workload run by one kind of workflow."""

    kind: str
    wall: float
    runs: int
    activities: int
    worker_cpu: float
    server_cpu: float
    events: int
    history_bytes: int
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Activities completed per second of wall time."""
        return self.activities / self.wall


# -- the worker process --------------------------------------------------------------------------


async def serve_worker(address: str) -> None:
    """The worker process: both task queues; answers ``cpu`` on stdin with its CPU seconds."""
    from temporalio.worker import Worker

    import activities
    import bench._noop  # noqa: F401  (registers bench.noop before the workers are built)
    from activities import WorkerResources, WorkerSettings
    from bench._handwritten import HandWritten
    from starter.client import connect
    from worker import running_worker, workflow_runner

    settings = WorkerSettings.from_env()
    client = await connect(address, settings=settings)
    resources = WorkerResources(settings)
    hand = Worker(
        client,
        task_queue=HAND_QUEUE,
        workflows=[HandWritten],
        activities=activities.registry.activities(resources),
        workflow_runner=workflow_runner(),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=50,  # as worker.build_worker
    )
    async with running_worker(client, settings, task_queue=YAML_QUEUE), hand:
        await serve_commands()
    await resources.aclose()


async def serve_commands() -> None:
    """Say ``ready``, then answer the benchmark on stdin until ``quit`` or end of input:
    ``cpu`` (CPU seconds of this process, all threads) and ``rss`` (peak RSS in KiB)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"{_ANSWER}ready", flush=True)
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print(f"{_ANSWER}{usage.ru_utime + usage.ru_stime:.6f}", flush=True)
        elif command == "rss":
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"{_ANSWER}{peak_kib}", flush=True)
        elif command == "quit":
            break


class WorkerProcess:
    """The worker process as seen from the benchmark."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls,
        address: str,
        env: dict[str, str],
        *,
        module: str = "bench.engine",
        extra: Sequence[str] = (),
    ) -> WorkerProcess:
        """Start ``python -m MODULE --serve-worker ADDRESS EXTRA...`` and wait until it polls
        (it is killed if it does not)."""
        root = str(Path(__file__).resolve().parent.parent)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--serve-worker",
            address,
            *extra,
            cwd=root,
            env={**env, "PYTHONPATH": root},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(process)
        try:
            line = await asyncio.wait_for(worker._readline(), 120)
            if line != "ready":
                raise RuntimeError(f"the worker process did not start (said {line!r})")
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def kill(self) -> None:
        """Kill it at once (a worker that failed to start or hangs)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited on its own meanwhile
                self.process.kill()
            await self.process.wait()

    async def _readline(self) -> str:
        """The next answer; other output (the SDK core logs to stdout) goes to stderr."""
        assert self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                raise RuntimeError("the worker process exited")
            line = raw.decode().rstrip("\n")
            if line.startswith(_ANSWER):
                return line.removeprefix(_ANSWER)
            print(f"worker: {line}", file=sys.stderr, flush=True)

    async def cpu(self) -> float:
        """CPU seconds (user + system) the worker process has used so far."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"cpu\n")
        await self.process.stdin.drain()
        return float(await asyncio.wait_for(self._readline(), 30))

    async def peak_rss_mib(self) -> float:
        """The worker process's peak resident memory so far, in MiB."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"rss\n")
        await self.process.stdin.drain()
        return int(await asyncio.wait_for(self._readline(), 30)) / 1024

    async def stop(self) -> None:
        """Ask it to stop; kill it if it does not."""
        if self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b"quit\n")
            await self.process.stdin.drain()
            await asyncio.wait_for(self.process.wait(), 30)
        except (TimeoutError, ConnectionError):
            await self.kill()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc (the dev server is not our child
    in the getrusage sense until it exits)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


# -- running workloads ---------------------------------------------------------------------------


class Bench:
    """A connected client, the worker process and the server's pid."""

    def __init__(self, client: Any, worker: WorkerProcess, server_pid: int) -> None:
        self.client = client
        self.worker = worker
        self.server_pid = server_pid

    async def _start_yaml(self, definition: Any, workload: Workload) -> Any:
        from starter import client as tideflow

        return await tideflow.start(self.client, definition, task_queue=YAML_QUEUE)

    async def _start_hand(self, workload: Workload) -> Any:
        from bench._handwritten import HandWritten, HandWrittenInput

        return await self.client.start_workflow(
            HandWritten.run,
            HandWrittenInput(count=workload.activities, parallel=workload.parallel),
            id=f"bench-hand-{uuid.uuid4().hex[:12]}",
            task_queue=HAND_QUEUE,
        )

    async def measure(self, kind: str, workload: Workload, definition: Any) -> Measure:
        """Run ``workload.rounds`` batches of M runs of one kind; check every result."""
        cpu0, srv0 = await self.worker.cpu(), process_cpu(self.server_pid)
        latencies: list[float] = []
        handle: Any = None
        started = time.perf_counter()
        for _ in range(workload.rounds):
            handles = await asyncio.gather(
                *(
                    self._start_yaml(definition, workload)
                    if kind == "yaml"
                    else self._start_hand(workload)
                    for _ in range(workload.concurrent)
                )
            )
            batch = time.perf_counter()
            results = await asyncio.wait_for(
                asyncio.gather(*(h.result() for h in handles)), RUN_TIMEOUT
            )
            latencies.append(time.perf_counter() - batch)
            for result in results:
                _check(kind, result, workload)
            handle = handles[0]
        wall = time.perf_counter() - started
        cpu1, srv1 = await self.worker.cpu(), process_cpu(self.server_pid)
        history = await handle.fetch_history()
        runs = workload.rounds * workload.concurrent
        return Measure(
            kind=kind,
            wall=wall,
            runs=runs,
            activities=runs * workload.activities,
            worker_cpu=cpu1 - cpu0,
            server_cpu=srv1 - srv0,
            events=len(history.events),
            history_bytes=sum(event.ByteSize() for event in history.events),
            latencies=latencies,
        )


def _check(kind: str, result: Any, workload: Workload) -> None:
    """Every run must have done its work: a benchmark of failing runs measures nothing."""
    if kind == "yaml":
        done = [n for n in result.nodes.values() if n.status == "completed"]
        if result.status != "completed" or len(done) != workload.activities:
            raise RuntimeError(f"a YAML run did not complete: {result.status} {result.error}")
    elif len(result) != workload.activities:
        raise RuntimeError(f"a hand-written run returned {len(result)} outputs")


def workloads(args: argparse.Namespace) -> Iterator[Workload]:
    """The workloads the options ask for."""
    for m in args.concurrency:
        rounds = args.latency_rounds if m == 1 else 1
        yield Workload(args.activities, parallel=False, concurrent=m, rounds=rounds)
    for m in args.fanout_concurrency:
        rounds = args.latency_rounds if m == 1 else 1
        yield Workload(args.fanout, parallel=True, concurrent=m, rounds=rounds)


async def run_benchmark(args: argparse.Namespace) -> None:
    """Start server and worker, run every workload, print the tables."""
    import activities
    import bench._noop  # noqa: F401  (registers bench.noop, which the definitions name)
    from activities import WorkerSettings
    from interpreter import load_string
    from starter import client as tideflow
    from starter.server import DevServer, free_port

    with tempfile.TemporaryDirectory(prefix="tideflow-bench-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "TIDEFLOW_HOME": str(home / "home")}
        os.environ["TIDEFLOW_HOME"] = env["TIDEFLOW_HOME"]
        server = DevServer(data_dir=home / "server", port=free_port(), headless=True)
        server.start()
        assert server.process is not None
        worker: WorkerProcess | None = None
        try:
            worker = await WorkerProcess.start(server.address, env)
            settings = WorkerSettings.from_env()
            client = await tideflow.connect(server.address, settings=settings)
            runner = Bench(client, worker, server.process.pid)
            print(
                f"server {server.address} (pid {server.process.pid}), worker pid "
                f"{worker.process.pid}, {os.cpu_count()} cores, "
                f"load average {os.getloadavg()[0]:.2f} at start",
                flush=True,
            )
            # Warm up both kinds: first runs import and sandbox the workflow modules.
            warm = Workload(3, parallel=False, concurrent=2)
            warm_definition = load_string(warm.yaml(), catalog=activities.registry)
            for kind in ("yaml", "hand"):
                await runner.measure(kind, warm, warm_definition)
            results: list[tuple[Workload, Measure, Measure]] = []
            for workload in workloads(args):
                definition = load_string(workload.yaml(), catalog=activities.registry)
                best: dict[str, Measure] = {}
                for attempt in range(args.repeat):
                    order = ("yaml", "hand") if attempt % 2 == 0 else ("hand", "yaml")
                    for kind in order:
                        measured = await runner.measure(kind, workload, definition)
                        print(
                            f"    {workload.label}, M={workload.concurrent}, {kind}: "
                            f"{measured.wall:.2f} s, {measured.per_second:.0f} act/s, worker "
                            f"{measured.worker_cpu / measured.activities * 1000:.2f} ms/act, "
                            f"load {os.getloadavg()[0]:.2f}",
                            flush=True,
                        )
                        if kind not in best or measured.wall < best[kind].wall:
                            best[kind] = measured
                results.append((workload, best["yaml"], best["hand"]))
                _print_row(workload, best["yaml"], best["hand"])
            print(f"\nload average {os.getloadavg()[0]:.2f} at the end\n")
            print(report(results))
        finally:
            if worker is not None:
                await worker.stop()
            server.stop()


def _print_row(workload: Workload, yaml: Measure, hand: Measure) -> None:
    print(
        f"  {workload.label}, M={workload.concurrent}: YAML {yaml.per_second:.0f} act/s, "
        f"hand-written {hand.per_second:.0f} act/s",
        flush=True,
    )


def report(results: list[tuple[Workload, Measure, Measure]]) -> str:
    """The two tables: every measure, then YAML/hand-written ratios."""
    rows: list[list[object]] = []
    ratios: list[list[object]] = []
    for workload, yaml, hand in results:
        for m in (yaml, hand):
            rows.append(
                [
                    workload.label,
                    workload.concurrent,
                    "YAML" if m.kind == "yaml" else "hand-written",
                    m.runs,
                    m.wall,
                    statistics.mean(m.latencies) * 1000,
                    m.per_second,
                    m.events,
                    m.history_bytes / 1024,
                    m.worker_cpu / m.activities * 1000,
                    m.server_cpu / m.activities * 1000,
                ]
            )
        ratios.append(
            [
                workload.label,
                workload.concurrent,
                f"{yaml.wall / hand.wall:.2f}",
                f"{yaml.per_second / hand.per_second:.2f}",
                f"{yaml.events / hand.events:.2f}",
                f"{yaml.history_bytes / hand.history_bytes:.2f}",
                f"{yaml.worker_cpu / hand.worker_cpu:.2f}",
                f"{yaml.server_cpu / hand.server_cpu:.2f}" if hand.server_cpu else "-",
            ]
        )
    main = table(
        [
            "workload",
            "M",
            "workflow",
            "runs",
            "wall s",
            "batch ms",
            "act/s",
            "events/run",
            "history KiB/run",
            "worker CPU ms/act",
            "server CPU ms/act",
        ],
        rows,
    )
    ratio = table(
        [
            "workload",
            "M",
            "wall",
            "act/s",
            "events",
            "history bytes",
            "worker CPU",
            "server CPU",
        ],
        ratios,
    )
    return f"{main}\n\nRatio YAML / hand-written:\n\n{ratio}"


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    """Parse options and run (or serve as the worker process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=20, help="N: nodes of the sequence")
    parser.add_argument(
        "--concurrency", type=_int_list, default=[1, 50, 200], help="M: runs at once (sequence)"
    )
    parser.add_argument("--fanout", type=int, default=100, help="nodes of the fan-out")
    parser.add_argument(
        "--fanout-concurrency", type=_int_list, default=[1, 10], help="runs at once (fan-out)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="keep the best of this many")
    parser.add_argument(
        "--latency-rounds", type=int, default=5, help="runs one after another when M=1"
    )
    parser.add_argument("--quick", action="store_true", help="M=1 and 20, one fan-out, once")
    parser.add_argument("--serve-worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency = [1, 20]
        args.fanout_concurrency = [1]
        args.repeat = 1
        args.latency_rounds = 3
    code = 0
    try:
        if args.serve_worker:
            asyncio.run(serve_worker(args.serve_worker))
        else:
            asyncio.run(run_benchmark(args))
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalization: the Temporal client's Rust threads can crash it
    # (temporalio/sdk-python#300), which would hide the real exit status.
    os._exit(code)


if __name__ == "__main__":
    main()
