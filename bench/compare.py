"""Tideflow side by side with hand-written Temporal code and the samples-python DSL interpreter.

    .venv/bin/python -m bench.compare             # every workload, best of 3 (30-45 min, estimated)
    .venv/bin/python -m bench.compare --quick     # a smoke run: smaller M, once (a few minutes)

One process run starts the embedded dev server (``starter.server.DevServer``: SQLite with the
WAL pragmas, headless, free ports) and one worker process per engine, each on its own task queue
with the same options (``max_concurrent_workflow_tasks=50`` as ``worker.build_worker``, the
settings' activity and local-activity slots),
so worker CPU and peak RSS are each engine's own. The engines all call the no-op activity
``bench.noop`` (:mod:`bench._noop`) with the same ``NodeInput``:

- ``tideflow``: a Tideflow definition, every node a regular activity;
- ``local``: the same definition with ``defaults: {execution: local}`` (local activities);
- ``hand``: the hand-written workflow of :mod:`bench._handwritten` (a loop, ``asyncio.gather``),
  in the SDK's sandbox as a hand-written workflow runs by default;
- ``bare``: the same hand-written workflow without the sandbox, as Tideflow's own workflow runs
  (``workflow_sandbox`` in activities/settings.py: docs/decisions.md);
- ``dsl``: the samples-python DSL interpreter (:mod:`bench._samples_dsl`): a YAML tree of
  ``sequence``/``parallel`` statements with ``activity`` leaves, interpreted by one workflow.

For each workload the engines take turns in rotating order, ``--repeat`` times. A measure starts
M runs at once (``rounds`` batches one after another when M=1) and waits for all of them. The
tables give the attempt with the best wall time (and medians over the attempts), ratios to the
hand-written workflow and the issue's targets, and the script writes them with the machine's
description to ``bench/results/compare.md`` and a chart to ``bench/results/compare.png``.
An engine whose runs fail or hang at a workload is listed as such and the others go on.
Client, server and workers share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._compare_results import (
    BASELINE,
    BY_KEY,
    ENGINES,
    ROOT,
    Measure,
    Outcome,
    describe_machine,
    report,
    write_results,
)
from bench.engine import RUN_TIMEOUT, WorkerProcess, Workload, process_cpu

RESULTS = ROOT / "bench" / "results"
HISTORIES_PER_MEASURE = 10
"""Runs whose histories are fetched per measure (events and bytes are their mean): a fan-out's
events vary by a few between runs, with how completions batch into workflow tasks."""


# -- the worker processes ------------------------------------------------------------------------


async def serve_worker(address: str, key: str) -> None:
    """A worker process for one engine; answers ``cpu``/``rss`` on stdin (bench.engine)."""
    from temporalio.worker import Worker

    import activities
    import bench._noop  # noqa: F401  (registers bench.noop before the workers are built)
    from activities import WorkerResources, WorkerSettings
    from bench.engine import serve_commands
    from starter.client import connect
    from worker import build_worker, workflow_runner

    engine = BY_KEY[key]
    settings = WorkerSettings.from_env()
    client = await connect(address, settings=settings)
    resources = WorkerResources(settings)
    if key in ("tideflow", "local"):
        worker = build_worker(client, resources, task_queue=engine.queue)
    else:
        from bench._handwritten import HandWritten
        from bench._samples_dsl import SamplesDSLWorkflow

        activities.load_extensions()  # as build_worker: the same activities on every worker
        worker = Worker(
            client,
            task_queue=engine.queue,
            workflows=[SamplesDSLWorkflow if key == "dsl" else HandWritten],
            activities=activities.registry.activities(resources),
            workflow_runner=workflow_runner(sandboxed=key != "bare"),
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_local_activities=settings.max_concurrent_local_activities,
            max_concurrent_workflow_tasks=50,  # as worker.build_worker
        )
    try:
        async with worker:
            await serve_commands()
    finally:
        await resources.aclose()


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's peak RSS to its current RSS (Linux ``clear_refs``); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib(pid: int) -> float:
    """A process's peak RSS (``VmHWM``) since start or the last reset, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- definitions ---------------------------------------------------------------------------------


def tideflow_yaml(workload: Workload, *, local: bool) -> str:
    """Bench.engine's definition; with ``defaults: {execution: local}`` for local execution."""
    text = workload.yaml()
    if not local:
        return text
    head = "version: '1'\n"
    assert head in text
    return text.replace(head, head + "defaults: {execution: local}\n", 1)


