"""Loading and validating large definitions: seconds and peak memory against the node count.

    .venv/bin/python -m bench.validation                  # 1,000, 10,000 and 100,000 nodes
    .venv/bin/python -m bench.validation --sizes 1000,50000 --shapes chain
    .venv/bin/python -m bench.validation --code /path/to/other/checkout   # compare a version

Each case runs in a fresh child process (so its peak RSS is its own): it reads the generated
YAML text, then ``interpreter.loader.parse_yaml`` and ``interpreter.validate.check`` (against
``activities.registry``) run on it, as ``tideflow validate`` does. Two shapes:

* **chain** — each node an ``http.request`` depending on the previous one, its URL reading the
  previous node's output and the first node's (a distinct expression per node: every one is
  compiled, and every read checked against the node's ancestors);
* **fan-out** — one root and n-1 ``http.request`` nodes depending on it, each reading it.

Columns: seconds of CPU in the child for parsing and for checking (CPU, not wall time, so that
other work on a shared machine disturbs it less), microseconds per node, peak RSS of the child
in MB (about 90 MB of it is the interpreter and its imports). "vs smallest" is µs/node against
the smallest size of the same shape: near 1 means linear.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._table import table

REPO = Path(__file__).resolve().parent.parent


def chain(n: int) -> str:
    """n nodes in sequence; each reads its predecessor's output and the first node's."""
    lines = [
        "name: chain",
        "tasks:",
        "  - id: n0",
        "    type: http.request",
        "    config: {url: https://example.com/start}",
    ]
    for i in range(1, n):
        lines += [
            f"  - id: n{i}",
            "    type: http.request",
            f"    depends_on: [n{i - 1}]",
            "    config:",
            f'      url: "https://example.com/${{{{ nodes.n{i - 1}.output.status }}}}'
            '/${{ nodes.n0.output.status }}"',
        ]
    return "\n".join(lines) + "\n"


def fan_out(n: int) -> str:
    """One root and n-1 nodes depending on it, each reading its output."""
    lines = [
        "name: fan-out",
        "tasks:",
        "  - id: root",
        "    type: http.request",
        "    config: {url: https://example.com/root}",
    ]
    for i in range(1, n):
        lines += [
            f"  - id: n{i}",
            "    type: http.request",
            "    depends_on: [root]",
            '    config: {url: "https://example.com/${{ nodes.root.output.status }}"}',
        ]
    return "\n".join(lines) + "\n"


SHAPES = {"chain": chain, "fan-out": fan_out}

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from activities import registry
    from interpreter.loader import parse_yaml
    from interpreter.validate import check

    text = sys.stdin.read()
    start = time.process_time()
    document = parse_yaml(text, "bench.yaml")
    parsed = time.process_time()
    definition, problems = check(document, registry)
    checked = time.process_time()
    print(json.dumps({
        "bytes": len(text.encode()),
        "parse": parsed - start,
        "check": checked - parsed,
        "valid": definition is not None and not problems,
        "problems": [str(p) for p in problems[:3]],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
""")


def measure(shape: str, n: int, code: Path) -> dict[str, object]:
    """One case in a fresh child process running the checkout at ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=SHAPES[shape](n),
        capture_output=True,
        text=True,
        cwd=code,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{shape} {n}: the child failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="node counts")
    parser.add_argument("--shapes", default="chain,fan-out", help=", ".join(SHAPES))
    parser.add_argument(
        "--code", type=Path, default=REPO, help="the checkout to measure (default: this one)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for shape in args.shapes.split(","):
        smallest: float | None = None
        for n in sizes:
            r = measure(shape, n, args.code.resolve())
            if not r["valid"]:
                raise SystemExit(f"{shape} {n}: not valid: {r['problems']}")
            parse, check = float(str(r["parse"])), float(str(r["check"]))
            per_node = (parse + check) / n * 1e6
            smallest = smallest or per_node
            rows.append(
                [
                    shape,
                    n,
                    float(str(r["bytes"])) / 2**20,
                    parse,
                    check,
                    parse + check,
                    per_node,
                    f"{per_node / smallest:.2f}x",
                    float(str(r["peak_mb"])),
                ]
            )
            print(f"  {shape} {n:,}: {parse + check:.1f} s", file=sys.stderr, flush=True)
    headers = [
        "shape",
        "nodes",
        "YAML MB",
        "parse s",
        "check s",
        "total s",
        "µs/node",
        "vs smallest",
        "peak RSS MB",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
