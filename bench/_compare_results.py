"""What ``python -m bench.compare`` measures and how it reports it: the engines, one measure,
the tables (best attempt, medians, ratios to hand-written), the issue's targets, the Markdown
file with the machine's description, and the chart."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench._table import table
from bench.engine import Workload

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Engine:
    """One way of running the same work."""

    key: str
    label: str

    @property
    def queue(self) -> str:
        """Its own task queue, served by its own worker process."""
        return f"compare-{self.key}"


ENGINES = (
    Engine("tideflow", "Tideflow (remote)"),
    Engine("local", "Tideflow (local execution)"),
    Engine("hand", "hand-written"),
    Engine("bare", "hand-written, no sandbox"),
    Engine("dsl", "samples-python DSL"),
)
BY_KEY = {engine.key: engine for engine in ENGINES}
BASELINE = "hand"


@dataclass
class Measure:
    """One workload run by one engine, once."""

    engine: str
    wall: float
    runs: int
    activities: int
    worker_cpu: float
    server_cpu: float
    events: float
    history_bytes: float
    store_bytes: int
    peak_rss_mib: float
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Activities completed per second of wall time."""
        return self.activities / self.wall

    @property
    def worker_ms(self) -> float:
        """Worker CPU per activity, in ms."""
        return self.worker_cpu / self.activities * 1000

    @property
    def server_ms(self) -> float:
        """Server CPU per activity, in ms."""
        return self.server_cpu / self.activities * 1000

    def latency(self, q: float) -> float:
        """The q-quantile of the runs' start-to-result times, in ms."""
        return _quantile(self.latencies, q) * 1000


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Outcome:
    """Every attempt of every engine at one workload."""

    workload: Workload
    attempts: dict[str, list[Measure]]
    failures: dict[str, str] = field(default_factory=dict)
    """Engines whose runs failed or hung at this workload, and why (one line)."""

    def measured(self, key: str) -> bool:
        """Whether the engine has at least one attempt to report."""
        return bool(self.attempts.get(key))

    def missing(self, *keys: str) -> str | None:
        """Why one of these engines has nothing to compare, or None."""
        for key in keys:
            if not self.measured(key):
                reason = self.failures.get(key, "not run")
                return f"{BY_KEY[key].label} has no result ({reason})"
        return None

    def best(self, key: str) -> Measure:
        """The attempt with the shortest wall time."""
        return min(self.attempts[key], key=lambda m: m.wall)

    def median(self, key: str, value: Callable[[Measure], float]) -> float:
        """The median of one value over the attempts."""
        return statistics.median(value(m) for m in self.attempts[key])


# -- tables and targets ----------------------------------------------------------------------------


Column = tuple[str, Callable[[Measure], float]]
MEASURED: list[Column] = [
    ("wall s", lambda m: m.wall),
    ("act/s", lambda m: m.per_second),
    ("p50 ms", lambda m: m.latency(0.5)),
    ("p95 ms", lambda m: m.latency(0.95)),
    ("worker CPU ms/node", lambda m: m.worker_ms),
    ("server CPU ms/node", lambda m: m.server_ms),
]
"""Columns that vary from attempt to attempt (the medians table repeats them)."""
PER_RUN: list[Column] = [
    ("events/run", lambda m: round(m.events)),
    ("history KiB/run", lambda m: m.history_bytes / 1024),
    ("store KiB/run", lambda m: m.store_bytes / 1024),
    ("worker peak RSS MiB", lambda m: m.peak_rss_mib),
]
RATIOS: list[Column] = [
    ("act/s", lambda m: m.per_second),
    ("wall", lambda m: m.wall),
    ("worker CPU", lambda m: m.worker_ms),
    ("server CPU", lambda m: m.server_ms),
    ("events", lambda m: m.events),
    ("history bytes", lambda m: m.history_bytes),
]
KEYS = ["workload", "M", "engine"]


