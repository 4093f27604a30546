"""Static validation: every problem located at its exact line and column with a clear message,
several at once and sorted; the seeds' examples load unchanged; the three graph spellings give
the same graph; ``tideflow validate`` prints ``FILE:LINE:COL: message`` and exits 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.testing_node_types  # noqa: F401  (test.* types in the catalog)
from activities import registry
from interpreter import Definition, DefinitionError, load_file, load_string

REPO = Path(__file__).resolve().parent.parent
SEEDS = Path(__file__).resolve().parent / "seeds"


def problems(text: str) -> list[str]:
    """Every problem of a definition, as ``wf.yaml:LINE:COL: message``."""
    with pytest.raises(DefinitionError) as caught:
        load_string(textwrap.dedent(text).lstrip("\n"), "wf.yaml", catalog=registry)
    return [str(p) for p in caught.value.problems]


def load(text: str) -> Definition:
    """A definition that must be valid."""
    return load_string(textwrap.dedent(text).lstrip("\n"), "wf.yaml", catalog=registry)


# --------------------------------------------------------------------------------------------
# YAML


def test_yaml_syntax_error() -> None:
    found = problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
           bad: [1
        """)
    assert len(found) == 1
    assert found[0].startswith("wf.yaml:5:4: YAML syntax error: ")
    # libyaml's parser (used when PyYAML has it) and the pure-Python one word it differently.
    assert "did not find expected '-' indicator" in found[0] or "expected <block end>" in found[0]


def test_unclosed_flow_mapping() -> None:
    found = problems("""
        name: x
        tasks:
          - {id: a, type: test.echo
        """)
    assert len(found) == 1
    assert found[0].startswith("wf.yaml:")
    assert "YAML syntax error" in found[0]


def test_duplicate_yaml_keys() -> None:
    assert problems("""
        name: x
        name: y
        tasks:
          - {id: a, type: test.echo}
        """) == ["wf.yaml:2:1: duplicate key 'name' (first given on line 1)"]
    assert problems("""
        name: x
        tasks:
          - id: a
            type: wait
            config:
              duration: 1s
              duration: 2s
        """) == ["wf.yaml:7:7: duplicate key 'duration' (first given on line 6)"]


def test_empty_file() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_string("", "wf.yaml", catalog=registry)
    assert [str(p) for p in caught.value.problems] == ["wf.yaml:1:1: the file is empty"]


# --------------------------------------------------------------------------------------------
# Keys


def test_unknown_top_level_key_with_suggestion() -> None:
    assert problems("""
        name: x
        versoin: 1
        tasks:
          - {id: a, type: test.echo}
        """) == ["wf.yaml:2:1: unknown key 'versoin' (did you mean 'version'?)"]


def test_unknown_node_key_with_suggestion() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
          - id: b
            type: test.echo
            depends: [a]
        """) == ["wf.yaml:7:5: unknown key 'depends' (did you mean 'depends_on'?)"]


def test_unknown_retry_key_with_suggestion() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            retry:
              max_attempt: 2
        """) == ["wf.yaml:6:7: unknown key 'max_attempt' (did you mean 'max_attempts'?)"]


def test_missing_name_and_type() -> None:
    assert problems("""
        tasks:
          - {id: a, type: test.echo}
        """) == ["wf.yaml:1:1: a definition needs a name"]
    assert problems("""
        name: x
        tasks:
          - id: a
            config: {}
        """) == ["wf.yaml:3:5: type is required"]


def test_bad_node_id() -> None:
    found = problems("""
        name: x
        tasks:
          - id: 1st
            type: test.echo
        """)
    assert len(found) == 1
    assert found[0].startswith("wf.yaml:3:9: id: ")


# --------------------------------------------------------------------------------------------
# The graph


