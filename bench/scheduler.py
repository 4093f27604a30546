"""The pure core without a server: scheduler events, loading definitions, expressions.

    .venv/bin/python -m bench.scheduler            # 100, 1,000 and 10,000 nodes
    .venv/bin/python -m bench.scheduler --quick    # 100 and 1,000, fewer repeats

Three tables:

1. **Scheduler** (``interpreter.scheduler``): a driver plays the shell's part for chains, wide
   fan-outs, random DAGs and a skip cascade — start what is ready (at most ``MAX_IN_FLIGHT`` at
   once, like ``TideflowWorkflow._launch_ready``), complete running nodes one at a time (in
   random order for the random DAG) — and reports µs per node event (a node transition in the
   run's history: started, completed or skipped; a skip cascade is one call and many events).
   The in-degree countdown makes that O(1) amortised: the column "vs smallest" must stay
   near 1.
2. **Definitions**: ``interpreter.load_string`` (YAML text, validated against
   ``activities.registry``), ``interpreter.load_data`` (the JSON the workflow receives: what
   every workflow start and every replay without a cached workflow pays) and
   ``interpreter.plan.compile_plan``, in µs per node.
3. **Expressions** (``interpreter.expressions``): what one node's expressions cost in the
   workflow — scope building as ``TideflowWorkflow._scope`` does it, then evaluation — by kind
   of expression and by the number of nodes in the run.

Times are the best of several repeats (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._table import table
from interpreter.expressions import evaluate, truthy
from interpreter.scheduler import GraphNode, Scheduler

NOW = "2026-01-01T00:00:00Z"
MAX_IN_FLIGHT = 500
"""Same cap as ``interpreter.workflow.MAX_IN_FLIGHT``."""


# -- graphs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A family of graphs: ``deps(n, rng)`` gives each node's dependencies by index."""

    name: str
    deps: Callable[[int, random.Random], list[list[int]]]
    random_order: bool = False
    skip_first: bool = False


def _chain(n: int, rng: random.Random) -> list[list[int]]:
    return [[i - 1] if i else [] for i in range(n)]


def _fan_out(n: int, rng: random.Random) -> list[list[int]]:
    """One root, n-2 parallel nodes after it, one join node after all of them."""
    return [[], *([0] for _ in range(n - 2)), list(range(1, n - 1))]


def _random_dag(n: int, rng: random.Random) -> list[list[int]]:
    """Each node depends on 0-3 earlier nodes, mostly near it (layers of ~50 nodes)."""
    out: list[list[int]] = []
    for i in range(n):
        if i == 0:
            out.append([])
            continue
        low = max(0, i - 50)
        k = min(i - low, rng.randint(0 if i < 5 else 1, 3))
        out.append(sorted(rng.sample(range(low, i), k)))
    return out


SHAPES = (
    Shape("chain", _chain),
    Shape("fan-out", _fan_out),
    Shape("random DAG", _random_dag, random_order=True),
    Shape("skip cascade (chain)", _chain, skip_first=True),
)


def graph_nodes(deps: list[list[int]], rng: random.Random) -> list[GraphNode]:
    """Scheduler nodes; one node in ten of a multi-dependency node joins on ``any``."""
    nodes = []
    for i, d in enumerate(deps):
        join: Any = "any" if len(d) > 1 and rng.random() < 0.1 else "all"
        nodes.append(GraphNode(f"n{i}", tuple(f"n{j}" for j in d), join))
    return nodes


def drive(scheduler: Scheduler, rng: random.Random | None, skip_first: bool) -> None:
    """Run the graph to its end the way the shell does."""
    scheduler.start(NOW)
    running: deque[str] = deque()
    first = True
    output = {"ok": True}
    while True:
        for node_id in scheduler.take_ready(MAX_IN_FLIGHT - len(running)):
            if first and skip_first:
                scheduler.skip_now(node_id, NOW, reason="when is false")
                first = False
                continue
            scheduler.node_started(node_id, NOW)
            running.append(node_id)
        if not running:
            break
        if rng is not None and len(running) > 1:
            running.rotate(-rng.randrange(len(running)))
        scheduler.node_completed(running.popleft(), NOW, output, attempts=1)
    if not scheduler.finished:
        raise RuntimeError("the scheduler did not finish the graph")


def best_of(repeat: int, run: Callable[[], float]) -> float:
    """The smallest of ``repeat`` measurements."""
    return min(run() for _ in range(repeat))


