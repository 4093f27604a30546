"""``tideflow eval``: run a definition over labelled cases and score its outputs.

Cases are a folder of documents with an ``expected.json`` (file name → expected outputs; each
document is given as the definition's document input) or a JSONL file of ``{id?, inputs,
expected}``. An expectation names an output: a key of the run's ``outputs``, a path into a
node's output (``extract.entities.total_amount``), or a field found once in any node's output
(``invoice_number`` inside ``entities``). Values compare by kind: numbers within a tolerance,
dates after normalising (``March 14, 2024`` = ``2024-03-14``), text without case and extra
spaces, lists of strings as sets (labels), lists of objects item by item in any order, and
text rules ``{"$complete": true, "$max_words": 60, "$mentions": [...]}`` for summaries.

Scores: accuracy per field and per label (with the confusion of labels), how often extracted
line items add up and how often fields needed review, latency p50/p95 per case, and tokens and
cost per case. Everything here but :func:`run_cases` is pure, so scoring is tested exactly.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities._extraction_checks import line_items_add_up

if TYPE_CHECKING:
    from interpreter.model import Definition
    from interpreter.report import RunReport
    from starter.client import TideflowClient

DEFAULT_TOLERANCE = 0.01
"""Numbers agree within this much (absolute), or 0.01% of the expected value if larger."""
_MISSING = object()
_LABEL_NAMES = ("label", "labels", "category", "class", "kind")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SENTENCE_END = re.compile(r"""[.!?]["')\]]*$""")
_NUMBER_TEXT = re.compile(r"^[^\d-]*(-?[\d,]*\.?\d+)[^\d]*$")


class CasesError(ValueError):
    """The cases cannot be read (a missing file, bad JSON): one line naming where."""


@dataclass(frozen=True)
class Case:
    """One labelled case: the run's inputs and what its outputs should be."""

    id: str
    inputs: dict[str, Any]
    expected: dict[str, Any]


@dataclass
class CaseResult:
    """What one case's run gave."""

    case: Case
    report: RunReport | None
    seconds: float
    error: str | None = None


@dataclass
class FieldScore:
    """How often one expected output was right."""

    name: str
    right: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        """right / total (0 when nothing was compared)."""
        return self.right / self.total if self.total else 0.0


@dataclass
class Scores:
    """Everything ``tideflow eval`` prints."""

    cases: int
    completed: int
    fields: list[FieldScore]
    labels: dict[str, list[FieldScore]] = field(default_factory=dict)
    """Label field → one score per expected label (how often that label was given)."""
    confusion: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """Label field → expected label → answered label → count."""
    checks: list[FieldScore] = field(default_factory=list)
    """Properties of the outputs: line items that add up, fields needing review."""
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    tokens_per_case: float = 0.0
    cost_per_case: float | None = None
    models: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Right comparisons over all comparisons, every field together."""
        total = sum(f.total for f in self.fields)
        return sum(f.right for f in self.fields) / total if total else 0.0

    def as_json(self) -> dict[str, Any]:
        """The scores as plain JSON (``tideflow eval --json``)."""

        def rows(scores: Iterable[FieldScore]) -> dict[str, Any]:
            return {
                s.name: {"right": s.right, "total": s.total, "accuracy": round(s.accuracy, 4)}
                for s in scores
            }

        return {
            "cases": self.cases,
            "completed": self.completed,
            "accuracy": round(self.accuracy, 4),
            "fields": rows(self.fields),
            "labels": {name: rows(scores) for name, scores in self.labels.items()},
            "confusion": self.confusion,
            "checks": rows(self.checks),
            "latency_seconds": {
                "p50": round(self.latency_p50, 3),
                "p95": round(self.latency_p95, 3),
            },
            "tokens_per_case": round(self.tokens_per_case, 1),
            "cost_per_case_usd": None
            if self.cost_per_case is None
            else round(self.cost_per_case, 6),
            "models": self.models,
            "failures": self.failures,
        }


# --- reading cases -----------------------------------------------------------------------------


def load_cases(path: Path, document_input: str = "document") -> list[Case]:
    """The cases of a folder (``expected.json`` beside the documents) or a JSONL file."""
    if path.is_dir():
        expected_file = path / "expected.json"
        if not expected_file.is_file():
            raise CasesError(f"{path}: a folder of cases needs an expected.json")
        expected = _read_json(expected_file)
        if not isinstance(expected, dict):
            raise CasesError(f"{expected_file}: must map document file names to expectations")
        cases = []
        for name, wanted in expected.items():
            document = path / name
            if not document.is_file():
                raise CasesError(f"{expected_file}: {name!r} is not a file in {path}")
            if not isinstance(wanted, dict):
                raise CasesError(f"{expected_file}: {name!r} must map outputs to values")
            cases.append(Case(name, {document_input: str(document.resolve())}, wanted))
        return cases
    if not path.is_file():
        raise CasesError(f"{path}: no such file or folder")
    cases = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise CasesError(f"{path}:{number}: not JSON ({e})") from None
        if not isinstance(item, dict) or not isinstance(item.get("expected"), dict):
            raise CasesError(f"{path}:{number}: a case is {{inputs, expected}} (expected a map)")
        inputs = item.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise CasesError(f"{path}:{number}: inputs must be a map")
        cases.append(Case(str(item.get("id") or number), inputs, item["expected"]))
    if not cases:
        raise CasesError(f"{path}: no cases")
    return cases


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CasesError(f"{path}: {e}") from None


# --- comparing ---------------------------------------------------------------------------------


def output_value(report: RunReport, name: str) -> Any:
    """The value an expectation ``name`` refers to in a run's report (or a missing marker)."""
    if name in report.outputs:
        return report.outputs[name]
    head, _, rest = name.partition(".")
    node = report.nodes.get(head)
    if node is not None and rest:
        value: Any = node.output
        for step in rest.split("."):
            if isinstance(value, dict) and step in value:
                value = value[step]
            else:
                return _MISSING
        return value
    found = [v for n in report.nodes.values() for v in _find(n.output, name)]
    found += [v for v in report.outputs.values() for v in _find(v, name)]
    return found[0] if found else _MISSING


