"""Rules an extraction must satisfy: arithmetic of line items and totals, dates that exist, and
the user's own CEL ``checks`` over the entities.

``ai.extract`` runs them on the model's answer (:func:`violations`); a violation triggers one
targeted repair round and, if it remains, marks its fields ``needs_review``. ``tideflow eval``
uses :func:`line_items_add_up` to measure how often extracted line items add up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from interpreter.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    evaluate_expression,
    truthy,
)

CHECK_ROOTS = frozenset({"entities"})
"""Names a user's check may start from."""
DEFAULT_TOLERANCE = 0.01
"""Money tolerance: an absolute amount (a cent), or 0.01% of the value when that is larger."""

_CHECK_FIELD = re.compile(r"""\bentities\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*["']([^"']+)["']\s*\])""")


@dataclass(frozen=True)
class Violation:
    """One broken rule: the top-level fields it involves and what is wrong, in words."""

    fields: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class Check:
    """A user's rule: a CEL expression over ``entities`` that must be true."""

    source: str
    expression: Expression
    message: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """The entities the rule reads (what needs review when it fails)."""
        found = [a or b for a, b in _CHECK_FIELD.findall(self.source)]
        return tuple(dict.fromkeys(found))


def compile_check(source: str, message: str | None = None) -> Check:
    """Compile a check (``entities.total_amount > 0``, optionally inside ``${{ }}``);
    ValueError naming the problem when it does not compile."""
    text = source.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    try:
        expression = compile_expression(text, roots=CHECK_ROOTS)
    except ExpressionError as e:
        raise ValueError(f"check {source!r} does not compile: {e.message}") from None
    return Check(source, expression, message)


def violations(
    entities: dict[str, Any],
    *,
    checks: list[Check] = (),  # type: ignore[assignment]
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[Violation]:
    """Every rule ``entities`` breaks: line items' quantity * unit price = amount, line amounts
    = subtotal, subtotal (or line amounts) + tax = total where the entities hold them, dates
    that exist, then the user's checks."""
    found = arithmetic(entities, tolerance)
    for name, value in entities.items():
        if _is_date_name(name) and isinstance(value, str) and not _is_date(value):
            found.append(Violation((name,), f"{name}: {value!r} is not a date (YYYY-MM-DD)"))
    found += _user_checks(entities, checks)
    return found


def arithmetic(entities: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> list[Violation]:
    """The broken sums only: each line, the line amounts against the subtotal, and subtotal (or
    line amounts) plus tax against the total."""
    found: list[Violation] = []
    for name, value in entities.items():
        if isinstance(value, list):
            found += _line_arithmetic(name, value, tolerance)
    return found + _totals(entities, tolerance)


def line_items_add_up(entities: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether an extraction has line items and they add up (each line, and to the totals)."""
    if not any(isinstance(v, list) and v for v in entities.values()):
        return False
    return not arithmetic(entities, tolerance)


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= max(tolerance, 1e-4 * max(abs(a), abs(b)))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _line_arithmetic(name: str, items: list[Any], tolerance: float) -> list[Violation]:
    found = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        quantity = _number(item.get("quantity"))
        price = _number(item.get("unit_price"))
        amount = _number(item.get("amount"))
        if quantity is None or price is None or amount is None:
            continue
        if not _close(quantity * price, amount, tolerance):
            found.append(
                Violation(
                    (name,),
                    f"{name}[{index}]: quantity {_show(quantity)} * unit_price {_show(price)} = "
                    f"{_show(quantity * price)}, not amount {_show(amount)}",
                )
            )
    return found


def _role(name: str) -> str | None:
    lowered = name.lower()
    if "subtotal" in lowered or lowered in ("net", "net_amount", "net_total"):
        return "subtotal"
    if ("tax" in lowered or "vat" in lowered) and "rate" not in lowered:
        return "tax"
    if "total" in lowered:
        return "total"
    return None


def _totals(entities: dict[str, Any], tolerance: float) -> list[Violation]:
    found: list[Violation] = []
    roles: dict[str, tuple[str, float | None]] = {}
    for name, value in entities.items():
        role = _role(name)
        if role and role not in roles:
            roles[role] = (name, _number(value))
    lines = next(((n, v) for n, v in entities.items() if isinstance(v, list) and v), (None, None))
    lines_name, items = lines
    line_sum: float | None = None
    if lines_name is not None and items is not None:
        amounts = [_number(i.get("amount")) if isinstance(i, dict) else None for i in items]
        if all(a is not None for a in amounts):
            line_sum = sum(a for a in amounts if a is not None)
    subtotal = roles.get("subtotal")
    tax = roles.get("tax")
    total = roles.get("total")
    if (
        line_sum is not None
        and lines_name
        and subtotal
        and subtotal[1] is not None
        and not _close(line_sum, subtotal[1], tolerance)
    ):
        found.append(
            Violation(
                (lines_name, subtotal[0]),
                f"the line amounts add up to {_show(line_sum)}, not {subtotal[0]} "
                f"{_show(subtotal[1])}",
            )
        )
    if total is None or total[1] is None or tax is None:
        # Without the tax the total cannot be checked: it may include tax nobody asked for.
        return found
    if subtotal and subtotal[1] is not None:
        base, base_name, base_fields = subtotal[1], subtotal[0], (subtotal[0],)
    elif line_sum is not None and lines_name:
        base, base_name, base_fields = line_sum, "the line amounts", (lines_name,)
    else:
        return found
    tax_value = tax[1] or 0.0
    if not _close(base + tax_value, total[1], tolerance):
        found.append(
            Violation(
                (*base_fields, tax[0], total[0]),
                f"{base_name} {_show(base)} + {tax[0]} {_show(tax_value)} = "
                f"{_show(base + tax_value)}, not {total[0]} {_show(total[1])}",
            )
        )
    return found


def _user_checks(entities: dict[str, Any], checks: list[Check]) -> list[Violation]:
    found = []
    scope = {"entities": _doubles(entities)}
    for check in checks:
        try:
            passed = truthy(evaluate_expression(check.expression, scope))
            why = check.message or f"check `{check.source}` is false"
        except ExpressionError as e:
            passed = False
            why = check.message or f"check `{check.source}` could not be evaluated: {e.message}"
        if not passed:
            found.append(Violation(check.fields, why))
    return found


def _doubles(value: Any) -> Any:
    """Numbers as doubles: CEL does not mix int and double (``quantity * unit_price``)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_doubles(v) for v in value]
    return value


def _is_date_name(name: str) -> bool:
    return "date" in name.lower()


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _show(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