def test_duplicate_node_ids() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
          - id: a
            type: test.echo
        """) == ["wf.yaml:5:9: duplicate node id 'a' (first on line 3)"]


def test_unknown_dependency_with_suggestion() -> None:
    assert problems("""
        name: x
        tasks:
          - id: alpha
            type: test.echo
          - id: beta
            type: test.echo
            depends_on: [alpha, alpah]
        """) == ["wf.yaml:7:25: 'beta' depends on unknown node 'alpah' (did you mean 'alpha'?)"]


def test_self_dependency() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            depends_on: [a]
        """) == ["wf.yaml:5:18: 'a' depends on itself"]


def test_cycle_names_its_nodes() -> None:
    found = problems("""
        name: x
        tasks:
          - {id: start, type: test.echo}
          - {id: a, type: test.echo, depends_on: [start, c]}
          - {id: b, type: test.echo, depends_on: [a]}
          - {id: c, type: test.echo, depends_on: [b]}
        """)
    assert len(found) == 1
    location, message = found[0].split(": ", 1)
    assert location.startswith("wf.yaml:")
    assert message.startswith("cycle: ")
    cycle = message.removeprefix("cycle: ").split(" → ")
    # A closed loop naming exactly a, b and c, in execution order.
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b", "c"]
    order = cycle[:-1]
    runs_after = {"b": "a", "c": "b", "a": "c"}
    for first, second in zip(order, [*order[1:], order[0]], strict=True):
        assert runs_after[second] == first
    line = int(location.split(":")[1])
    assert line in (4, 5, 6)  # on one of the cycle's nodes


def test_edges_to_unknown_nodes() -> None:
    assert problems("""
        metadata: {name: x, id: "1"}
        nodes:
          - {id: a, type: test.echo}
        edges:
          - {source: zz, target: a}
          - {from: a, to: b}
        """) == [
        "wf.yaml:5:14: edge from unknown node 'zz'",
        "wf.yaml:6:19: edge to unknown node 'b'",
    ]


def test_handlers_naming_unknown_nodes() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            on_error: {fallback: rescue}
            compensate: undo
          - {id: rescue_me, type: test.echo}
        error_handling:
          on_failure: [notify]
        """) == [
        "wf.yaml:5:26: fallback names unknown node 'rescue' (did you mean 'rescue_me'?)",
        "wf.yaml:6:17: compensate names unknown node 'undo'",
        "wf.yaml:9:16: on_failure names unknown node 'notify'",
    ]


def test_depending_on_a_handler() -> None:
    assert problems("""
        name: x
        tasks:
          - {id: a, type: test.echo, on_error: {fallback: b}}
          - {id: b, type: test.echo}
          - {id: c, type: test.echo, depends_on: [b]}
        """) == ["wf.yaml:5:43: 'c' depends on 'b', a handler that only runs when invoked"]


def test_two_graph_spellings_at_once() -> None:
    assert problems("""
        name: x
        tasks: []
        steps: []
        """) == ["wf.yaml:1:1: use one of tasks, steps or nodes, not tasks and steps"]


# --------------------------------------------------------------------------------------------
# Node types and config


def test_unknown_node_type_with_suggestion() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: http.requets
          - id: b
            type: document_parsr
        """) == [
        "wf.yaml:4:11: unknown node type 'http.requets' (did you mean 'http.request'?)",
        "wf.yaml:6:11: unknown node type 'document_parsr' (did you mean 'document_parser'?)",
    ]


def test_unknown_config_key_with_suggestion() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: wait
            config:
              duraton: 1s
        """) == ["wf.yaml:6:7: unknown config key 'duraton' for wait (did you mean 'duration'?)"]
    # `with` is the alias of `config`; the problem points into it.
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.flaky
            with: {failures: 1, valeu: 2}
        """) == ["wf.yaml:5:25: unknown config key 'valeu' for test.flaky (did you mean 'value'?)"]


def test_config_of_the_wrong_type() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.flaky
            config: {failures: many}
        """) == [
        "wf.yaml:5:24: config failures: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
    assert problems("""
        name: x
        tasks:
          - id: a
            type: http.request
            config:
              url: https://example.com
              expect_status: nope
        """) == ["wf.yaml:7:22: config expect_status: Input should be a valid list"]


def test_missing_required_config() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.flaky
            config: {value: 1}
        """) == ["wf.yaml:5:13: test.flaky needs config failures"]