def _find(value: Any, name: str) -> list[Any]:
    if not isinstance(value, dict):
        return []
    if name in value:
        return [value[name]]
    return [v for inner in value.values() for v in _find(inner, name)]


def same(expected: Any, got: Any, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether ``got`` counts as ``expected`` (see the module docstring)."""
    if got is _MISSING:
        return False
    if isinstance(expected, dict) and expected and all(k.startswith("$") for k in expected):
        return _text_rules(expected, got)
    if isinstance(expected, bool) or expected is None:
        return bool(got == expected)
    if isinstance(expected, int | float):
        number = _as_number(got)
        return number is not None and abs(number - expected) <= max(tolerance, 1e-4 * abs(expected))
    if isinstance(expected, str):
        if _DATE.match(expected):
            return _as_date(got) == expected
        return isinstance(got, str | int | float) and _norm(str(got)) == _norm(expected)
    if isinstance(expected, list):
        if not isinstance(got, list):
            return False
        if all(isinstance(e, str) for e in expected):
            return {_norm(e) for e in expected} == {_norm(str(g)) for g in got}
        if len(expected) != len(got):
            return False
        unmatched = list(got)
        for item in expected:
            match = next((g for g in unmatched if same(item, g, tolerance)), _MISSING)
            if match is _MISSING:
                return False
            unmatched.remove(match)
        return True
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(
            same(v, got.get(k, _MISSING), tolerance) for k, v in expected.items()
        )
    return bool(got == expected)


def _text_rules(rules: dict[str, Any], got: Any) -> bool:
    if not isinstance(got, str):
        return False
    text = " ".join(got.split())
    for rule, value in rules.items():
        if rule == "$complete" and bool(value) != bool(_SENTENCE_END.search(text)):
            return False
        if rule == "$max_words" and len(text.split()) > int(value):
            return False
        if rule == "$mentions" and not all(_norm(str(m)) in _norm(text) for m in value):
            return False
        if rule == "$contains" and _norm(str(value)) not in _norm(text):
            return False
    return True


def _norm(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .,;:")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER_TEXT.match(value.strip())
        if match:
            try:
                return float(match.group(1).replace(",", ""))
            except ValueError:
                return None
    return None


def _as_date(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        pass
    from dateutil import parser

    try:
        parsed: date = parser.parse(value, dayfirst=False).date()
        return parsed.isoformat()
    except (ValueError, OverflowError, TypeError):
        return None


def is_label_field(name: str) -> bool:
    """Whether an expected output is a label (scored per label, with a confusion matrix)."""
    last = name.rsplit(".", 1)[-1].lower()
    return last in _LABEL_NAMES or last.endswith(("_label", "_category"))


# --- scoring -----------------------------------------------------------------------------------


def score(results: list[CaseResult], tolerance: float = DEFAULT_TOLERANCE) -> Scores:
    """The scores of a set of results."""
    fields: dict[str, FieldScore] = {}
    labels: dict[str, dict[str, FieldScore]] = {}
    confusion: dict[str, dict[str, dict[str, int]]] = {}
    add_up = FieldScore("line items add up")
    review = FieldScore("fields needing review")
    models: Counter[str] = Counter()
    failures = []
    for result in results:
        report = result.report
        completed = report is not None and report.status == "completed"
        if not completed:
            why = result.error or (report.error if report else None) or "no report"
            failures.append(f"{result.case.id}: {why}")
        for name, expected in result.case.expected.items():
            got = output_value(report, name) if report is not None else _MISSING
            right = completed and same(expected, got, tolerance)
            entry = fields.setdefault(name, FieldScore(name))
            entry.total += 1
            entry.right += right
            if is_label_field(name) and isinstance(expected, str):
                per = labels.setdefault(name, {}).setdefault(expected, FieldScore(expected))
                per.total += 1
                per.right += right
                answered = got if isinstance(got, str) else "(none)"
                row = confusion.setdefault(name, {}).setdefault(expected, {})
                row[answered] = row.get(answered, 0) + 1
        if report is None:
            continue
        for node in report.nodes.values():
            output = node.output if isinstance(node.output, dict) else {}
            entities = output.get("entities")
            if isinstance(entities, dict) and any(
                isinstance(v, list) and v and isinstance(v[0], dict) for v in entities.values()
            ):
                add_up.total += 1
                add_up.right += line_items_add_up(entities)
            if isinstance(output.get("needs_review"), list):
                review.total += 1
                review.right += bool(output["needs_review"])
            model = (node.usage or {}).get("model")
            if model:
                models[str(model)] += 1
    seconds = sorted(r.seconds for r in results)
    reports = [r.report for r in results if r.report is not None]
    costs = [r.usage.cost_usd for r in reports if r.usage.cost_usd is not None]
    return Scores(
        cases=len(results),
        completed=sum(1 for r in reports if r.status == "completed"),
        fields=list(fields.values()),
        labels={name: sorted(per.values(), key=lambda s: s.name) for name, per in labels.items()},
        confusion=confusion,
        checks=[c for c in (add_up, review) if c.total],
        latency_p50=percentile(seconds, 50),
        latency_p95=percentile(seconds, 95),
        tokens_per_case=sum(r.usage.ai_tokens for r in reports) / len(results) if results else 0,
        cost_per_case=sum(costs) / len(results) if costs else None,
        models=[name for name, _ in models.most_common()],
        failures=failures,
    )


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of sorted values; 0 for none."""
    if not sorted_values:
        return 0.0
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


# --- running -----------------------------------------------------------------------------------


def with_model(definition: Definition, model: str) -> Definition:
    """``definition`` with every AI node's ``model`` set to ``model`` (``--model``)."""
    from interpreter.node_types import canonical_type

    copy = definition.model_copy(deep=True)
    for node in copy.raw_nodes():
        if canonical_type(node.type).startswith("ai."):
            node.config["model"] = model
    return copy


async def run_cases(
    client: TideflowClient,
    definition: Definition,
    cases: list[Case],
    *,
    task_queue: str | None = None,
    progress: Any = None,
) -> list[CaseResult]:
    """Run every case, one after another (latency per document is what is measured; a
    local model answers one request at a time anyway)."""
    results = []
    for number, case in enumerate(cases, start=1):
        start = time.monotonic()
        try:
            run = await client.start(definition, case.inputs, task_queue=task_queue)
            report = await run.report()
            result = CaseResult(case, report, time.monotonic() - start)
        except Exception as e:  # a case that cannot start is a wrong case, not the end
            result = CaseResult(case, None, time.monotonic() - start, f"{type(e).__name__}: {e}")
        results.append(result)
        if progress is not None:
            progress(number, len(cases), result)
    return results