def bench_scheduler(sizes: list[int], repeat: int) -> str:
    """Table 1."""
    rows: list[list[object]] = []
    for shape in SHAPES:
        base: float | None = None
        for n in sizes:
            rng = random.Random(n)
            nodes = graph_nodes(shape.deps(n, rng), rng)
            counted: dict[str, int] = {}

            def build(nodes: list[GraphNode] = nodes) -> float:
                start = time.perf_counter_ns()
                Scheduler(nodes)
                return time.perf_counter_ns() - start

            def run(
                nodes: list[GraphNode] = nodes,
                shape: Shape = shape,
                n: int = n,
                counted: dict[str, int] = counted,
            ) -> float:
                scheduler = Scheduler(nodes)
                order = random.Random(n + 1) if shape.random_order else None
                start = time.perf_counter_ns()
                drive(scheduler, order, shape.skip_first)
                elapsed = time.perf_counter_ns() - start
                counted["events"] = sum(1 for t in scheduler.history if t.node is not None)
                return elapsed

            build_ns = best_of(repeat, build)
            run_ns = best_of(repeat, run)
            events = counted["events"]
            per_event = run_ns / events / 1000
            base = base or per_event
            edges = sum(len(node.depends_on) for node in nodes)
            rows.append(
                [
                    shape.name,
                    n,
                    edges,
                    events,
                    build_ns / n / 1000,
                    per_event,
                    run_ns / n / 1000,
                    f"{per_event / base:.2f}x",
                ]
            )
    return table(
        [
            "shape",
            "nodes",
            "edges",
            "events",
            "build µs/node",
            "µs/event",
            "µs/node",
            "vs smallest",
        ],
        rows,
    )


# -- definitions -------------------------------------------------------------------------------


def definition_yaml(deps: list[list[int]], name: str) -> str:
    """A ``tasks:`` definition of ``http.request`` nodes; each reads its first dependency."""
    lines = [f"name: bench {name}", "version: '1'", "tasks:"]
    for i, d in enumerate(deps):
        lines.append(f"  - id: n{i}")
        lines.append("    type: http.request")
        if d:
            lines.append(f"    depends_on: [{', '.join(f'n{j}' for j in d)}]")
            url = f"https://example.com/items/${{{{ nodes.n{d[0]}.output.status_code }}}}"
        else:
            url = f"https://example.com/items/{i}"
        lines.append(f"    config: {{url: '{url}', method: GET}}")
    return "\n".join(lines) + "\n"


def bench_definitions(sizes: list[int], repeat: int) -> str:
    """Table 2."""
    import activities
    from interpreter import load_string
    from interpreter.plan import compile_plan, load_plan

    rows: list[list[object]] = []
    for shape in SHAPES[:3]:
        for n in sizes:
            deps = shape.deps(n, random.Random(n))
            text = definition_yaml(deps, shape.name)
            # Big definitions take seconds: one repeat is enough to see the trend.
            times = repeat if n < 10_000 else 1
            holder: dict[str, Any] = {}

            def load(text: str = text, holder: dict[str, Any] = holder) -> float:
                start = time.perf_counter_ns()
                holder["definition"] = load_string(text, catalog=activities.registry)
                return time.perf_counter_ns() - start

            def compile_(holder: dict[str, Any] = holder) -> float:
                start = time.perf_counter_ns()
                holder["plan"] = json.loads(json.dumps(compile_plan(holder["definition"])))
                return time.perf_counter_ns() - start

            def load_workflow_side(holder: dict[str, Any] = holder) -> float:
                start = time.perf_counter_ns()
                load_plan(holder["plan"])
                return time.perf_counter_ns() - start

            load_ns = best_of(times, load)
            compile_ns = best_of(times, compile_)
            plan_ns = best_of(times, load_workflow_side)
            rows.append(
                [
                    shape.name,
                    n,
                    len(text) // 1024,
                    load_ns / n / 1000,
                    compile_ns / n / 1000,
                    plan_ns / n / 1000,
                    plan_ns / 1e6,
                ]
            )
    return table(
        [
            "shape",
            "nodes",
            "YAML KiB",
            "load_string µs/node",
            "compile_plan µs/node",
            "load_plan µs/node",
            "workflow init ms",
        ],
        rows,
    )


def bench_core(sizes: list[int], repeat: int) -> str:
    """Table 2b: the whole run core (``interpreter.core.RunCore``) driven to the end, answering
    every activity at once: the workflow-task CPU a run spends per node, without Temporal."""
    from interpreter.commands import StartActivity
    from interpreter.core import RunCore, RunIdentity
    from interpreter.events import WorkCompleted
    from interpreter.plan import load_plan

    identity = RunIdentity("bench", "run", "bench")
    rows: list[list[object]] = []
    for shape in SHAPES[:3]:
        for n in sizes:
            deps = shape.deps(n, random.Random(n))
            nodes = []
            for i, d in enumerate(deps):
                node: dict[str, Any] = {"id": f"n{i}", "type": "bench.noop"}
                if d:
                    node["depends_on"] = [f"n{j}" for j in d]
                    node["config"] = {"value": f"${{{{ nodes.n{d[0]}.output }}}}"}
                nodes.append(node)
            plan = load_plan({"format": 2, "name": "bench", "nodes": nodes})

            def run(plan: Any = plan) -> float:
                start = time.perf_counter_ns()
                core = RunCore(plan, {}, identity, started_at=NOW)
                pending = deque(c.label for c in core.start(NOW) if isinstance(c, StartActivity))
                while pending:
                    label = pending.popleft()
                    for command in core.feed(WorkCompleted(label, 1), NOW):
                        if isinstance(command, StartActivity):
                            pending.append(command.label)
                assert core.ended
                return time.perf_counter_ns() - start

            ns = best_of(repeat if n < 10_000 else 2, run)
            rows.append([shape.name, n, ns / n / 1000])
    smallest: dict[str, float] = {}
    for row in rows:
        smallest.setdefault(str(row[0]), float(str(row[2])))
        row.append(float(str(row[2])) / smallest[str(row[0])])
    return table(["shape", "nodes", "µs per node", "vs smallest"], rows)


