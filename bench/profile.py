"""Where the worker's CPU goes per node: Tideflow's workflow against the hand-written one.

    .venv/bin/python -m bench.profile                      # fan-out of 100, M=1, 12 batches
    .venv/bin/python -m bench.profile --nodes 20 --sequence --batches 25

Starts the dev server and the worker process of :mod:`bench.engine` (Tideflow's worker as
built by ``worker.running_worker`` and the hand-written workflow's, in one process), warms both
up, then for each kind records the worker process with py-spy (``--gil``: only the thread
holding the GIL, i.e. Python CPU, sampled at ``--rate`` Hz) while it runs the batches, and
prints the worker CPU per node and the frames whose inclusive samples differ most between the
two (frames of the SDK's workflow sandbox included). py-spy comes with the ``bench`` extra;
the raw profiles (``--keep DIR``) load in speedscope. Rust threads of the SDK core are not
sampled: their CPU is in the per-node figure, not in the frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._table import table
from bench.engine import Bench, WorkerProcess, Workload

KINDS = {"yaml": "Tideflow", "hand": "hand-written"}
_SITE = re.compile(r" \(/.*?/site-packages/")
_LINE = re.compile(r":\d+\)$")


def inclusive_samples(path: Path) -> tuple[int, collections.Counter[str]]:
    """Total samples and, per frame (function and file, lines merged), the samples whose stack
    holds it, from py-spy's ``raw`` (collapsed stacks) output."""
    frames: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        names = {_LINE.sub(")", _SITE.sub(" (", f)) for f in stack.split(";")[1:]}
        for name in names:
            frames[name] += n
    return total, frames


async def profile(args: argparse.Namespace, out: Path) -> dict[str, tuple[float, Path]]:
    """Run the batches of each kind under py-spy; worker CPU ms per node and the profile."""
    import activities
    import bench._noop  # noqa: F401  (registers bench.noop, which the definition names)
    from activities import WorkerSettings
    from interpreter import load_string
    from starter import client as tideflow
    from starter.server import DevServer, free_port

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    found: dict[str, tuple[float, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="tideflow-profile-") as tmp:
        env = {**os.environ, "TIDEFLOW_HOME": str(Path(tmp) / "home")}
        os.environ["TIDEFLOW_HOME"] = env["TIDEFLOW_HOME"]
        server = DevServer(data_dir=Path(tmp) / "server", port=free_port(), headless=True)
        server.start()
        assert server.process is not None
        worker = await WorkerProcess.start(server.address, env)
        try:
            client = await tideflow.connect(server.address, settings=WorkerSettings.from_env())
            runner = Bench(client, worker, server.process.pid)
            parallel = not args.sequence
            workload = Workload(args.nodes, parallel, concurrent=1, rounds=args.batches)
            definition = load_string(workload.yaml(), catalog=activities.registry)
            warm = Workload(args.nodes, parallel, concurrent=1, rounds=2)
            for kind in KINDS:
                await runner.measure(kind, warm, definition)
            for kind in KINDS:
                raw = out / f"{kind}.txt"
                recorder = await asyncio.create_subprocess_exec(
                    spy,
                    "record",
                    "--pid",
                    str(worker.process.pid),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--rate",
                    str(args.rate),
                    "--gil",
                    "--nonblocking",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                await asyncio.sleep(1.5)  # py-spy attaches
                measured = await runner.measure(kind, workload, definition)
                recorder.send_signal(signal.SIGINT)
                await recorder.wait()
                found[kind] = (measured.worker_cpu / measured.activities * 1000, raw)
        finally:
            await worker.stop()
            server.stop()
    return found


def report(found: dict[str, tuple[float, Path]], top: int) -> str:
    """Worker CPU per node, then the frames that differ most (inclusive samples)."""
    (yaml_cpu, yaml_raw), (hand_cpu, hand_raw) = found["yaml"], found["hand"]
    yaml_total, yaml_frames = inclusive_samples(yaml_raw)
    hand_total, hand_frames = inclusive_samples(hand_raw)
    head = table(
        ["workflow", "worker CPU ms/node", "Python samples (GIL held)"],
        [["Tideflow", yaml_cpu, yaml_total], ["hand-written", hand_cpu, hand_total]],
    )
    names = sorted(
        set(yaml_frames) | set(hand_frames), key=lambda f: hand_frames[f] - yaml_frames[f]
    )
    rows = [
        [
            f"`{name[:110]}`",
            yaml_frames[name],
            hand_frames[name],
            yaml_frames[name] - hand_frames[name],
        ]
        for name in names[:top]
    ]
    frames = table(["frame (inclusive)", "Tideflow", "hand-written", "difference"], rows)
    sandbox = "_Instance._run_code (temporalio/worker/workflow_sandbox/_runner.py)"
    share = [
        f"{label}: {frames_[sandbox] / total:.0%} of its samples in the SDK sandbox's crossings"
        for label, frames_, total in (
            ("Tideflow", yaml_frames, yaml_total),
            ("hand-written", hand_frames, hand_total),
        )
        if total
    ]
    return f"{head}\n\n{frames}\n\n" + "\n".join(f"- {line}" for line in share)


def main(argv: list[str] | None = None) -> None:
    """Parse options, profile, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100, help="nodes per run")
    parser.add_argument("--sequence", action="store_true", help="a sequence, not a fan-out")
    parser.add_argument("--batches", type=int, default=12, help="runs one after another")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=30, help="frames listed")
    parser.add_argument("--keep", type=Path, help="keep the raw profiles in this folder")
    args = parser.parse_args(argv)
    code = 0
    with tempfile.TemporaryDirectory(prefix="tideflow-spy-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        try:
            print(report(asyncio.run(profile(args, out)), args.top), flush=True)
        except BaseException as e:  # reported; the exit status says it
            print(f"bench.profile: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            code = 1
    # As bench.engine: skip interpreter finalization (temporalio/sdk-python#300).
    os._exit(code)


if __name__ == "__main__":
    main()