def report(outcomes: list[Outcome], keys: list[str], repeat: int) -> str:
    """The tables (best attempt, medians, ratios to hand-written) and the targets."""
    best: list[list[object]] = []
    medians: list[list[object]] = []
    ratios: list[list[object]] = []
    for outcome in outcomes:
        w = outcome.workload
        for key in filter(outcome.measured, keys):
            m = outcome.best(key)
            row: list[object] = [w.label, w.concurrent, BY_KEY[key].label]
            best.append([*row, m.runs, *(get(m) for _, get in MEASURED + PER_RUN)])
            medians.append([*row, *(outcome.median(key, get) for _, get in MEASURED)])
            if key != BASELINE and outcome.measured(BASELINE):
                hand = outcome.best(BASELINE)
                ratios.append([*row, *(_ratio(get(m), get(hand)) for _, get in RATIOS)])
    failed = [
        f"- {o.workload.label}, M={o.workload.concurrent}, {BY_KEY[key].label}: {reason}"
        for o in outcomes
        for key, reason in o.failures.items()
    ]
    headers = [name for name, _ in MEASURED]
    return (
        f"### Best of {repeat} (the attempt with the shortest wall time)\n\n"
        f"{table([*KEYS, 'runs', *headers, *(name for name, _ in PER_RUN)], best)}\n\n"
        f"### Medians of {repeat}\n\n{table([*KEYS, *headers], medians)}\n\n"
        "### Ratio to hand-written (best attempts)\n\n"
        f"{table([*KEYS, *(name for name, _ in RATIOS)], ratios)}\n\n"
        + (
            "### Failed or hung (left out of the tables above)\n\n" + "\n".join(failed) + "\n\n"
            if failed
            else ""
        )
        + f"### Targets (issue 12)\n\n{targets(outcomes, keys)}"
    )


def _ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


@dataclass
class _Target:
    what: str
    met: bool
    detail: str


def targets(outcomes: list[Outcome], keys: list[str]) -> str:
    """Met / not met for each of the issue's targets the run measured."""
    found: list[_Target] = []
    sequences = [o for o in outcomes if not o.workload.parallel and o.workload.activities == 20]
    if "local" in keys and sequences:
        at = next((o for o in sequences if o.workload.concurrent == 200), None)
        indicative = at is None
        at = at or max(sequences, key=lambda o: o.workload.concurrent)
        what = (
            "local execution >= 1.5x hand-written activities/s, sequence of 20 at M=200, "
            "a fraction (<= 0.5x) of its history events"
        )
        missing = at.missing("local", BASELINE)
        if missing:
            found.append(_Target(what, False, missing))
        else:
            local, hand = at.best("local"), at.best(BASELINE)
            speed, events = local.per_second / hand.per_second, local.events / hand.events
            detail = (
                f"{speed:.2f}x the activities/s (median "
                f"{at.median('local', _rate) / at.median(BASELINE, _rate):.2f}x), "
                f"{events:.2f}x the history events ({local.events:.0f} vs {hand.events:.0f})"
            )
            found.append(_Target(what, speed >= 1.5 and events <= 0.5, detail))
        if indicative:
            found[-1].detail += f"; indicative only: measured at M={at.workload.concurrent}"
    if "tideflow" in keys:
        for outcome in outcomes:
            w = outcome.workload
            if not w.parallel or w.activities not in (100, 1000):
                continue
            what = (
                f"{w.label} at M={w.concurrent}: Tideflow (remote) <= 1.02x hand-written "
                "wall and worker CPU, no more history events"
            )
            missing = outcome.missing("tideflow", BASELINE)
            if missing:
                found.append(_Target(what, False, missing))
                continue
            remote, hand = outcome.best("tideflow"), outcome.best(BASELINE)
            wall = remote.wall / hand.wall
            cpu = outcome.median("tideflow", _worker_ms) / outcome.median(BASELINE, _worker_ms)
            events = remote.events / hand.events
            detail = (
                f"wall {wall:.2f}x (best), worker CPU {cpu:.2f}x (median), events "
                f"{events:.2f}x ({remote.events:.0f} vs {hand.events:.0f})"
            )
            if not outcome.missing("tideflow", "bare"):
                # Tideflow's workflow runs unsandboxed: against hand-written code run the same.
                bare = outcome.best("bare")
                bare_cpu = outcome.median("tideflow", _worker_ms) / outcome.median(
                    "bare", _worker_ms
                )
                detail += (
                    f"; against the hand-written workflow without the sandbox: wall "
                    f"{remote.wall / bare.wall:.2f}x, worker CPU {bare_cpu:.2f}x"
                )
            found.append(
                _Target(what, wall <= 1.02 and cpu <= 1.02 and remote.events <= hand.events, detail)
            )
    for key in ("tideflow", "local"):
        compared = [o for o in outcomes if not o.missing(key, BASELINE)]
        if key not in keys or not compared:
            continue
        ratios = [(o.best(key).history_bytes / o.best(BASELINE).history_bytes, o) for o in compared]
        worst, at = max(ratios, key=lambda pair: pair[0])
        detail = f"worst {worst:.2f}x ({at.workload.label}, M={at.workload.concurrent})"
        if len(compared) < len(outcomes):
            detail += f"; {len(outcomes) - len(compared)} workload(s) without a result"
        found.append(
            _Target(
                f"{BY_KEY[key].label}: history bytes <= 1.1x hand-written, every workload",
                worst <= 1.1,
                detail,
            )
        )
    lines = []
    for target in found:
        verdict = "met" if target.met else "NOT met"
        lines.append(f"- **{verdict}**: {target.what} — {target.detail}")
    return "\n".join(lines) if lines else "- none measured by this run"


