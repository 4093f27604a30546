"""One regression test per language defect of the adversarial audit (issue 8, defects 3, 4, 5
and the definition half of 7; issue 7, item 5). Each reproduces the defect as reported and
failed on the code before the fix; what could crash the test run (a segfault, gigabytes of
memory) runs in a child process held to limits."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from activities import registry as catalog
from interpreter import DefinitionError, load_data, load_string
from interpreter.limits import (
    MAX_ALIAS_VALUES,
    MAX_DOCUMENT_BYTES,
    MAX_EXPRESSION_CHARS,
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_TERMS,
    MAX_NESTING,
    MAX_NODES,
)
from starter import cli
from tests.hostile._language import (
    NODE_TYPES,
    REPO,
    outcome,
    outcome_of_data,
    outcomes_in_child,
    run_cli,
)


def problems(text: str) -> list[str]:
    """Every problem of a definition as ``wf.yaml:LINE:COL: message``."""
    with pytest.raises(DefinitionError) as caught:
        load_string(textwrap.dedent(text).lstrip("\n"), "wf.yaml", catalog)
    found = [str(p) for p in caught.value.problems]
    assert found, "a refused definition names its problems"
    return found


def when(expression: str) -> str:
    """A definition whose only node runs ``when`` the expression holds."""
    return f"name: x\ntasks:\n  - id: a\n    type: fail\n    when: ${{{{ {expression} }}}}\n"


# --- defect 3: one expression kills every process that parses it ------------------------------


def test_3_an_expression_of_30000_terms_is_a_located_error_in_tideflow_validate(
    tmp_path: Path,
) -> None:
    poison = tmp_path / "poison.yaml"
    poison.write_text(when("+".join(["1"] * 30_000)))
    done = run_cli("validate", str(poison))
    # Before the fix the CEL parser overflowed its stack: exit -11 (SIGSEGV), no message.
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    assert done.stdout.splitlines() == [
        f"{poison}:5:15: expression too long: 60,001 characters (at most "
        f"{MAX_EXPRESSION_CHARS:,}); compute parts of it in earlier nodes or vars"
    ]


def test_3_expressions_are_bounded_in_operators_and_nesting() -> None:
    terms = "+".join(["1"] * (MAX_EXPRESSION_TERMS + 2))
    assert len(terms) < MAX_EXPRESSION_CHARS
    [found] = problems(when(terms))
    assert found.startswith("wf.yaml:5:")
    assert f"expression too complex: more than {MAX_EXPRESSION_TERMS} operators" in found
    deep = "(" * (MAX_EXPRESSION_DEPTH + 1) + "1" + ")" * (MAX_EXPRESSION_DEPTH + 1)
    assert problems(when(deep)) == [
        f"wf.yaml:5:{15 + MAX_EXPRESSION_DEPTH}: expression nested too deeply: more than "
        f"{MAX_EXPRESSION_DEPTH} brackets or parentheses inside one another"
    ]
    # The same bounds hold for a definition sent as JSON (the API, a workflow's input).
    data = {
        "name": "x",
        "tasks": [{"id": "a", "type": "test.echo", "when": "${{ " + terms + " }}"}],
    }
    with pytest.raises(DefinitionError, match="expression too complex"):
        load_data(data, "<request>", catalog)


def test_3_operators_inside_string_literals_do_not_count() -> None:
    literal = '"' + "+" * 3000 + '"'
    definition = load_string(when(f"{literal} != ''"), "wf.yaml", catalog)
    assert definition.raw_nodes()[0].when is not None


# --- defect 4: YAML bombs --------------------------------------------------------------------

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{level}: &{level} [{','.join([f'*{previous}'] * 9)}]"
            for previous, level in zip("abcdef", "bcdefg", strict=True)
        ),
    ]
)


def test_4_an_alias_bomb_is_refused_quickly_and_in_little_memory() -> None:
    assert len(BOMB.encode()) < 450
    # Before the fix: 69 s and 2 GB (here: a MemoryError under the 1 GiB cap, or the timeout).
    [result] = outcomes_in_child([BOMB], memory_mb=1024, timeout=60)
    assert not result["valid"]
    [(line, column, message)] = result["problems"]
    assert (line, column) >= (1, 1)
    assert message.startswith(f"aliases expand the document beyond {MAX_ALIAS_VALUES:,} values")


def test_4_a_recursive_alias_is_a_located_problem() -> None:
    assert problems("a: &a [*a]\n") == [
        "wf.yaml:1:8: alias *a is inside the value of &a: a value cannot contain itself"
    ]


def test_4_deep_nesting_is_a_located_problem() -> None:
    texts = ["x: " + "[" * depth + "]" * depth + "\n" for depth in (500, 50_000)]
    # 500 raised RecursionError; 50,000 crashed libyaml's composer (SIGSEGV): in a child.
    for result in outcomes_in_child(texts, memory_mb=1024, timeout=60):
        assert result["problems"] == [
            [1, 3 + MAX_NESTING, f"lists and mappings nested deeper than {MAX_NESTING} levels"]
        ]


def test_4_documents_are_bounded_in_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padding = "# padding\n" * (MAX_DOCUMENT_BYTES // 10 + 1)
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + padding)
    assert cli.main(["validate", str(big)]) == 2
    assert capsys.readouterr().out == (
        f"{big}:1:1: the definition is too large: {big.stat().st_size / 2**20:.1f} MiB "
        f"(at most {MAX_DOCUMENT_BYTES // 2**20} MiB)\n"
    )
    with pytest.raises(DefinitionError, match="the definition is too large"):
        load_data({"name": "x", "description": padding, "tasks": []}, "<request>", catalog)


# --- defect 5: tracebacks instead of located problems ----------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "!Ref x",
            "unsupported YAML tag !Ref: a definition holds plain values (text, numbers, "
            "true/false, null, lists and mappings)",
        ),
        ("!!float abc", "!!float 'abc' is not a number"),
        ("!!int abc", "!!int 'abc' is not an integer"),
        (
            "!!timestamp x",
            "unsupported YAML tag !!timestamp: a definition holds plain values "
            "(text, numbers, true/false, null, lists and mappings)",
        ),
        ("!!bool maybe", "!!bool 'maybe' is not true or false"),
        (
            '!!binary "abc"',
            "unsupported YAML tag !!binary: a definition holds plain values "
            "(text, numbers, true/false, null, lists and mappings)",
        ),
    ],
)
def test_5_yaml_tags_are_located_problems(value: str, message: str) -> None:
    assert problems(f"name: x\ndescription: {value}\ntasks: []\n") == [f"wf.yaml:2:14: {message}"]


def test_5_wait_for_event_without_config_is_a_located_problem() -> None:
    assert problems("""
        name: x
        tasks:
          - id: wait
            type: wait_for_event
        """) == ["wf.yaml:3:5: wait_for_event needs config event"]


@pytest.mark.parametrize("key", ["event", "str", "list", "bool", "api"])
def test_5_config_keys_named_like_union_labels_are_kept(key: str) -> None:
    # The validator dropped every location part equal to a union label, real keys included,
    # and then indexed an empty location: IndexError for 39 of 266 type x config pairs.
    for node_type in NODE_TYPES:
        text = (
            f"name: x\ntasks:\n  - id: a\n    type: {node_type}\n"
            f"    config: {{{key}: 1, nested: {{{key}: [1]}}}}\n"
        )
        outcome(text)  # a valid definition, or located problems: never an exception
    found = problems(f"name: x\ntasks:\n  - id: a\n    type: test.echo\n    config: {{{key}: 1}}\n")
    assert f"wf.yaml:5:14: unknown config key {key!r} for test.echo" in found


def test_5_a_nul_byte_is_reported_where_it_is() -> None:
    assert problems("name: x\ntasks:\n  - id: a\x00b\n    type: test.echo\n") == [
        "wf.yaml:3:10: character U+0000 is not allowed in YAML (a control character: remove "
        "it, or write it as an escape in a double-quoted string)"
    ]


@pytest.mark.parametrize("text", ["", "---\n", "~\n", "--- ~\n", "# only a comment\n"])
def test_5_an_empty_file_is_one_located_problem(text: str) -> None:
    assert problems(text) == ["wf.yaml:1:1: the file is empty"]


def test_5_an_empty_file_is_the_same_problem_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `validate` said ok while `compile` and `graph` exited 2 silently.
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    for command in ("validate", "compile", "graph"):
        assert cli.main([command, str(empty)]) == 2, command
        out, err = capsys.readouterr()
        assert f"{empty}:1:1: the file is empty" in out + err, command
    with pytest.raises(DefinitionError, match="the file is empty"):
        load_data(None, "<request>", catalog)


# --- defect 7 (definitions): size and linear validation --------------------------------------


def test_7_a_definition_has_at_most_max_nodes() -> None:
    data = {
        "name": "x",
        "tasks": [{"id": f"n{i}", "type": "test.echo"} for i in range(MAX_NODES + 1)],
    }
    # Before: validated (48.7 s and 2.1 GB for 100,000 nodes). Now refused before the work.
    definition, found = outcome_of_data(data)
    assert definition is None
    assert [p.message for p in found] == [
        f"too many nodes: {MAX_NODES + 1:,} (at most {MAX_NODES:,} in one definition); "
        "split the work over child workflows"
    ]


_ANCESTRY = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from types import SimpleNamespace
from interpreter.validate import _Ancestry
n = 150_000
order = [f"n{i}" for i in range(n)]
graph = {f"n{i}": SimpleNamespace(depends_on=[f"n{i-1}"] if i else []) for i in range(n)}
ancestry = _Ancestry(order, graph)
print(ancestry.of(f"n{n-1}")("n0"), ancestry.of("n5")("n7"), ancestry.of("n9000")("n8990"))
"""