# -- expressions -------------------------------------------------------------------------------

EXPRESSIONS: tuple[tuple[str, Any], ...] = (
    ("plain path", "${{ nodes.n1.output.status_code }}"),
    ("interpolated string", "https://example.com/${{ nodes.n1.output.status_code }}/x"),
    ("CEL comparison (when)", "${{ nodes.n1.output.status_code == 200 && inputs.limit > 3 }}"),
    ("CEL function", "${{ size(nodes.n1.output.items) > 2 ? 'many' : 'few' }}"),
    (
        "config of 4 values",
        {
            "url": "https://example.com/${{ nodes.n1.output.status_code }}",
            "json": {"n": "${{ nodes.n1.output.items }}", "limit": "${{ inputs.limit * 2 }}"},
            "method": "POST",
        },
    ),
    ("dynamic node (nodes[x])", "${{ nodes[vars.which].output.status_code }}"),
    ("CEL on a 1,000-row output", "${{ size(nodes.big.output.rows) > 0 }}"),
    ("plain path into a 1,000-row output", "${{ nodes.big.output.rows[0].id }}"),
)
BIG_OUTPUT = {
    "output": {"rows": [{"id": i, "name": f"row {i}", "total": i * 1.5} for i in range(1000)]},
    "status": "completed",
    "error": None,
    "attempts": 1,
}
"""A node whose output is a 1,000-row table (a parsed CSV, a query result)."""


def _node_view(i: int) -> dict[str, Any]:
    """What ``TideflowWorkflow._node_view`` gives for a completed node."""
    output = {"status_code": 200, "items": [1, 2, 3], "text": f"node {i}"}
    return {"output": output, "status": "completed", "error": None, "attempts": 1}


def _scope_for(compiled: Any, views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The scope ``TideflowWorkflow._scope`` builds: only the nodes an expression names,
    every node when one is chosen at run time."""
    from interpreter.expressions import references_of

    refs = references_of(compiled)
    ids: Any = views if refs.all_nodes else refs.nodes
    return {
        "inputs": {"limit": 5},
        "vars": {"which": "n1"},
        "nodes": {i: views[i] for i in ids if i in views},
        "run": {"id": "bench", "run_id": "r", "started_at": NOW},
    }


def per_call_ns(call: Callable[[], object], budget_s: float = 0.2) -> float:
    """Mean ns per call over a loop that runs about ``budget_s`` seconds (at least 5 calls)."""
    calls, start = 0, time.perf_counter_ns()
    deadline = start + budget_s * 1e9
    while calls < 5 or time.perf_counter_ns() < deadline:
        call()
        calls += 1
    return (time.perf_counter_ns() - start) / calls


def bench_expressions(sizes: list[int], repeat: int) -> str:
    """Table 3: µs per node (scope + evaluation), by kind and by nodes in the run."""
    from interpreter.expressions import compile_value

    rows: list[list[object]] = []
    for label, source in EXPRESSIONS:
        compiled = compile_value(source)
        row: list[object] = [label]
        for n in sizes:
            views = {f"n{i}": _node_view(i) for i in range(n)}
            if "nodes.big" in json.dumps(source):
                views["big"] = BIG_OUTPUT

            def one(compiled: Any = compiled, views: dict[str, Any] = views) -> None:
                truthy(evaluate(compiled, _scope_for(compiled, views)))

            def measure(one: Callable[[], None] = one) -> float:
                return per_call_ns(one)

            row.append(best_of(repeat, measure) / 1000)
        rows.append(row)
    return table(["expression", *(f"µs @ {n:,} nodes" for n in sizes)], rows)


# -- main --------------------------------------------------------------------------------------


def _sections(args: argparse.Namespace) -> Iterator[tuple[str, Callable[[], str]]]:
    sizes: list[int] = args.sizes
    yield "Scheduler core", lambda: bench_scheduler(sizes, args.repeat)
    yield "Run core (workflow-task CPU per node)", lambda: bench_core(sizes, args.repeat)
    if not args.skip_definitions:
        yield "Loading definitions", lambda: bench_definitions(sizes, args.repeat)
    yield "Expressions, per node", lambda: bench_expressions(sizes, args.repeat)


def main(argv: list[str] | None = None) -> None:
    """Parse options, run every section, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 nodes, 2 repeats")
    parser.add_argument(
        "--skip-definitions", action="store_true", help="skip loading (slow at 10,000 nodes)"
    )
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000]
    if args.quick:
        args.repeat = min(args.repeat, 2)
    print(f"Python {sys.version.split()[0]}, gc {'on' if gc.isenabled() else 'off'}")
    for title, section in _sections(args):
        started = time.perf_counter()
        text = section()
        print(f"\n## {title} ({time.perf_counter() - started:.1f} s)\n")
        print(text, flush=True)


if __name__ == "__main__":
    main()
