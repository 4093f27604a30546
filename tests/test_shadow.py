"""Shadow runs: the deployed version's recent runs re-run through a candidate, side-effecting
nodes answered from what the original runs recorded; the per-node diff shows what changed and
nothing is written."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

from interpreter.report import DefinitionRef, NodeReport, RunReport
from starter.shadow import RecordedAnswers, has_side_effects
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer
from tests.test_cli import Cli
from tests.test_registry import cli_with_home

ORDERS = """
name: Shadow orders
inputs:
  amount: {{type: number, required: true}}
  base: {{type: string, required: true}}
  db: {{type: string, required: true}}
tasks:
  - id: price
    type: code
    config:
      code: |
        return {{"total": inputs["amount"] * {factor}}}
  - id: save
    type: database.insert
    depends_on: [price]
    config:
      connection: ${{{{ inputs.db }}}}
      table: orders
      record: {{total: "${{{{ nodes.price.output.total }}}}"}}
  - id: announce
    type: http.request
    depends_on: [save]
    config:
      method: POST
      url: ${{{{ inputs.base }}}}/announce
      json: {{total: "${{{{ nodes.price.output.total }}}}"}}
outputs:
  total: ${{{{ nodes.price.output.total }}}}
"""


def orders(folder: Path, name: str, factor: str) -> Path:
    """The orders definition, its price multiplied by ``factor``."""
    path = folder / name
    path.write_text(textwrap.dedent(ORDERS.format(factor=factor)).lstrip())
    return path


@pytest.fixture
def cli(tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tideflow`` on the session's server and worker, with its own home and registry."""
    return cli_with_home(tideflow, tmp_path, monkeypatch)


def rows(db: Path) -> int:
    """How many orders the database holds."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from orders").fetchone()[0])


async def test_a_candidate_changing_a_node_is_shown_and_writes_nothing(
    cli: Cli, tideflow: Tideflow, tmp_path: Path, webhook_server: WebhookServer
) -> None:
    db = tmp_path / "orders.db"
    deployed = orders(tmp_path, "orders.yaml", "2")
    assert (await cli("deploy", str(deployed))).code == 0
    base, url = webhook_server.base_url, f"sqlite:///{db}"
    for amount, target in (("10", "shadow-orders"), ("20", str(deployed))):
        # One run of the deployed name, one of the same file: both are runs of version 1.
        done = await cli(
            "run",
            target,
            "--json",
            "-i",
            f"amount={amount}",
            "-i",
            f"base={base}",
            "-i",
            f"db={url}",
        )
        assert done.code == 0, done.stderr
    assert rows(db) == 2
    assert len(webhook_server.requests_to("/announce")) == 2

    candidate = orders(tmp_path, "candidate.yaml", "2.5")
    shown = await cli("shadow", "shadow-orders", "--candidate", str(candidate), "--runs", "5")
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"shadow of shadow-orders@1 by {candidate}"
    runs = [line for line in lines if line.startswith("run ")]
    assert len(runs) == 2
    assert all(
        line.endswith("original completed, candidate completed: 1 node(s) changed") for line in runs
    )
    text = shown.stdout
    assert "  price: output changed\n" in text
    assert '  price: output changed\n     {\n    -  "total": 40.0\n    +  "total": 50.0\n' in text
    assert '    -  "total": 20.0\n    +  "total": 25.0\n' in text
    assert text.count("  outputs changed:\n") == 2
    assert "  answered from the original run: announce, save\n" in text
    assert lines[-1] == (
        "2 run(s) of shadow-orders version 1: 2 changed (2 node(s)), 0 unchanged, 0 not "
        "completed by the candidate; 4 side-effecting node(s) answered from the original "
        "runs, none executed"
    )
    # Nothing reached the database or the endpoint.
    assert rows(db) == 2
    assert len(webhook_server.requests_to("/announce")) == 2

    same = await cli("shadow", "shadow-orders", "--candidate", str(deployed), "--json")
    body = same.json()
    assert [r["changes"] for r in body["runs"]] == [[], []]
    assert body["summary"].startswith("2 run(s) of shadow-orders version 1: 0 changed")

    unknown = await cli("shadow", "shadow-order", "--candidate", str(candidate))
    assert unknown.code == 2
    assert unknown.stderr.strip() == (
        "shadow: no definition 'shadow-order' in the registry (did you mean 'shadow-orders'?)"
    )


@pytest.mark.parametrize(
    ("kind", "config", "effect"),
    [
        ("http.request", {"method": "GET", "url": "x"}, False),
        ("http.request", {"url": "x"}, False),
        ("http.request", {"method": "post", "url": "x"}, True),
        ("database.query", {"sql": "SELECT * FROM t WHERE a = :a"}, False),
        ("database.query", {"sql": "select 1; delete from t"}, True),
        ("database.query", {"sql": "UPDATE t SET a = 1"}, True),
        ("database.insert", {}, True),
        ("storage.write", {}, True),
        ("storage.read", {}, False),
        ("notify.email", {}, True),
        ("notify.lifecycle", {}, True),
        ("ai.prompt", {}, False),
        ("code.python", {}, False),
        ("acme.extension", {}, True),
    ],
)
def test_which_nodes_count_as_side_effects(kind: str, config: dict[str, Any], effect: bool) -> None:
    assert has_side_effects(kind, config) is effect


def test_recorded_answers_for_foreach_items_and_unrecorded_nodes() -> None:
    from interpreter.node_io import NodeInput

    original = RunReport(
        workflow_id="w",
        run_id="r",
        definition=DefinitionRef(name="x"),
        status="completed",
        nodes={"each": NodeReport(status="completed", output=[{"i": 0}, {"i": 1}])},
    )
    book = RecordedAnswers(original)
    answer = book.answer("each", "each[1]", "storage.write", NodeInput(node_id="each[1]"), 1)
    assert answer is not None and answer.output == {"i": 1}
    assert book.answer("new", "new", "database.insert", NodeInput(node_id="new"), 1) is not None
    assert book.unrecorded == {"new"}
    assert book.answer("calc", "calc", "code.python", NodeInput(node_id="calc"), 1) is None
