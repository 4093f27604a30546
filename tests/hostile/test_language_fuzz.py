"""Fuzz of the loader and the validator: whatever the text, the outcome is a valid definition
or a non-empty list of located one-line problems, within a deadline per case, never an
exception (issue 8). Bombs that would take gigabytes without the limits run in a child process
held to an address-space limit."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from activities import registry
from interpreter.limits import MAX_ALIAS_VALUES, MAX_EXPRESSION_CHARS, MAX_NESTING
from interpreter.loader import read_yaml
from interpreter.validate import check
from tests.hostile._language import (
    NODE_TYPES,
    REPO,
    assert_well_formed,
    outcome,
    outcome_of_data,
    outcomes_in_child,
)

FUZZ = settings.get_profile(os.environ.get("TIDEFLOW_FUZZ_PROFILE", "hostile"))
"""The Hypothesis profile of this module (tests/hostile/conftest.py)."""

SOURCES = {
    path.name: path.read_text()
    for path in sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("tests/seeds/*.yaml")])
    if not path.name.endswith(".test.yaml")  # the examples' test files are not definitions
}
"""Real definitions to mutate."""

TOKENS = [
    *"-:[]{},?|>'\"#&*!%@`\t\n ",
    "\n  ", "\n    - ", ": ", "- ", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
    "&a ", "*a", "&b ", "*b", "<<: *a", "<<: [*a, *b]", "? ", "|\n  ", ">-\n  ",
    "!!str ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!binary ", "!!timestamp ",
    "!!set ", "!!omap ", "!!python/object:os.system ", "!Ref ", "! ", "!<tag:x> ",
    "~", "null", "true", "yes", "on", "1e999", "-.inf", ".nan", "0x1F", "0o17", "1_000",
    "190:20:30", "2024-01-01", "=", "9" * 5000, "x" * 3000,
    "name", "tasks", "steps", "nodes", "edges", "id", "type", "config", "with",
    "depends_on", "when", "foreach", "on_error", "retry", "join", "inputs", "vars", "outputs",
    "${{", "}}", "${{ nodes.a.output }}", "${{ inputs.x + 1 }}", "${{ (((", ")))", "'}}'",
    "\x00", "\x07", "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\U0001f600", "é",
]  # fmt: skip

yaml_noise = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(TOKENS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["event", "str", "list", "bool", "api", "type", "url",
                                         "text", "value", "x", "config", "with", "Fallback"])
                        | st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)  # fmt: skip


# --- text of any shape --------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz-bytes.yaml"
    path.write_bytes(data)
    definition, problems = check(read_yaml(path), registry)
    assert_well_formed(definition, problems, str(path))


@FUZZ
@given(st.text(max_size=2000))
def test_random_text(text: str) -> None:
    outcome(text)


@FUZZ
@given(yaml_noise)
def test_yaml_noise(text: str) -> None:
    outcome(text)


@st.composite
def mutated_sources(draw: st.DrawFn) -> str:
    """A real definition with a few lines deleted, duplicated, swapped, re-indented or
    spliced with YAML noise."""
    lines = SOURCES[draw(st.sampled_from(sorted(SOURCES)))].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "splice"]))
        if action == "delete":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "indent":
            lines[at] = " " * draw(st.integers(0, 6)) + lines[at].lstrip(" ")
        else:
            column = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:column] + draw(yaml_noise) + lines[at][column:]
    return "".join(lines)


@FUZZ
@given(mutated_sources())
def test_mutated_examples(text: str) -> None:
    outcome(text)


def test_the_sources_to_mutate_are_valid() -> None:
    assert len(SOURCES) >= 5
    for name, text in SOURCES.items():
        definition, problems = outcome(text, name)
        assert definition is not None and not problems, problems


# --- structure: tags, aliases, depth, huge literals ------------------------------------------


@st.composite
def anchored_documents(draw: st.DrawFn) -> str:
    """Anchors and aliases in every place: keys, values, merges, inside themselves, unknown."""
    names = ["a", "b", "c"]
    lines = ["name: x"]
    for i in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(names))
        uses = ", ".join(f"*{draw(st.sampled_from(names))}" for _ in range(draw(st.integers(0, 4))))
        shape = draw(
            st.sampled_from([
                f"v{i}: &{name} [{uses}]",
                f"v{i}: &{name} {{k: [{uses}]}}",
                f"v{i}: &{name} scalar",
                f"&{name} k{i}: value",
                f"*{name} : value",
                f"v{i}: {{<<: *{name}, k: 1}}",
                f"v{i}: {{<<: [{uses}]}}",
                f"v{i}: *{name}",
                f"<<: *{name}",
            ])
        )  # fmt: skip
        lines.append(shape)
    lines.append(draw(st.sampled_from(["tasks: []", "tasks: *a", "tasks: [{id: a, type: fail}]"])))
    return "\n".join(lines) + "\n"


@FUZZ
@given(anchored_documents())
def test_anchors_and_aliases(text: str) -> None:
    outcome(text)


@FUZZ
@given(
    st.integers(MAX_NESTING - 3, MAX_NESTING + 3),
    st.sampled_from(["[", "{k: ", "- ", "k:\n"]),
)
def test_nesting_around_the_limit(depth: int, opener: str) -> None:
    if opener == "- ":
        text = "x:\n" + "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "1\n"
    elif opener == "k:\n":
        text = "".join("  " * i + "k:\n" for i in range(depth)) + "  " * depth + "1\n"
    else:
        closer = "]" if opener == "[" else "}"
        text = "x: " + opener * depth + "1" + closer * depth + "\n"
    definition, problems = outcome(text)
    assert definition is None
    if depth > MAX_NESTING:
        assert any("nested deeper than" in p.message for p in problems)


@FUZZ
@given(
    st.sampled_from(["str", "int", "float", "bool", "null", "binary", "timestamp", "set",
                     "omap", "pairs", "merge", "value", "seq", "map", "python/none"]),
    st.sampled_from(["abc", "1", "1.5", "true", "~", "", "[1]", "{a: 1}", "9" * 5000]),
    st.sampled_from(["name", "description", "vars", "tasks"]),
)  # fmt: skip
def test_every_standard_tag(tag: str, value: str, key: str) -> None:
    outcome(f"{key}: !!{tag} {value}\nname: x\n" if key != "name" else f"name: !!{tag} {value}\n")


@FUZZ
@given(
    st.sampled_from(["x" * 200_000, "9" * 100_000, "1e" + "9" * 5000, "'" + "a\\" * 50_000 + "'",
                     "${{ " + "x" * (MAX_EXPRESSION_CHARS * 4) + " }}",
                     '"' + "\\u0000" * 20_000 + '"', "|\n" + "  line\n" * 20_000]),
    st.sampled_from(["description", "name", "when", "config"]),
)  # fmt: skip
def test_huge_literals(literal: str, where: str) -> None:
    if where in ("when", "config"):
        value = literal if where == "when" else "{value: " + literal.replace("\n", " ") + "}"
        text = f"name: x\ntasks:\n  - id: a\n    type: test.echo\n    {where}: {value}\n"
    else:
        text = f"{where}: {literal}\ntasks: []\n" + ("name: x\n" if where != "name" else "")
    outcome(text)


# --- every node type with config of the wrong shape -----------------------------------------


@st.composite
def wrong_configs(draw: st.DrawFn) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "a", "type": draw(st.sampled_from(NODE_TYPES))}
    shape = draw(st.sampled_from(["absent", "null", "scalar", "list", "mapping", "with"]))
    if shape == "null":
        node["config"] = None
    elif shape == "scalar":
        node["config"] = draw(json_scalars)
    elif shape == "list":
        node["config"] = draw(st.lists(json_values, max_size=3))
    elif shape in ("mapping", "with"):
        node["config" if shape == "mapping" else "with"] = draw(
            st.dictionaries(st.text(max_size=10) | st.sampled_from(
                ["event", "str", "list", "bool", "api", "type", "url", "text", "on_timeout",
                 "duration", "until", "definition", "file", "code", "schema", "labels"]),
                json_values, max_size=5)
        )  # fmt: skip
    for key in draw(st.lists(st.sampled_from(
        ["when", "foreach", "on_error", "retry", "join", "depends_on", "timeout", "cache",
         "compensate", "concurrency", "event", "str"]), max_size=3, unique=True)):  # fmt: skip
        node[key] = draw(json_values)
    return {"name": "fuzz", "tasks": [node, {"id": "b", "type": "fail", "depends_on": ["a"]}]}


@FUZZ
@given(wrong_configs())
def test_every_node_type_with_wrong_config_as_data(data: dict[str, Any]) -> None:
    outcome_of_data(data)


@FUZZ
@given(wrong_configs())
def test_every_node_type_with_wrong_config_as_yaml(data: dict[str, Any]) -> None:
    outcome(yaml.safe_dump(data, allow_unicode=True))


def test_every_node_type_with_every_config_shape_named_like_a_union_label() -> None:
    # The 266 type x config combinations of the audit, and more: all must be located problems.
    labels = ("event", "str", "list", "bool", "api", "type", "Fallback")
    shapes: list[Any] = [None, {}, [], "x", 1, *({k: 1} for k in labels)]
    shapes.append({"event": {"str": {"list": [1]}}})
    for node_type in NODE_TYPES:
        for config in shapes:
            node: dict[str, Any] = {"id": "a", "type": node_type}
            if config is not None:
                node["config"] = config
            outcome_of_data({"name": "x", "tasks": [node]})


@FUZZ
@given(json_values)
def test_any_json_as_a_definition(data: Any) -> None:
    outcome_of_data(data)
    outcome_of_data({"name": "x", "tasks": [], "vars": data, "inputs": data, "triggers": data})


# --- expressions -------------------------------------------------------------------------------

EXPRESSION_TOKENS = [
    *"+-*/%!?:.,()[]{}<>=&|'\"\\ ", "&&", "||", "==", "!=", "<=", ">=", " in ", "r\"", "b'",
    '"""', "'''", "1", "1.5", "1e3", "0x1F", "true", "null", "inputs", "vars", "nodes",
    "item", "error", "secrets", ".a", ".output", "[0]", "size(", "map(x, ", "filter(",
    "keys(", "unknown_fn(", "\n",
]  # fmt: skip


