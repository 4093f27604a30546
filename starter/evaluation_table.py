"""How ``tideflow eval`` prints its scores: a table per field and label, the confusion of
labels, checks of the outputs, then latency, tokens, cost and the models that answered."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from starter.evaluation import FieldScore, Scores


def print_scores(title: str, scores: Scores, console: Console | None = None) -> None:
    """Print ``scores`` of the definition ``title``."""
    console = console or Console(width=None if Console().is_terminal else 120)
    table = Table(title=escape(f"{title}: {scores.completed}/{scores.cases} runs completed"))
    table.add_column("field")
    table.add_column("right", justify="right")
    table.add_column("accuracy", justify="right")
    for entry in scores.fields:
        _row(table, entry.name, entry)
        for label in scores.labels.get(entry.name, []):
            _row(table, f"  {entry.name} = {label.name}", label)
    for check in scores.checks:
        _row(table, f"({check.name})", check)
    table.add_section()
    table.add_row("all fields", "", f"{scores.accuracy:.1%}", style="bold")
    console.print(table)
    for name, matrix in scores.confusion.items():
        answered = sorted({a for row in matrix.values() for a in row})
        confusion = Table(title=escape(f"{name}: expected (rows) by answered (columns)"))
        confusion.add_column("expected")
        for column in answered:
            confusion.add_column(escape(column), justify="right")
        for expected in sorted(matrix):
            row = matrix[expected]
            confusion.add_row(
                escape(expected),
                *(_count(row.get(a, 0), a == expected) for a in answered),
            )
        console.print(confusion)
    cost = "—" if scores.cost_per_case is None else f"${scores.cost_per_case:.6f}"
    console.print(
        f"latency per case: p50 {scores.latency_p50:.2f} s · p95 {scores.latency_p95:.2f} s · "
        f"tokens per case: {scores.tokens_per_case:.0f} · cost per case: {cost}",
        soft_wrap=True,
        markup=False,
    )
    if scores.models:
        console.print("models: " + ", ".join(scores.models), soft_wrap=True, markup=False)
    for failure in scores.failures:
        console.print(f"failed: {failure}", style="red", soft_wrap=True, markup=False)


def _row(table: Table, name: str, entry: FieldScore) -> None:
    style = "green" if entry.accuracy >= 0.9 else "yellow" if entry.accuracy >= 0.5 else "red"
    table.add_row(
        escape(name),
        f"{entry.right}/{entry.total}",
        f"[{style}]{entry.accuracy:.1%}[/]",
    )


def _count(value: int, diagonal: bool) -> str:
    if not value:
        return "·"
    return f"[bold green]{value}[/]" if diagonal else f"[red]{value}[/]"