def dsl_yaml(workload: Workload) -> str:
    """The samples-python DSL for the workload: one variable per activity holding its
    ``NodeInput``, a ``sequence`` or a ``parallel`` block of ``activity`` statements."""
    block, key = ("parallel", "branches") if workload.parallel else ("sequence", "elements")
    lines = ["variables:"]
    for i in range(workload.activities):
        lines.append(f"  input_s{i}: {{node_id: s{i}, config: {{value: {i}}}}}")
    lines += ["root:", f"  {block}:", f"    {key}:"]
    for i in range(workload.activities):
        lines += [
            "      - activity:",
            "          name: bench.noop",
            f"          arguments: [input_s{i}]",
            f"          result: s{i}",
        ]
    return "\n".join(lines) + "\n"


# -- measuring -----------------------------------------------------------------------------------


Starter = Callable[[], Awaitable[Any]]


class Compare:
    """The client, the server's pid, one worker process per engine, the payload store."""

    def __init__(
        self, client: Any, server_pid: int, workers: dict[str, WorkerProcess], store: Path
    ) -> None:
        self.client = client
        self.server_pid = server_pid
        self.workers = workers
        self.store = store
        self.rss_resettable = True

    def starters(self, workload: Workload) -> dict[str, Starter]:
        """For each engine, a function starting one run (definitions loaded once, here)."""
        import activities
        import bench._noop  # noqa: F401  (registers bench.noop, which the definitions name)
        from bench._handwritten import HandWritten, HandWrittenInput
        from bench._samples_dsl import SamplesDSLWorkflow, parse
        from interpreter import load_string
        from starter import client as tideflow

        remote = load_string(tideflow_yaml(workload, local=False), catalog=activities.registry)
        local = load_string(tideflow_yaml(workload, local=True), catalog=activities.registry)
        dsl = parse(dsl_yaml(workload))
        hand = HandWrittenInput(count=workload.activities, parallel=workload.parallel)

        def start_tideflow(definition: Any, key: str) -> Starter:
            return lambda: tideflow.start(self.client, definition, task_queue=BY_KEY[key].queue)

        def start_workflow(run: Any, arg: Any, key: str) -> Starter:
            return lambda: self.client.start_workflow(
                run, arg, id=f"compare-{key}-{uuid.uuid4().hex[:12]}", task_queue=BY_KEY[key].queue
            )

        return {
            "tideflow": start_tideflow(remote, "tideflow"),
            "local": start_tideflow(local, "local"),
            "hand": start_workflow(HandWritten.run, hand, "hand"),
            "bare": start_workflow(HandWritten.run, hand, "bare"),
            "dsl": start_workflow(SamplesDSLWorkflow.run, dsl, "dsl"),
        }

    async def measure(self, key: str, workload: Workload, start: Starter) -> Measure:
        """``workload.rounds`` batches of M runs of one engine; check every result."""
        worker = self.workers[key]
        pid = worker.process.pid
        self.rss_resettable = reset_peak_rss(pid) and self.rss_resettable
        store0 = _folder_bytes(self.store)
        cpu0, srv0 = await worker.cpu(), process_cpu(self.server_pid)

        handles: list[Any] = []

        async def one_run() -> float:
            began = time.perf_counter()
            handle = await start()
            handles.append(handle)
            result = await handle.result()
            elapsed = time.perf_counter() - began
            _check(key, result, workload)
            return elapsed

        async def one_batch() -> list[float]:
            # A TaskGroup, not gather: one failed run cancels the waits on the others.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one_run()) for _ in range(workload.concurrent)]
            return [task.result() for task in tasks]

        # 10 fan-outs of 1,000 can outlast bench.engine's limit on a loaded machine.
        timeout = max(RUN_TIMEOUT, workload.concurrent * workload.activities / 10)
        latencies: list[float] = []
        started = time.perf_counter()
        try:
            for _ in range(workload.rounds):
                latencies += await asyncio.wait_for(one_batch(), timeout)
        except Exception as e:
            await _terminate(handles)  # hung runs would load the next measures
            raise MeasureFailed(_failure(e, timeout)) from e
        wall = time.perf_counter() - started
        cpu1, srv1 = await worker.cpu(), process_cpu(self.server_pid)
        rss = peak_rss_mib(pid)
        store1 = _folder_bytes(self.store)
        histories = [await h.fetch_history() for h in handles[:HISTORIES_PER_MEASURE]]
        runs = workload.rounds * workload.concurrent
        return Measure(
            engine=key,
            wall=wall,
            runs=runs,
            activities=runs * workload.activities,
            worker_cpu=cpu1 - cpu0,
            server_cpu=srv1 - srv0,
            events=statistics.mean(len(h.events) for h in histories),
            history_bytes=statistics.mean(
                sum(event.ByteSize() for event in h.events) for h in histories
            ),
            store_bytes=max(0, store1 - store0) // runs,
            peak_rss_mib=rss,
            latencies=latencies,
        )


