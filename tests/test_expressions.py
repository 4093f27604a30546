"""``${{ … }}`` expressions: CEL compiled at load time and evaluated in the workflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from interpreter.expressions import (
    ExpressionError,
    Template,
    compile_string,
    compile_value,
    evaluate,
    references_of,
    truthy,
)
from interpreter.limits import MAX_EXPRESSION_CHARS, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_TERMS

REPO = Path(__file__).resolve().parent.parent

SCOPE: dict[str, Any] = {
    "inputs": {
        "total": 1200.0,
        "count": 7,
        "note": "hi",
        "missing_value": None,
        "flag": False,
        "items": [3, 1, 2],
        "tags": {"b": 2, "a": 1},
    },
    "vars": {"region": "EU", "reviewed": True},
    "nodes": {
        "parse": {
            "output": {"text": "Invoice 42", "pages": [{"number": 1}, {"number": 2}]},
            "status": "completed",
        },
        "skipped_one": {"output": None, "status": "skipped"},
    },
    "run": {"id": "wf-1", "started_at": "2024-05-01T10:00:00Z"},
}


def ev(text: str, scope: dict[str, Any] | None = None) -> Any:
    """Compile and evaluate one string value."""
    return evaluate(compile_string(text), SCOPE if scope is None else scope)


def failure(text: str) -> ExpressionError:
    """The error of a string value that fails at run time."""
    compiled = compile_string(text)
    with pytest.raises(ExpressionError) as caught:
        evaluate(compiled, SCOPE)
    return caught.value


# --------------------------------------------------------------------------------------------
# Whole values keep their type; longer strings interpolate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ nodes.parse.output.pages }}", [{"number": 1}, {"number": 2}]),
        ("${{ nodes.parse.output }}", SCOPE["nodes"]["parse"]["output"]),
        ("${{ inputs.total }}", 1200.0),
        ("${{ inputs.count }}", 7),
        ("${{ inputs.count + 1 }}", 8),
        ("${{ inputs.flag }}", False),
        ("${{ inputs.missing_value }}", None),
        ("${{ inputs.total > 1000.0 && vars.region == 'EU' }}", True),
        ("  ${{ inputs.count }}  ", "  7  "),
        ("${{ nodes.parse.output.pages[1].number }}", 2),
        ("${{ nodes['parse'].status }}", "completed"),
        ("${{ nodes.skipped_one.status }}", "skipped"),
        ("${{ run.id }}", "wf-1"),
        ("${{ 1.5 }}", 1.5),
        ("${{ 'text' }}", "text"),
        ("${{ [1, 'a', null] }}", [1, "a", None]),
        ("${{ timestamp('2024-01-01T10:00:00Z') + duration('1h') }}", "2024-01-01T11:00:00Z"),
        ("${{ duration('90s') }}", 90.0),
        ("${{ inputs.items.map(x, x * 2) }}", [6, 2, 4]),
        ("${{ inputs.items.filter(x, x > 1) }}", [3, 2]),
        ("${{ inputs.items.exists(x, x > 2) }}", True),
        ("no expression at all", "no expression at all"),
    ],
)  # fmt: skip
def test_whole_value_keeps_its_type(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("${{ true }}", True), ("${{ false }}", False), ("${{ null }}", None)],
)
def test_literal_whole_values(text: str, expected: Any) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Total: ${{ inputs.total }} in ${{ vars.region }}", "Total: 1200.0 in EU"),
        ("n=${{ inputs.count }}", "n=7"),
        ("flag=${{ inputs.flag }}/${{ vars.reviewed }}", "flag=false/true"),
        ("[${{ inputs.missing_value }}]", "[]"),
        ("items: ${{ inputs.items }}", "items: [3, 1, 2]"),
        ("tags: ${{ inputs.tags }}", 'tags: {"a": 1, "b": 2}'),
        ("${{ inputs.note }}${{ inputs.note }}", "hihi"),
        ("literal }} and ${{ '}}' }}", "literal }} and }}"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert ev(text) == expected


def test_compile_value_walks_nested_config() -> None:
    compiled = compile_value(
        {"a": ["${{ inputs.count }}", "plain", 3], "b": {"c": "x${{ vars.region }}"}}
    )
    assert isinstance(compiled["a"][0], Template)
    assert compiled["a"][1] == "plain"
    assert evaluate(compiled, SCOPE) == {"a": [7, "plain", 3], "b": {"c": "xEU"}}


def test_references_are_found_at_compile_time() -> None:
    refs = references_of(
        compile_value(
            {
                "a": "${{ nodes.parse.output.text + nodes['other'].output + inputs.k }}",
                "b": "${{ vars.region }}",
            }
        )
    )
    assert refs.nodes == {"parse", "other"}
    assert refs.inputs == {"k"}
    assert refs.vars == {"region"}
    assert not refs.all_nodes
    assert references_of(compile_value("${{ nodes[inputs.which].output }}")).all_nodes


# --------------------------------------------------------------------------------------------
# has(), size() and the helper functions


def test_has() -> None:
    assert ev("${{ has(inputs.note) ? inputs.note : '' }}") == "hi"
    assert ev("${{ has(inputs.absent) ? inputs.absent : 'none' }}") == "none"
    assert ev("${{ has(nodes.parse.output.text) }}") is True
    assert ev("${{ has(nodes.parse.output.zzz) }}") is False


def test_size() -> None:
    assert ev("${{ size(nodes.parse.output.pages) }}") == 2
    assert ev("${{ size(inputs.note) }}") == 2
    assert ev("${{ size(inputs.tags) }}") == 2
    assert ev("${{ inputs.items.size() }}") == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ keys(inputs.tags) }}", ["a", "b"]),
        ("${{ values(inputs.tags) }}", [1, 2]),
        ("${{ join(['a', 'b'], '-') }}", "a-b"),
        ("${{ ['a', 'b'].join('+') }}", "a+b"),
        ("${{ lowerAscii('ABC') }}", "abc"),
        ("${{ 'ABC'.lowerAscii() }}", "abc"),
        ("${{ upperAscii(vars.region + 'x') }}", "EUX"),
        ("${{ trim('  x ') }}", "x"),
        ("${{ split('a,b,c', ',') }}", ["a", "b", "c"]),
        ("${{ replace('a-b-c', '-', '+') }}", "a+b+c"),
        ("${{ substring('hello', 1, 3) }}", "el"),
        ("${{ indexOf('hello', 'l') }}", 2),
        ("${{ lastIndexOf('hello', 'l') }}", 3),
        ("${{ charAt('abc', 1) }}", "b"),
        ("${{ sort(inputs.items) }}", [1, 2, 3]),
        ("${{ reverse(inputs.items) }}", [2, 1, 3]),
        ("${{ distinct([1, 1, 2]) }}", [1, 2]),
        ("${{ flatten([[1], [2, 3], 4]) }}", [1, 2, 3, 4]),
        ("${{ sum(inputs.items) }}", 6),
        ("${{ max(inputs.items) }}", 3),
        ("${{ min(3, 1, 2) }}", 1),
        ("${{ abs(-2) }}", 2),
        ("${{ round(2.567, 2) }}", 2.57),
        ("${{ ceil(1.2) }}", 2),
        ("${{ floor(1.8) }}", 1),
        ("${{ toJson(inputs.tags) }}", '{"a": 1, "b": 2}'),
        ("${{ fromJson('{\"a\": [1]}').a }}", [1]),
        ("${{ inputs.note.startsWith('h') && inputs.note.contains('i') }}", True),
        ("${{ 'abc'.matches('^a') }}", True),
        ("${{ matches('abc', '^a') }}", True),
        ("${{ string(inputs.count) + '!' }}", "7!"),
        ("${{ int(inputs.total) }}", 1200),
        ("${{ timestamp('2024-03-05T10:20:30Z').getFullYear() }}", 2024),
    ],
)
def test_helper_functions(text: str, expected: Any) -> None:
    assert ev(text) == expected


# --------------------------------------------------------------------------------------------
# Determinism


def test_map_results_have_sorted_keys() -> None:
    result = ev("${{ {'z': 1, 'a': {'y': 2, 'b': 3}, 'm': [{'d': 1, 'c': 2}]} }}")
    assert list(result) == ["a", "m", "z"]
    assert list(result["a"]) == ["b", "y"]
    assert list(result["m"][0]) == ["c", "d"]


def test_map_results_are_the_same_in_every_process() -> None:
    # CEL's map order depends on the process (hash seeds); the result must not.
    program = (
        "import json\n"
        "from interpreter.expressions import compile_string, evaluate\n"
        "value = evaluate(compile_string(\"${{ {'zeta': 1, 'alpha': 2, 'mid': 3, 'beta': 4} }}\"),"
        " {})\n"
        "print(json.dumps(value))\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", program],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    outputs = {child.communicate(timeout=60)[0].strip() for child in children}
    assert [child.returncode for child in children] == [0, 0]
    assert outputs == {json.dumps({"alpha": 2, "beta": 4, "mid": 3, "zeta": 1})}


# --------------------------------------------------------------------------------------------
# Secrets


def test_secrets_are_left_verbatim_for_the_worker() -> None:
    scope = {**SCOPE, "secrets": {"API_KEY": "leaked"}}
    assert ev("${{ secrets.API_KEY }}", scope) == "${{ secrets.API_KEY }}"
    assert ev("Bearer ${{ secrets.API_KEY }}", scope) == "Bearer ${{ secrets.API_KEY }}"
    assert ev("${{secrets.API_KEY}}", scope) == "${{secrets.API_KEY}}"


def test_a_secret_inside_a_larger_expression_is_refused() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_string("${{ secrets.API_KEY + 'x' }}")
    assert "a secret can only be used on its own" in caught.value.message


# --------------------------------------------------------------------------------------------
# Errors


def test_compile_errors_carry_the_offset_in_the_string() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_string("abc ${{ frobnicate(1) }}")
    assert caught.value.message == "unknown function 'frobnicate' in expression `frobnicate(1)`"
    assert caught.value.offset == 8
    with pytest.raises(ExpressionError) as caught:
        compile_string("x ${{ 1 + 2")
    assert caught.value.message == "expression is not closed: missing '}}'"
    assert caught.value.offset == 2
    with pytest.raises(ExpressionError) as caught:
        compile_string("${{   }}")
    assert caught.value.message == "empty expression"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "${{ inputs.items[5] }}",
            "expression `inputs.items[5]` failed: inputs.items has 3 items, no [5]",
        ),
        (
            "${{ nodes.parse.output.nope }}",
            "expression `nodes.parse.output.nope` failed: nodes.parse.output has no field 'nope'",
        ),
        (
            "${{ inputs.missing_value.x }}",
            "expression `inputs.missing_value.x` failed: inputs.missing_value is null, "
            "it has no field 'x'",
        ),
        (
            "${{ inputs.items[0].x }}",
            "expression `inputs.items[0].x` failed: inputs.items[0] is a number, "
            "it has no field 'x'",
        ),
        (
            "${{ inputs.nope.x }}",
            "expression `inputs.nope.x` failed: inputs has no field 'nope'",
        ),
        ("${{ item }}", "expression `item` failed: 'item' is not defined here"),
    ],
)
def test_path_errors_name_what_was_missing(text: str, message: str) -> None:
    error = failure(text)
    assert error.message == message
    assert error.offset == 4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${{ 1 / 0 }}", "division by zero"),
        ("${{ inputs.note + 1 }}", "string + int"),
        ("${{ int('abc') }}", "int"),
        ("${{ fromJson('nope') }}", "JSONDecodeError"),
    ],
)
def test_runtime_errors_name_the_expression_and_the_cause(text: str, fragment: str) -> None:
    error = failure(text)
    source = text.removeprefix("${{ ").removesuffix(" }}")
    assert error.message.startswith(f"expression `{source}` failed: ")
    assert fragment in error.message


# --------------------------------------------------------------------------------------------
# How `when` reads a value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True), (False, False), (None, False), (0, False), (1, True), ("", False),
        ("false", False), ("False", False), ("0", False), ("no", False), ("null", False),
        ("yes", True), ("x", True), ([], False), ([0], True), ({}, False),
    ],
)  # fmt: skip
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


# --- bounds: what reaches the CEL parser ---------------------------------------------------


def _refused(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_string("${{" + source + "}}")
    return caught.value


def test_expressions_at_the_limits_compile() -> None:
    assert isinstance(
        compile_string("${{ " + "+".join(["1"] * (MAX_EXPRESSION_TERMS + 1)) + " }}"), Template
    )
    deep = "(" * MAX_EXPRESSION_DEPTH + "1" + ")" * MAX_EXPRESSION_DEPTH
    assert evaluate(compile_string("${{" + deep + "}}"), SCOPE) == 1
    padded = "1" + " " * (MAX_EXPRESSION_CHARS - 1)
    assert evaluate(compile_string("${{" + padded + "}}"), SCOPE) == 1


def test_expressions_beyond_the_limits_are_refused_where_they_go_wrong() -> None:
    error = _refused(" " + "+".join(["1"] * (MAX_EXPRESSION_TERMS + 2)))
    assert error.message.startswith(f"expression too complex: more than {MAX_EXPRESSION_TERMS}")
    assert error.offset == 3 + 1 + 2 * MAX_EXPRESSION_TERMS + 1  # the first operator too many
    error = _refused("[" * (MAX_EXPRESSION_DEPTH + 1) + "]" * (MAX_EXPRESSION_DEPTH + 1))
    assert error.message.startswith("expression nested too deeply")
    assert error.offset == 3 + MAX_EXPRESSION_DEPTH
    error = _refused("  " + "x" * MAX_EXPRESSION_CHARS)
    assert error.message == (
        f"expression too long: {MAX_EXPRESSION_CHARS + 2:,} characters (at most "
        f"{MAX_EXPRESSION_CHARS:,}); compute parts of it in earlier nodes or vars"
    )
    assert error.offset == 5


@pytest.mark.parametrize(
    "literal",
    ['"' + "+" * 600 + '"', "'" + "(" * 600 + "'", 'r"\\' + "+" * 600 + '"',
     '"\\"' + "+" * 600 + '"', '"""' + '"+' * 600 + '"""', "b'" + "." * 600 + "'"],
)  # fmt: skip
def test_operators_and_brackets_in_string_literals_are_not_counted(literal: str) -> None:
    compiled = compile_string("${{ " + literal + " }}")
    assert isinstance(compiled, Template)


def test_field_access_and_in_count_as_operators() -> None:
    assert "too complex" in _refused("inputs" + ".a" * (MAX_EXPRESSION_TERMS + 1)).message
    assert "too complex" in _refused(" in ".join(["1"] * (MAX_EXPRESSION_TERMS + 2))).message
    # A decimal point is not an operator.
    assert isinstance(
        compile_string("${{ " + "+".join(["1.5"] * MAX_EXPRESSION_TERMS) + " }}"), Template
    )


def test_long_expressions_are_quoted_on_one_line_and_cut_short() -> None:
    error = _refused(" nope(" + "1 +\n" * 100 + "1) ")
    assert "\n" not in error.message
    assert error.message.startswith("unknown function 'nope' in expression `nope(1 + 1 + 1 +")
    assert len(error.message) < 200
