"""Seed 002's definition form, as its TypeScript interfaces write it (``id``, ``variables`` as a
list, task ``inputs``/``timeout``/``retry_policy``/``resource_limits``, ``error_handlers``,
trigger and end nodes, ``nodes`` with ``edges``): it loads unchanged, maps onto the language,
runs on a real worker, and what does not fit is a located error."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

import tests.testing_node_types  # noqa: F401  (test.* types in the catalog)
from activities import registry
from interpreter import DefinitionError, load_file, load_string
from interpreter.model import Fallback
from interpreter.plan import compile_plan
from interpreter.schema import json_schema
from tests.servers.tideflow_worker import Tideflow

SEED_002 = Path(__file__).resolve().parent / "seeds" / "002_order_review.yaml"

ORDER = {
    "order": {
        "lines": [
            {"sku": "A-1", "qty": 4, "price": 20.0},
            {"sku": "B-7", "qty": 2, "price": 35.5},
        ]
    }
}


def problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_string(textwrap.dedent(text).lstrip("\n"), "wf.yaml", catalog=registry)
    return [str(p) for p in caught.value.problems]


def test_the_seed_002_form_maps_onto_the_language() -> None:
    definition = load_file(SEED_002, registry)
    assert (definition.display_name, definition.display_version) == ("order-review", "2.1.0")
    assert definition.slug == "order-review"
    # variables: [{name, type, default}] are the run's vars.
    assert definition.vars == {"threshold": 100.0, "decision": "pending", "score": 0}
    # Trigger and end nodes shape the drawing, not the run.
    graph = {n.id: sorted(n.depends_on) for n in definition.graph()}
    assert graph == {
        "price_order": [],
        "check_stock": [],
        "score_customer": [],
        "default_score": [],
        "decide": ["check_stock", "price_order", "score_customer"],
    }
    nodes = {n["id"]: n for n in compile_plan(definition)["nodes"]}
    price = nodes["price_order"]
    # TaskConfig.timeout and retry intervals are milliseconds, as in TypeScript.
    assert price["timeout"] == 30.0
    assert price["retry"] == {
        "max_attempts": 2,
        "backoff_coefficient": 1.0,
        "initial_interval": 0.5,
    }
    assert price["resource_limits"] == {"cpu_seconds": 5.0, "memory_mb": 256}
    assert "code" in price["config"]  # per-task inputs are the node's config
    # error_handlers: the fallback covers one node, the retry every other (own settings win).
    assert nodes["score_customer"]["on_error"] == {"fallback": "default_score"}
    assert nodes["default_score"]["handler"] is True
    assert nodes["check_stock"]["retry"]["max_attempts"] == 3
    assert nodes["check_stock"]["retry"]["initial_interval"] == 0.2
    handled = {n.id: n for n in definition.raw_nodes()}
    assert handled["score_customer"].on_error == Fallback(fallback="default_score")
    assert definition.error_handlers == []  # applied: the definition is in the language's terms


async def test_a_seed_002_definition_runs(tideflow: Tideflow) -> None:
    report = await tideflow.run(SEED_002.read_text(), ORDER)
    assert report.status == "completed", report.error
    nodes = report.nodes
    assert nodes["price_order"].output == {"total": 151.0, "lines": 2}
    assert nodes["check_stock"].output == {"in_stock": True}
    # The failing task's error handler ran its fallback; its output stands in.
    assert nodes["score_customer"].output == {"score": 50, "source": "default"}
    assert "scoring service is not configured" in (nodes["score_customer"].error or "")
    assert nodes["decide"].output == {"score": 50, "decision": "review"}
    assert set(nodes) == {"price_order", "check_stock", "score_customer", "default_score", "decide"}


def test_what_does_not_fit_the_seed_002_form_is_located() -> None:
    found = problems("""
        id: broken
        name: Broken
        nodes:
          - {id: a, type: test.echo}
        """)
    assert found == ["wf.yaml:1:1: give name, or id (seed 002's form), not both"]

    found = problems("""
        id: broken
        variables:
          - {name: limit, type: number, default: lots}
          - {name: limit, type: string}
          - {name: bad name, type: number}
          - {name: mode, type: enum}
        nodes:
          - {id: start, type: trigger}
          - id: a
            type: test.echo
            timeout: 30
            retry_policy: {max_attempts: 2, initial_interval: 100}
          - id: b
            type: test.echo
            inputs: {value: 1}
            config: {value: 2}
          - {id: done, type: end}
        edges:
          - {from: start, to: a}
          - {from: a, to: done}
          - {from: done, to: b}
        error_handlers:
          - {action: compensate}
          - {action: explode}
        """)
    assert found == [
        "wf.yaml:3:42: default of 'limit' must be a number, got string 'lots'",
        "wf.yaml:4:12: variable 'limit' is declared twice",
        "wf.yaml:5:12: variables[2].name: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'",
        "wf.yaml:6:24: variables[3].type must be one of string, number, integer, boolean, "
        "object, array, any (did you mean 'number'?)",
        "wf.yaml:11:14: timeout: 30 is 30 ms in seed 002's form (numbers of time are "
        'milliseconds, as in TypeScript): write 30000 for 30 s, or "30s"',
        "wf.yaml:13:5: give one of config or inputs, not both",
        "wf.yaml:21:12: edge from end node 'done': an end node has no successors",
        "wf.yaml:23:5: error_handlers[0]: action compensate needs handler: the node to run",
        "wf.yaml:24:14: error_handlers[1].action must be one of retry, continue, pause, "
        "terminate, fail, fallback, compensate",
    ]

    found = problems("""
        id: handlers
        nodes:
          - {id: a, type: test.echo}
          - {id: b, type: test.echo}
        edges:
          - {from: a, to: b}
        error_handlers:
          - {nodes: [a, zz], action: fallback, handler: nowhere}
          - {node: b, action: retry, retry_policy: {max_attempts: 2}}
        """)
    assert found == [
        "wf.yaml:8:17: error handler covers unknown node 'zz'",
        "wf.yaml:8:49: error handler runs unknown node 'nowhere'",
    ]


def test_the_editor_schema_accepts_the_seed_002_form() -> None:
    schema = json_schema(registry)
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(SEED_002.read_text())
    assert [e.message for e in validator.iter_errors(data)] == []
    data["nodes"][1]["inputs"]["cod"] = "typo"  # per-task inputs are checked as config
    assert list(validator.iter_errors(data))


def test_the_side_by_side_example_of_the_docs_gives_one_plan() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text()
    seed, native = re.findall(r"```yaml\n(.*?)```", docs[docs.index("Side by side") :], re.S)[:2]
    assert "id: order-review" in seed and "name: order-review" in native
    plans = [compile_plan(load_string(text, "x.yaml", registry)) for text in (seed, native)]
    assert plans[0] == plans[1]