class MeasureFailed(Exception):
    """An engine's runs failed or did not end in time; its pending runs are terminated."""


def _failure(error: BaseException, timeout: float) -> str:
    """One line saying why a measure failed."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return f"the runs did not complete within {timeout:.0f} s"
    return f"{type(error).__name__}: {error}"


async def _terminate(handles: list[Any]) -> None:
    """Terminate runs that may still be open (errors for closed ones are expected)."""

    async def one(handle: Any) -> None:
        with contextlib.suppress(Exception):
            await handle.terminate(reason="bench.compare: the measure failed")

    await asyncio.gather(*(one(h) for h in handles))


def _store_folder(settings: Any) -> Path:
    """The payload store's folder (the default ``file://`` store under TIDEFLOW_HOME)."""
    store = urlsplit(settings.resolved_payload_store)
    if store.scheme != "file":
        raise SystemExit(f"the comparison needs a file payload store, not {store.scheme}://")
    return Path(url2pathname(unquote(store.path)))


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under a folder (the payload store; 0 before its first file)."""
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _check(key: str, result: Any, workload: Workload) -> None:
    """Every run must have done its work: a benchmark of failing runs measures nothing."""
    n = workload.activities
    if key in ("tideflow", "local"):
        done = [node for node in result.nodes.values() if node.status == "completed"]
        if result.status != "completed" or len(done) != n:
            raise RuntimeError(f"a {key} run did not complete: {result.status} {result.error}")
    elif key in ("hand", "bare"):
        if len(result) != n:
            raise RuntimeError(f"a hand-written run returned {len(result)} outputs")
    elif any(f"s{i}" not in result for i in range(n)):
        raise RuntimeError("a samples-python DSL run lacks results")


# -- the run -------------------------------------------------------------------------------------


def workloads(args: argparse.Namespace) -> Iterator[Workload]:
    """The workloads the options ask for."""

    def rounds(m: int) -> int:
        return args.latency_rounds if m == 1 else 1

    for m in args.concurrency:
        yield Workload(args.activities, parallel=False, concurrent=m, rounds=rounds(m))
    for width in args.fanout:
        for m in args.fanout_concurrency:
            yield Workload(width, parallel=True, concurrent=m, rounds=rounds(m))


async def run_comparison(args: argparse.Namespace) -> None:
    """Start the server and the workers, run every workload, print and write the results."""
    from activities import WorkerSettings
    from starter import client as tideflow
    from starter.server import DevServer, free_port

    keys = list(dict.fromkeys(args.engines))
    machine = describe_machine()
    load_start = os.getloadavg()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tideflow-compare-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "TIDEFLOW_HOME": str(home)}
        os.environ["TIDEFLOW_HOME"] = env["TIDEFLOW_HOME"]
        server = DevServer(data_dir=Path(tmp) / "server", port=free_port(), headless=True)
        workers: dict[str, WorkerProcess] = {}
        try:
            server.start()
            assert server.process is not None
            for key in keys:  # one at a time: a failed start is then clearly one engine's
                workers[key] = await WorkerProcess.start(
                    server.address, env, module="bench.compare", extra=("--engine", key)
                )
            settings = WorkerSettings.from_env()
            client = await tideflow.connect(server.address, settings=settings)
            bench = Compare(client, server.process.pid, workers, _store_folder(settings))
            print(
                f"server {server.address} (pid {server.process.pid}); workers "
                + ", ".join(f"{k} pid {w.process.pid}" for k, w in workers.items())
                + f"; {machine['cores']} cores, load average {load_start[0]:.2f} at start",
                flush=True,
            )
            # Warm every engine up: first runs import and sandbox the workflow modules.
            for warm in (Workload(3, False, 2), Workload(10, True, 1)):
                starters = bench.starters(warm)
                for key in keys:
                    await bench.measure(key, warm, starters[key])
            outcomes = [
                await run_workload(bench, workload, keys, args, turn=i * args.repeat)
                for i, workload in enumerate(workloads(args))
            ]
            # Issue 12's start-up and validation targets, on the same server.
            from bench import startup

            starting = await startup.report(server.address, attempts=1 if args.quick else 3)
            load_end = os.getloadavg()
            text = report(outcomes, keys, args.repeat) + "\n" + starting
            print(f"\nload average {load_end[0]:.2f} at the end\n\n{text}", flush=True)
            notes = []
            if not bench.rss_resettable:
                notes.append("peak RSS could not be reset between measures: it is cumulative")
            write_results(
                args,
                outcomes,
                keys,
                text,
                machine,
                (load_start, load_end),
                time.perf_counter() - began,
                notes,
            )
        finally:
            await asyncio.gather(
                *(worker.stop() for worker in workers.values()), return_exceptions=True
            )
            server.stop()


async def run_workload(
    bench: Compare, workload: Workload, keys: list[str], args: argparse.Namespace, *, turn: int
) -> Outcome:
    """Every engine ``args.repeat`` times at one workload, in rotating order from ``turn``.

    An engine whose runs fail or hang is recorded as failed and left out of the remaining
    attempts at this workload: the comparison goes on with the others."""
    starters = bench.starters(workload)
    outcome = Outcome(workload, {key: [] for key in keys})

    async def attempt(key: str, measured: Workload) -> Measure | None:
        try:
            return await bench.measure(key, measured, starters[key])
        except MeasureFailed as failure:
            outcome.failures[key] = str(failure)
            print(
                f"    {workload.label}, M={workload.concurrent}, {BY_KEY[key].label}: "
                f"FAILED: {failure}",
                flush=True,
            )
            return None

    if not args.quick:  # one run each first: plans compiled, caches filled, as in steady use
        single = Workload(workload.activities, workload.parallel, 1)
        for key in keys:
            await attempt(key, single)
    for round_ in range(args.repeat):
        shift = (turn + round_) % len(keys)
        for key in keys[shift:] + keys[:shift]:
            if key in outcome.failures:
                continue
            measured = await attempt(key, workload)
            if measured is not None:
                outcome.attempts[key].append(measured)
                _print_progress(workload, measured)
    return outcome


def _print_progress(workload: Workload, m: Measure) -> None:
    print(
        f"    {workload.label}, M={workload.concurrent}, {BY_KEY[m.engine].label}: "
        f"{m.wall:.2f} s, {m.per_second:.0f} act/s, worker {m.worker_ms:.2f} ms/act, "
        f"{m.events:.0f} events/run, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )


# -- entry point ---------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _key_list(text: str) -> list[str]:
    keys = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {unknown}; known: {list(BY_KEY)}")
    return keys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``--quick`` replaces the workloads' sizes with smaller ones."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller M, once")
    parser.add_argument("--repeat", type=int, default=3, help="attempts per engine and workload")
    parser.add_argument("--activities", type=int, default=20, help="nodes of the sequence")
    parser.add_argument(
        "--concurrency", type=_int_list, default=[1, 50, 200], help="M: runs at once (sequence)"
    )
    parser.add_argument("--fanout", type=_int_list, default=[100, 1000], help="fan-out widths")
    parser.add_argument(
        "--fanout-concurrency", type=_int_list, default=[1, 10], help="M: runs at once (fan-out)"
    )
    parser.add_argument(
        "--latency-rounds", type=int, default=5, help="batches one after another when M=1"
    )
    parser.add_argument(
        "--engines",
        type=_key_list,
        default=[e.key for e in ENGINES],
        help="comma-separated subset of tideflow,local,hand,bare,dsl (hand is required)",
    )
    parser.add_argument(
        "--output",
        help="results path without suffix (default bench/results/compare, "
        "bench/results/compare-quick with --quick)",
    )
    parser.add_argument("--serve-worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=list(BY_KEY), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.concurrency = [1, 20]
        args.fanout_concurrency = [1]
        args.repeat = 1
        args.latency_rounds = 1
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if BASELINE not in args.engines:
        parser.error("--engines must include hand: the ratios are to the hand-written workflow")
    if args.output is None:
        args.output = str(RESULTS / ("compare-quick" if args.quick else "compare"))
    return args


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the comparison (or serve as one engine's worker process)."""
    args = parse_args(argv)
    code = 0
    try:
        if args.serve_worker:
            asyncio.run(serve_worker(args.serve_worker, args.engine or "tideflow"))
        else:
            asyncio.run(_main_cancellable(run_comparison(args)))
    except SystemExit as e:  # a located one-line error (the payload store is not a folder)
        print(f"bench.compare: {e}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench.compare: interrupted (server and workers stopped)", file=sys.stderr)
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalization: the Temporal client's Rust threads can crash it
    # (temporalio/sdk-python#300), which would hide the real exit status.
    os._exit(code)


async def _main_cancellable(work: Awaitable[None]) -> None:
    """Run ``work``; SIGTERM cancels it like Ctrl-C, so the server and workers are stopped."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


if __name__ == "__main__":
    main()