@FUZZ
@given(
    st.lists(st.sampled_from(EXPRESSION_TOKENS), max_size=200).map("".join),
    st.integers(1, 40),
)
def test_random_expressions(expression: str, repeat: int) -> None:
    source = expression * repeat
    text = json.dumps(
        {"name": "x", "tasks": [{"id": "a", "type": "fail", "when": "${{" + source + "}}"}]}
    )
    outcome(text)  # JSON is YAML
    outcome_of_data(json.loads(text))


# --- bombs, in a child held to 1 GiB ----------------------------------------------------------


def _bomb(levels: int, width: int, *, mapping: bool = False, merge: bool = False) -> str:
    lines = ['l0: &l0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for level in range(1, levels):
        uses = ", ".join([f"*l{level - 1}"] * width)
        if merge:
            uses = ", ".join(f"k{i}: *l{level - 1}" for i in range(width))
            lines.append(f"l{level}: &l{level} {{{uses}}}")
        elif mapping:
            lines.append(
                f"l{level}: &l{level} {{{', '.join(f'k{i}: *l{level - 1}' for i in range(width))}}}"
            )
        else:
            lines.append(f"l{level}: &l{level} [{uses}]")
    return "\n".join(lines) + "\n"


def test_bombs_are_refused_in_bounded_time_and_memory() -> None:
    texts = [
        _bomb(7, 9),
        _bomb(10, 10),
        _bomb(30, 2),
        _bomb(6, 12, mapping=True),
        _bomb(9, 5, merge=True),
        "x: " + "[" * 200_000 + "]" * 200_000,
        "x:\n" + "".join(" " * i + "- \n" for i in range(3000)),
        "- " * 100_000 + "x\n",
        "x: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "a: &a [*a, *a]\n",
        "a: &a {b: &b [*a, *b]}\n",
        "${{ " + "+".join(["1"] * 30_000) + " }}",
        json.dumps({"name": "x", "tasks": [{"id": "a", "type": "fail",
                                            "when": "${{ " + "a" + ".b" * 20_000 + " }}"}]}),
    ]  # fmt: skip
    results = outcomes_in_child(texts, memory_mb=1024, timeout=120)
    assert len(results) == len(texts)
    for text, result in zip(texts, results, strict=True):
        assert not result["valid"], text[:80]
        assert result["problems"], text[:80]
        for line, column, message in result["problems"]:
            assert line >= 1 and column >= 1 and message and "\n" not in message
    expanded = [r for r in results[:5] if any("aliases expand" in p[2] for p in r["problems"])]
    assert len(expanded) == 5, f"every bomb stops at {MAX_ALIAS_VALUES:,} values"


def test_a_child_definition_file_that_is_not_a_regular_file(tmp_path: Path) -> None:
    from interpreter import problems_in_file

    parent = tmp_path / "parent.yaml"
    parent.write_text(
        "name: p\ntasks:\n  - id: child\n    type: workflow\n    config: {file: /dev/zero}\n"
    )
    found = problems_in_file(parent, registry)
    assert [str(p) for p in found] == ["/dev/zero:1:1: not a regular file"]