def test_set_of_an_undeclared_var() -> None:
    assert problems("""
        name: x
        vars: {count: 0}
        tasks:
          - id: a
            type: set
            config:
              cuont: 1
        """) == [
        "wf.yaml:7:7: set assigns 'cuont', which is not declared in vars (did you mean 'count'?)"
    ]


# --------------------------------------------------------------------------------------------
# Durations


def test_bad_durations() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            timeout: 10 parsecs
            retry: {initial_interval: 1 sec}
          - id: b
            type: wait
            config: {duration: soon}
        """) == [
        "wf.yaml:5:14: timeout: '10 parsecs' is not a duration (use 500ms, 30s, 5m, 2h or 1d)",
        "wf.yaml:6:31: retry.initial_interval: '1 sec' is not a duration "
        "(use 500ms, 30s, 5m, 2h or 1d)",
        "wf.yaml:9:24: config duration: 'soon' is not a duration (use 500ms, 30s, 5m, 2h or 1d)",
    ]
    assert problems("""
        name: x
        defaults:
          timeout: forever
          heartbeat_timeout: -5s
        tasks:
          - {id: a, type: test.echo}
        """) == [
        "wf.yaml:3:12: defaults.timeout: 'forever' is not a duration "
        "(use 500ms, 30s, 5m, 2h or 1d)",
        "wf.yaml:4:22: defaults.heartbeat_timeout: '-5s' is not a duration "
        "(use 500ms, 30s, 5m, 2h or 1d)",
    ]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
     ("PT5M", 300), (45, 45)],
)  # fmt: skip
def test_good_durations(written: Any, seconds: float) -> None:
    definition = load(f"""
        name: x
        tasks:
          - {{id: a, type: test.echo, timeout: {written}}}
        """)
    assert definition.raw_nodes()[0].timeout == seconds


# --------------------------------------------------------------------------------------------
# Expressions


def test_expression_syntax_error_points_inside_the_string() -> None:
    found = problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            when: "${{ 1 + }}"
        """)
    assert len(found) == 1
    # Column 20 is the end of `1 + ` inside the quoted string (the `$` is at column 12).
    assert found[0].startswith("wf.yaml:5:20: bad expression `1 +`: Syntax error: ")


def test_unclosed_expression() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            config:
              value: "total ${{ 1 + 2 "
        """) == ["wf.yaml:6:21: expression is not closed: missing '}}'"]


def test_unknown_function() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            config:
              value: "${{ frobnicate(1) }}"
        """) == ["wf.yaml:6:19: unknown function 'frobnicate' in expression `frobnicate(1)`"]