def _rate(m: Measure) -> float:
    return m.per_second


def _worker_ms(m: Measure) -> float:
    return m.worker_ms


# -- writing the results -------------------------------------------------------------------------


def describe_machine() -> dict[str, str]:
    """Cores, CPU, memory, OS, Python, temporalio and the Temporal CLI, the commit."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    temporal_cli = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError, ImportError):
        from starter.server import temporal_cli as cli_path

        out = subprocess.run([cli_path(), "--version"], capture_output=True, text=True, timeout=30)
        temporal_cli = out.stdout.strip() or temporal_cli
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        commit = head.stdout.strip() or commit
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "temporalio": importlib.metadata.version("temporalio"),
        "temporal CLI": temporal_cli,
        "commit": commit,
    }


def write_results(
    args: argparse.Namespace,
    outcomes: list[Outcome],
    keys: list[str],
    text: str,
    machine: dict[str, str],
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    elapsed: float,
    notes: list[str],
) -> None:
    """``PREFIX.md`` (the tables and the machine) and ``PREFIX.png`` (the chart)."""
    prefix = Path(args.output)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    md, png = prefix.with_suffix(".md"), prefix.with_suffix(".png")
    command = "python -m bench.compare " + " ".join(args.argv)
    kind = (
        "**Smoke run (`--quick`)**: smaller M, one attempt; the numbers show that the command "
        "works, not how the engines compare."
        if args.quick
        else f"Full run: every workload, engines in rotating order, {args.repeat} attempts each."
    )
    fmt = "{:.2f} / {:.2f} / {:.2f}"
    machine_lines = [f"- {name}: {value}" for name, value in machine.items()] + [
        f"- load average (1 / 5 / 15 min) at start: {fmt.format(*loads[0])}, "
        f"at the end: {fmt.format(*loads[1])}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes",
    ]
    body = [
        "# Tideflow vs hand-written Temporal code vs the samples-python DSL",
        "",
        f"`{command.strip()}` — {kind}",
        "",
        "## Machine",
        "",
        *machine_lines,
        "",
        "Server, workers (one process per engine) and the client share the machine's cores. "
        "Columns and method: bench/README.md, section “Side by side”.",
        *(f"\nNote: {note}." for note in notes),
        "",
        "## Results",
        "",
        text,
        "",
    ]
    md.write_text("\n".join(body))
    print(f"\nwrote {_relative(md)}", flush=True)
    try:
        chart(outcomes, keys, png, args)
    except ImportError:
        print("no chart: matplotlib is not installed (pip install -e '.[bench]')", flush=True)
    else:
        print(f"wrote {_relative(png)}", flush=True)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def chart(outcomes: list[Outcome], keys: list[str], path: Path, args: argparse.Namespace) -> None:
    """Grouped bars: activities/s (best attempt) of each engine, per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        f"{o.workload.label.replace('sequence', 'seq')}\nM={o.workload.concurrent}"
        for o in outcomes
    ]
    width = 0.8 / len(keys)
    figure, axes = plt.subplots(figsize=(max(8.0, 1.6 * len(groups)), 5.0))
    for i, key in enumerate(keys):
        values = [o.best(key).per_second if o.measured(key) else 0.0 for o in outcomes]
        labels = [
            f"{v:.0f}" if o.measured(key) else "failed"
            for v, o in zip(values, outcomes, strict=True)
        ]
        positions = [g + (i - (len(keys) - 1) / 2) * width for g in range(len(groups))]
        bars = axes.bar(positions, values, width, label=BY_KEY[key].label)
        axes.bar_label(bars, labels=labels, fontsize=7, padding=2)
    axes.set_xticks(range(len(groups)), groups, fontsize=8)
    axes.set_ylabel("activities / s (higher is better)")
    smoke = " — smoke run (--quick)" if args.quick else ""
    axes.set_title(
        f"No-op activities per second, best of {args.repeat}, "
        f"{os.cpu_count()} cores shared by server, workers and client{smoke}",
        fontsize=10,
    )
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