def test_7_upstream_checks_take_linear_memory() -> None:
    # One bit per (node, ancestor) pair took n²/16 bytes: 1.4 GB for a chain of 150,000 nodes.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _ANCESTRY],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.split() == ["True", "False", "True"]


# --- issue 7, item 5: closed sets of strings are Literal types -------------------------------


def test_literal_on_timeout_typo_is_a_located_error_with_a_suggestion() -> None:
    assert problems("""
        name: x
        tasks:
          - id: wait
            type: wait_for_event
            config: {event: go, timeout: 1h, on_timeout: contnue}
        """) == [
        "wf.yaml:5:50: config on_timeout must be one of fail, continue, skip "
        "(did you mean 'continue'?)"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "on_timeout: aprove",
            "config on_timeout must be one of fail, approve, reject (did you mean 'approve'?)",
        ),
        (
            "on_reject: continu",
            "config on_reject must be one of fail, continue (did you mean 'continue'?)",
        ),
    ],
)
def test_literal_approval_choices(line: str, message: str) -> None:
    found = problems(f"""
        name: x
        tasks:
          - id: ok
            type: approval
            config:
              {line}
        """)
    assert [f.split(": ", 1)[1] for f in found] == [message]
    assert found[0].startswith("wf.yaml:6:")


def test_literal_messages_name_every_choice_of_a_union() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            on_error: contnue
            join: alll
        """) == [
        "wf.yaml:5:15: on_error must be one of fail, continue, pause or {fallback: …} "
        "(did you mean 'continue'?)",
        "wf.yaml:6:11: join must be one of all, any (did you mean 'all'?)",
    ]


def test_regressions_leave_json_helpers_alone() -> None:
    # The bounds do not change what a valid definition loads to.
    definition = load_string(when("inputs.x > 1 && [1, 2].size() == 2"), "wf.yaml", catalog)
    assert json.loads(definition.model_dump_json())["tasks"][0]["id"] == "a"