def test_unknown_root_name() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            config:
              value: "${{ input.x }}"
        """) == [
        "wf.yaml:6:19: unknown name 'input' in expression `input.x` "
        "(names start from error, event, failed_node, index, inputs, item, nodes, run, vars)"
    ]


def test_reference_to_unknown_node_input_and_var() -> None:
    assert problems("""
        name: x
        inputs:
          document: {type: string}
        vars:
          region: EU
        tasks:
          - id: parse
            type: test.echo
          - id: use
            type: test.echo
            depends_on: [parse]
            config:
              value:
                - "n: ${{ nodes.pasre.output }}"
                - "${{ inputs.documnet }}"
                - "${{ vars.regoin == 'EU' }}"
        """) == [
        "wf.yaml:14:19: unknown node 'pasre' in expression (did you mean 'parse'?)",
        "wf.yaml:15:16: unknown input 'documnet' (did you mean 'document'?)",
        "wf.yaml:16:16: unknown var 'regoin' (did you mean 'region'?)",
    ]


def test_reading_a_node_that_is_not_upstream() -> None:
    assert problems("""
        name: x
        tasks:
          - {id: a, type: test.echo}
          - id: b
            type: test.echo
            config:
              value: "${{ nodes.a.output }}"
        """) == [
        "wf.yaml:7:19: 'b' reads nodes.a, which is not upstream of it: add 'a' to depends_on"
    ]


def test_upstream_is_transitive_and_steps_are_sequential() -> None:
    load("""
        name: x
        tasks:
          - {id: a, type: test.echo}
          - {id: b, type: test.echo, depends_on: [a]}
          - {id: c, type: test.echo, depends_on: [b], config: {value: "${{ nodes.a.output }}"}}
        """)
    load("""
        name: x
        steps:
          - {id: a, type: test.echo}
          - {id: b, type: test.echo}
          - {id: c, type: test.echo, config: {value: "${{ nodes.a.output }}"}}
        """)


def test_item_outside_foreach_and_error_outside_a_handler() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            config:
              value: "${{ item }}"
          - id: b
            type: test.echo
            config: {value: "${{ error }}"}
        """) == [
        "wf.yaml:6:19: 'item' is not defined here: only a foreach node has item and index",
        "wf.yaml:9:26: 'error' is not defined here: only a handler (fallback, compensate, "
        "on_failure) sees error",
    ]
    load("""
        name: x
        tasks:
          - id: a
            type: test.echo
            foreach: ${{ [1, 2] }}
            config: {value: "${{ index }}: ${{ item }}"}
            on_error: {fallback: b}
          - {id: b, type: test.echo, config: {value: "${{ failed_node }} ${{ error }}"}}
        """)


