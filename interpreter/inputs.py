"""A run's inputs checked against the definition's ``inputs`` before anything runs."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from interpreter.model import Definition

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class InputError(ValueError):
    """Inputs that do not fit the definition: ``fields`` pairs each input's name with what is
    wrong with it; ``problems`` reads them as ``input 'name': message``."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self.problems = [f"input {name!r}: {message}" for name, message in fields]
        super().__init__("; ".join(self.problems))


class _Spec(Protocol):
    """What input checks read of a declared input (``InputSpec``, or a plan's ``InputPlan``)."""

    @property
    def type(self) -> str: ...
    @property
    def required(self) -> bool: ...
    @property
    def default(self) -> Any: ...
    @property
    def enum(self) -> Sequence[Any] | None: ...


def input_type_error(spec: _Spec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec``, or None."""
    if spec.type != "any":
        allowed = _JSON_TYPES[spec.type]
        is_bool = isinstance(value, bool)
        if (is_bool and spec.type != "boolean") or not isinstance(value, allowed):
            article = "an" if spec.type[0] in "aeiou" else "a"
            return f"must be {article} {spec.type}, got {_kind(value)}"
    if spec.enum is not None and value not in spec.enum:
        return f"must be one of {', '.join(repr(v) for v in spec.enum)}, got {value!r}"
    return None


def resolve_inputs(
    declared: Definition | Mapping[str, _Spec], given: dict[str, Any]
) -> dict[str, Any]:
    """The run's inputs with defaults applied; raise :class:`InputError` naming every bad field.

    ``declared`` is a definition or its declared inputs (a plan's). When nothing is declared,
    any inputs are accepted as they are.
    """
    specs: Mapping[str, _Spec] = declared.inputs if isinstance(declared, Definition) else declared
    if not specs:
        return dict(given)
    problems: list[tuple[str, str]] = []
    resolved: dict[str, Any] = {}
    for name in given:
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append((name, f"not declared by this workflow{hint}"))
    for name, spec in specs.items():
        if name in given:
            value = given[name]
            if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # CEL keeps int and double apart; a number is a double
            problem = input_type_error(spec, value)
            if problem:
                problems.append((name, problem))
            resolved[name] = value
        elif spec.default is not None:
            value = spec.default
            if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            resolved[name] = value
        elif spec.required:
            problems.append((name, "required"))
    if problems:
        raise InputError(problems)
    return resolved


def json_type(value: Any) -> str:
    """The JSON type of a value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def var_type_problem(declared: dict[str, Any], name: str, value: Any) -> str | None:
    """Why ``value`` cannot be assigned to var ``name``: vars keep the JSON type of their
    declared initial value (``null`` accepts anything)."""
    if name not in declared:
        return f"unknown var {name!r}: declare it under vars"
    initial = declared[name]
    if initial is None or json_type(initial) == json_type(value):
        return None
    return f"var {name!r} holds a {json_type(initial)}, not a {json_type(value)}"


def _kind(value: Any) -> str:
    kind = json_type(value)
    return f"{kind} {value!r}" if kind in ("string", "number") else kind
