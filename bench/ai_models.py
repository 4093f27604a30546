"""Accuracy and latency of the local models on the evaluation sets (examples/eval/).

    .venv/bin/python -m bench.ai_models [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]
        [--sets invoices,classify,summarize] [--out bench/ai-models.json]

Runs ``tideflow eval --json --model local:NAME`` for every set and model, one at a time (a
fresh process each, on the embedded Temporal server or the one at ``TEMPORAL_ADDRESS``),
keeps the JSON scores in ``--out`` and prints the table of bench/README.md against the targets
of issue 13: invoice header fields at least 95% right, line items that add up in at least 90%
of invoices, classification at least 90% right, every summary ending on a complete sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._table import table

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "examples" / "eval"
SETS = {
    "invoices": (EVAL / "invoices.yaml", EVAL / "invoices"),
    "classify": (EVAL / "classify.yaml", EVAL / "texts.jsonl"),
    "summarize": (EVAL / "summarize.yaml", EVAL / "summaries.jsonl"),
}
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def run(set_name: str, model: str) -> dict[str, Any]:
    """The scores of one set on one local model."""
    definition, cases = SETS[set_name]
    command = [
        sys.executable,
        "-m",
        "starter.cli",
        "eval",
        str(definition),
        "--cases",
        str(cases),
        "--json",
        "--model",
        f"local:{model}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"{set_name} on {model} failed:\n{done.stderr[-2000:]}")
    scores: dict[str, Any] = json.loads(done.stdout)
    # Paths relative to the project, so the recorded results do not name this checkout.
    for key in ("definition", "cases_path"):
        if isinstance(scores.get(key), str):
            scores[key] = _relative(scores[key])
    return scores


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def rows(results: dict[str, dict[str, dict[str, Any]]]) -> list[list[object]]:
    """One row per model and target."""
    out: list[list[object]] = []
    for model, by_set in results.items():
        for set_name, scores in by_set.items():
            latency = scores["latency_seconds"]
            timing = f"{latency['p50']:.1f} / {latency['p95']:.1f}"
            for name, value, target in _measures(set_name, scores):
                if target is None:
                    wanted, met = "—", "—"
                else:
                    wanted, met = f"{target:.0%}", "yes" if value >= target else "no"
                out.append([model, set_name, name, f"{value:.1%}", wanted, met, timing])
    return out


def _measures(set_name: str, scores: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    fields = scores["fields"]
    checks = scores.get("checks", {})
    if set_name == "invoices":
        header = [v for k, v in fields.items() if k != "line_items"]
        right = sum(v["right"] for v in header)
        total = sum(v["total"] for v in header) or 1
        adds = checks.get("line items add up", {"right": 0, "total": scores["cases"]})
        return [
            ("header fields right", right / total, 0.95),
            ("line items exactly right", fields.get("line_items", {}).get("accuracy", 0), None),
            ("line items add up", adds["right"] / max(scores["cases"], 1), 0.90),
        ]
    if set_name == "classify":
        return [("label right", fields["label"]["accuracy"], 0.90)]
    return [
        ("complete sentences within 60 words", fields["summary"]["accuracy"], 1.0),
        ("key facts kept", fields["summarize.summary"]["accuracy"], None),
    ]


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "ai-models.json")
    parser.add_argument(
        "--table-only", action="store_true", help="only print the table of the results in --out"
    )
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    if args.out.is_file():
        results = json.loads(args.out.read_text())
    if not args.table_only:
        for model in args.models.split(","):
            for set_name in args.sets.split(","):
                print(f"{set_name} on {model}…", file=sys.stderr, flush=True)
                load = os.getloadavg()[0]
                scores = run(set_name, model)
                scores["load_average"] = [round(load, 1), round(os.getloadavg()[0], 1)]
                results.setdefault(model, {})[set_name] = scores
                args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(
        table(
            ["model", "set", "measure", "measured", "target", "met", "p50 / p95 s per case"],
            rows(results),
        )
    )


if __name__ == "__main__":
    main()