def test_expression_in_a_block_scalar_is_located_on_its_line() -> None:
    assert problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            config:
              value: |
                hello
                ${{ nodes.zz.output }}
        """) == ["wf.yaml:8:13: unknown node 'zz' in expression"]


def test_secrets_only_on_their_own() -> None:
    found = problems("""
        name: x
        tasks:
          - id: a
            type: test.echo
            config:
              value: "${{ secrets.TOKEN + 'x' }}"
        """)
    assert len(found) == 1
    assert found[0].startswith("wf.yaml:6:19: a secret can only be used on its own")


# --------------------------------------------------------------------------------------------
# Several problems at once


def test_several_problems_reported_at_once_in_order() -> None:
    assert problems("""
        name: Many problems
        vars: {count: 0}
        tasks:
          - id: fetch
            type: http.requets
            config: {url: "https://example.com"}
          - id: fetch
            type: test.echo
          - id: late
            type: test.echo
            timeout: 10 parsecs
          - id: store
            type: test.echo
            depends_on: [fetchh]
          - id: show
            type: test.echo
            depends_on: [store]
            config:
              value: "${{ frobnicate(nodes.store.output) }}"
          - id: bump
            type: set
            config: {cuont: 1}
        """) == [
        "wf.yaml:5:11: unknown node type 'http.requets' (did you mean 'http.request'?)",
        "wf.yaml:7:9: duplicate node id 'fetch' (first on line 4)",
        "wf.yaml:11:14: timeout: '10 parsecs' is not a duration (use 500ms, 30s, 5m, 2h or 1d)",
        "wf.yaml:14:18: 'store' depends on unknown node 'fetchh' (did you mean 'fetch'?)",
        "wf.yaml:19:19: unknown function 'frobnicate' in expression "
        "`frobnicate(nodes.store.output)`",
        "wf.yaml:22:14: set assigns 'cuont', which is not declared in vars (did you mean 'count'?)",
    ]


def test_a_top_level_typo_does_not_hide_the_graph_problems() -> None:
    assert problems("""
        name: Many problems
        versoin: 1
        tasks:
          - id: store
            type: test.echo
            depends_on: [fetchh]
          - id: show
            type: test.echo
            depends_on: [store]
            config:
              value: "${{ frobnicate(nodes.store.output) }}"
        """) == [
        "wf.yaml:2:1: unknown key 'versoin' (did you mean 'version'?)",
        "wf.yaml:6:18: 'store' depends on unknown node 'fetchh'",
        "wf.yaml:11:19: unknown function 'frobnicate' in expression "
        "`frobnicate(nodes.store.output)`",
    ]


# --------------------------------------------------------------------------------------------
# The seeds' examples and the three spellings


def _shape(definition: Definition) -> list[tuple[str, str, list[str], dict[str, Any]]]:
    return sorted((n.id, n.type, sorted(n.depends_on), n.config) for n in definition.graph())


def test_seed_invoice_processing_loads_unchanged() -> None:
    definition = load_file(SEEDS / "000_invoice_processing.yaml", registry)
    assert definition.display_name == "Invoice Processing"
    assert definition.display_version == "1.0.0"
    assert definition.slug == "invoice-processing"
    assert [(n.id, n.type, n.depends_on) for n in definition.graph()] == [
        ("parse_document", "documents.parse", []),
        ("extract_invoice_data", "ai.extract", ["parse_document"]),
        ("store_results", "database.insert", ["extract_invoice_data"]),
    ]
    assert definition.triggers[0].type == "document_upload"
    assert definition.default_retry().max_attempts == 3
    assert definition.default_retry().backoff == "exponential"


def test_seed_document_processing_steps_load_unchanged() -> None:
    definition = load_file(SEEDS / "001_document_processing.yaml", registry)
    assert definition.display_name == "Document Processing"
    assert definition.display_version == "1.0"
    assert definition.spelling == "steps"
    assert [(n.id, n.type, n.depends_on) for n in definition.graph()] == [
        ("document_input", "input", []),
        ("ai_analysis", "ai.prompt", ["document_input"]),
        ("result_storage", "storage.write", ["ai_analysis"]),
    ]


def test_designer_export_loads_unchanged() -> None:
    definition = load_file(SEEDS / "004_inventory_reorder.yaml", registry)
    assert definition.display_name == "Inventory Reorder Alerts"
    assert definition.display_version == "inventory-reorder-alerts"
    assert definition.spelling == "nodes"
    # The manual trigger is how a run starts, not work: its successor starts at once.
    assert [(n.id, n.type, n.depends_on) for n in definition.graph()] == [
        ("check_stock", "code.python", []),
        ("create_orders", "code.python", ["check_stock"]),
    ]


def test_three_spellings_give_the_same_graph() -> None:
    tasks = load("""
        name: Same graph
        version: "3"
        tasks:
          - {id: fetch, type: test.echo, config: {value: 1}}
          - {id: parse, type: test.echo, depends_on: [fetch],
             config: {value: "${{ nodes.fetch.output }}"}}
          - {id: store, type: test.echo, depends_on: [parse]}
        """)
    steps = load("""
        name: Same graph
        version: "3"
        steps:
          - {id: fetch, type: test.echo, config: {value: 1}}
          - {id: parse, type: test.echo, config: {value: "${{ nodes.fetch.output }}"}}
          - {id: store, type: test.echo}
        """)
    nodes = load("""
        metadata: {name: Same graph, id: "3"}
        nodes:
          - {id: start, type: trigger}
          - {id: fetch, type: test.echo, config: {value: 1}}
          - {id: parse, type: test.echo, config: {value: "${{ nodes.fetch.output }}"}}
          - {id: store, type: test.echo}
        edges:
          - {from: start, to: fetch}
          - {source: fetch, target: parse}
          - {from: parse, to: store}
        """)
    assert _shape(tasks) == _shape(steps) == _shape(nodes)
    assert _shape(tasks)[0] == ("fetch", "test.echo", [], {"value": 1})
    for definition in (tasks, steps, nodes):
        assert definition.display_name == "Same graph"
        assert definition.display_version == "3"
        assert definition.slug == "same-graph"


def test_steps_may_name_their_own_dependencies() -> None:
    definition = load("""
        name: Fan
        steps:
          - {id: a, type: test.echo}
          - {id: b, type: test.echo}
          - {id: c, type: test.echo, depends_on: [a]}
          - {id: d, type: test.echo, depends_on: []}
        """)
    assert {n.id: n.depends_on for n in definition.graph()} == {
        "a": [],
        "b": ["a"],
        "c": ["a"],
        "d": [],
    }


# --------------------------------------------------------------------------------------------
# tideflow validate


def _validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starter.cli", "validate", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_validate_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent("""\
        name: Bad
        tasks:
          - id: a
            type: wait
            config: {duraton: 1s}
          - id: b
            type: wait
            depends_on: [zz]
            config: {duration: 1s}
        """)
    )
    good = tmp_path / "good.yaml"
    good.write_text("name: Good\ntasks:\n  - {id: a, type: wait, config: {duration: 1s}}\n")
    done = _validate(good, bad)
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [
        f"{bad}:5:14: unknown config key 'duraton' for wait (did you mean 'duration'?)",
        f"{bad}:8:18: 'b' depends on unknown node 'zz'",
    ]
    done = _validate(
        good, SEEDS / "001_document_processing.yaml", SEEDS / "004_inventory_reorder.yaml"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"{good}: ok"


# --------------------------------------------------------------------------------------------
# Upstream checks answer exactly the transitive dependencies, whatever the graph's shape


@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n),
        )
    )
)
@settings(max_examples=150, deadline=None, database=None, derandomize=True)
def test_reads_are_allowed_exactly_from_transitive_dependencies(
    graph: tuple[int, list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    n, edges, reads = graph
    # Edges point from a later node to an earlier one: always a DAG, in any document order.
    deps = {i: sorted({b for a, b in edges if a == i and b < i}) for i in range(n)}
    order = list(range(n))
    random.Random(n).shuffle(order)  # document order is not execution order
    readers: dict[int, set[int]] = {}
    for reader, target in reads:
        if reader != target:
            readers.setdefault(reader, set()).add(target)
    lines = ["name: x", "tasks:"]
    for i in order:
        lines += [
            f"  - id: n{i}",
            "    type: test.echo",
            f"    depends_on: {json.dumps([f'n{d}' for d in deps[i]])}",
        ]
        if i in readers:
            value = " ".join(f"${{{{ nodes.n{t}.output }}}}" for t in sorted(readers[i]))
            lines.append(f"    config: {{value: '{value}'}}")
    text = "\n".join(lines) + "\n"

    def ancestors(i: int) -> set[int]:
        seen: set[int] = set()
        stack = list(deps[i])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(deps[current])
        return seen

    expected = {
        f"'n{r}' reads nodes.n{t}, which is not upstream of it: add 'n{t}' to depends_on"
        for r, targets in readers.items()
        for t in targets
        if t not in ancestors(r)
    }
    try:
        load_string(text, "wf.yaml", registry)
        found: set[str] = set()
    except DefinitionError as e:
        found = {p.message for p in e.problems}
    assert found == expected


# --------------------------------------------------------------------------------------------
# Child definition files


def test_a_child_definition_file_is_inlined(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("name: child\ntasks:\n  - {id: c, type: fail}\n")
    parent = tmp_path / "parent.yaml"
    parent.write_text(
        "name: parent\ntasks:\n"
        "  - {id: one, type: workflow, config: {file: child.yaml}}\n"
        "  - {id: two, type: workflow, config: {file: child.yaml}}\n"
    )
    definition = load_file(parent, registry)
    inlined = [n.config["definition"] for n in definition.raw_nodes()]
    assert [d["name"] for d in inlined] == ["child", "child"]


def test_a_child_definition_file_is_checked_and_may_not_start_itself(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "name: child\ntasks:\n  - {id: c, type: workflow, config: {file: parent.yaml}}\n"
        "  - {id: d, type: wiat}\n"
    )
    parent = tmp_path / "parent.yaml"
    parent.write_text(
        "name: parent\ntasks:\n"
        "  - {id: one, type: workflow, config: {file: child.yaml}}\n"
        "  - {id: two, type: workflow, config: {file: child.yaml}}\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_file(parent, registry)
    child = tmp_path / "child.yaml"
    # Read once: the child's problems are reported once, not per node that names it.
    assert [str(p) for p in caught.value.problems] == [
        f"{child}:4:19: unknown node type 'wiat' (did you mean 'wait'?)",
    ]
    (tmp_path / "child.yaml").write_text(
        "name: child\ntasks:\n  - {id: c, type: workflow, config: {file: parent.yaml}}\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_file(parent, registry)
    assert [str(p) for p in caught.value.problems] == [
        f"{child}:3:44: parent.yaml: a workflow cannot start itself "
        "(directly or through its children)"
    ]


def test_child_files_that_multiply_are_refused(tmp_path: Path) -> None:
    # Ten files each naming the next ten times: 10^10 inlined nodes if nothing counted them.
    for level in range(10):
        nodes = "".join(
            f"  - {{id: n{i}, type: workflow, config: {{file: level{level + 1}.yaml}}}}\n"
            for i in range(10)
        )
        (tmp_path / f"level{level}.yaml").write_text(f"name: l{level}\ntasks:\n{nodes}")
    (tmp_path / "level10.yaml").write_text("name: leaf\ntasks:\n  - {id: x, type: fail}\n")
    with pytest.raises(DefinitionError) as caught:
        load_file(tmp_path / "level0.yaml", registry)
    assert any(
        "the child workflows inlined here hold more than 100,000 nodes" in p.message
        for p in caught.value.problems
    )


# --------------------------------------------------------------------------------------------
# Anchors, aliases and merges keep positions


def test_problems_inside_an_alias_point_at_the_anchored_text() -> None:
    found = problems("""
        name: x
        common: &common {type: test.echo, config: {valeu: 1}}
        tasks:
          - {id: a, <<: *common}
        """)
    assert found == [
        "wf.yaml:2:1: unknown key 'common'",
        "wf.yaml:2:44: unknown config key 'valeu' for test.echo (did you mean 'value'?)",
    ]
    found = problems("""
        name: x
        vars:
          base: &base {valeu: 1}
        tasks:
          - id: a
            type: test.echo
            config: *base
        """)
    assert found == [
        "wf.yaml:3:16: unknown config key 'valeu' for test.echo (did you mean 'value'?)"
    ]


def test_merges_and_aliases_load_as_copies() -> None:
    definition = load("""
        name: x
        vars:
          shared: &shared {value: 1}
        tasks:
          - {id: a, type: test.echo, config: *shared}
          - {id: b, type: test.echo, config: {value: 2, <<: *shared}, depends_on: [a]}
        """)
    a, b = definition.raw_nodes()
    assert a.config == {"value": 1}
    assert definition.vars["shared"] == {"value": 1}
    assert a.config is not definition.vars["shared"]
    assert b.config == {"value": 2}  # keys written win over merged ones


def test_expressions_are_counted_before_they_are_compiled() -> None:
    from interpreter.limits import MAX_EXPRESSIONS

    many = "${{ 1 }}" * (MAX_EXPRESSIONS + 1)
    found = problems(
        f'name: x\ntasks:\n  - id: a\n    type: test.echo\n    config: {{value: "{many}"}}\n'
    )
    assert found == [
        f"wf.yaml:5:21: too many expressions: more than {MAX_EXPRESSIONS:,} in one definition "
        "(the rest are not checked)"
    ]


def test_closed_sets_name_their_choices_and_suggest_one() -> None:
    assert problems("""
        name: x
        inputs:
          doc: strng
        triggers:
          - {type: evnt, name: go}
          - {name: go}
        tasks:
          - id: a
            type: test.echo
            retry: {backoff: fixd}
            when: [1]
        """) == [
        "wf.yaml:3:8: inputs.doc.type must be one of string, number, integer, boolean, object, "
        "array, any (did you mean 'string'?)",
        "wf.yaml:5:12: triggers[0].type must be one of manual, api, schedule, document_upload, "
        "event (did you mean 'event'?)",
        "wf.yaml:6:5: triggers[1].type is required",
        "wf.yaml:10:22: retry.backoff must be one of exponential, fixed, constant "
        "(did you mean 'fixed'?)",
        "wf.yaml:11:11: when: Input should be a valid string or a valid boolean",
    ]
