"""Redrive: an ended run runs again with the same plan and inputs, and nodes that completed keep
their recorded output without executing again (the endpoint's hit counts prove it)."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from interpreter.workflow import DEFINITION_KEY
from starter.api.app import create_app
from starter.client import RedriveError, TideflowClient
from starter.client.redrive import MEMO_KEY, _history_outcomes, recorded_run
from starter.server import REDRIVE_KEY
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer
from tests.test_api import _serving
from tests.test_cli import Cli

FIVE_CALLS = """
name: {name}
inputs:
  base: {{type: string, required: true}}
defaults:
  retry: {{max_attempts: 1}}
steps:
  - {{id: n1, type: http.request, config: {{url: "${{{{ inputs.base }}}}/n1"}}}}
  - {{id: n2, type: http.request, config: {{url: "${{{{ inputs.base }}}}/n2"}}}}
  - {{id: n3, type: http.request, config: {{url: "${{{{ inputs.base }}}}/n3"}}}}
  - {{id: n4, type: http.request, config: {{url: "${{{{ inputs.base }}}}/n4"}}}}
  - {{id: n5, type: http.request, config: {{url: "${{{{ inputs.base }}}}/n5"}}}}
outputs:
  last: ${{{{ nodes.n5.output.status_code }}}}
"""


def five_calls(name: str) -> str:
    """Five HTTP nodes in a row, each calling ``<base>/nK`` once (no retries)."""
    return FIVE_CALLS.format(name=name)


def hits(server: WebhookServer) -> dict[str, int]:
    """Requests per path."""
    out: dict[str, int] = {}
    for request in server.requests:
        out[request.path] = out.get(request.path, 0) + 1
    return out


@pytest.fixture
def client(tideflow: Tideflow) -> TideflowClient:
    """A client sharing the session worker's data converter (and payload store)."""
    return TideflowClient(tideflow.client, user="ana", task_queue=tideflow.task_queue)


@pytest.fixture
def cli(tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tideflow`` pointed at the session's dev server and worker (as in test_cli)."""
    env = {
        "TEMPORAL_ADDRESS": tideflow.address,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Cli(env, tideflow.task_queue)


async def _failed_at_n3(
    tideflow: Tideflow, client: TideflowClient, server: WebhookServer, name: str
) -> str:
    server.respond("/n3", status=404, text="not here yet")
    run = await client.start(tideflow.load(five_calls(name)), {"base": server.base_url})
    report = await run.report()
    assert report.status == "failed"
    assert [report.nodes[n].status for n in ("n1", "n2", "n3")] == [
        "completed",
        "completed",
        "failed",
    ]
    return run.id


async def test_a_run_failing_at_the_third_call_is_redriven_after_the_endpoint_is_fixed(
    tideflow: Tideflow, client: TideflowClient, webhook_server: WebhookServer
) -> None:
    old = await _failed_at_n3(tideflow, client, webhook_server, "redrive five")
    assert hits(webhook_server) == {"/n1": 1, "/n2": 1, "/n3": 1}

    # The endpoint answers now (the script is used up): redrive.
    new = await client.get_run(old).redrive()
    report = await new.report()
    assert report.status == "completed", report.error
    assert report.reused == ["n1", "n2"]
    assert report.outputs == {"last": 200}
    # Nodes 1-2 did not call again; 3-5 did, once each.
    assert hits(webhook_server) == {"/n1": 1, "/n2": 1, "/n3": 2, "/n4": 1, "/n5": 1}
    # The kept outputs are the old run's.
    old_report = await client.get_run(old).report()
    assert report.nodes["n2"].output == old_report.nodes["n2"].output
    assert report.nodes["n1"].attempts == 1

    # The new run names the old one: memo and search attribute.
    description = await new.describe()
    memo = await description.memo()
    assert memo[MEMO_KEY]["workflow_id"] == old
    assert memo[MEMO_KEY]["reused"] == ["n1", "n2"]
    assert description.typed_search_attributes.get(REDRIVE_KEY) == old
    assert description.typed_search_attributes.get(DEFINITION_KEY) == "redrive-five"
    # Only three activities ran in the new run.
    history = await new.temporal.fetch_history()
    scheduled = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert len(scheduled) == 3


async def test_redrive_from_a_node_runs_it_and_what_follows_again(
    tideflow: Tideflow, client: TideflowClient, webhook_server: WebhookServer
) -> None:
    old = await _failed_at_n3(tideflow, client, webhook_server, "redrive from")
    plan = await client.get_run(old).redrive_plan("n2")
    assert sorted(plan.reuse) == ["n1"]
    assert plan.rerun == ["n2", "n3", "n4", "n5"]
    report = await (await client.get_run(old).redrive("n2")).report()
    assert report.status == "completed"
    assert report.reused == ["n1"]
    assert hits(webhook_server) == {"/n1": 1, "/n2": 2, "/n3": 2, "/n4": 1, "/n5": 1}

    with pytest.raises(RedriveError, match=r"has no node 'n9'") as refused:
        await client.get_run(old).redrive("n9")
    assert refused.value.field == "from_node"


async def test_outputs_are_read_from_the_history_too(
    tideflow: Tideflow, client: TideflowClient, webhook_server: WebhookServer
) -> None:
    old = await _failed_at_n3(tideflow, client, webhook_server, "redrive history")
    recorded = await recorded_run(client.get_run(old))
    assert recorded.source == "report"
    from_history = await _history_outcomes(client, old, recorded.run_id)
    assert sorted(from_history) == ["n1", "n2"]
    for node in ("n1", "n2"):
        assert from_history[node].output == recorded.completed[node].output


BIG_THEN_FAIL = """
name: redrive big
steps:
  - id: produce
    type: code
    config:
      code: |
        return {"text": "word " * 100_000}
  - id: check
    type: code
    config:
      code: |
        if inputs.get("strict", True):
            raise ValueError("not yet")
        return {"length": len(nodes.produce.output.text)}
    retry: {max_attempts: 1}
outputs:
  length: ${{ nodes.check.output.length }}
"""


async def test_an_output_stored_by_reference_is_reused_whole(
    tideflow: Tideflow, client: TideflowClient
) -> None:
    run = await client.start(tideflow.load(BIG_THEN_FAIL), {"strict": True})
    report = await run.report()
    assert report.status == "failed"
    recorded = await recorded_run(run)
    assert recorded.completed["produce"].output["text"] == "word " * 100_000
    # The history holds a reference, not the half megabyte.
    history = await run.temporal.fetch_history()
    assert max(event.ByteSize() for event in history.events) < 64 * 1024


async def test_a_cancelled_run_is_redriven_from_its_report_query(
    tideflow: Tideflow, client: TideflowClient
) -> None:
    text = """
    name: redrive cancelled
    steps:
      - {id: first, type: test.echo, config: {value: 1}}
      - {id: hold, type: approval}
      - {id: last, type: test.echo, config: {value: 3}}
    """
    run = await client.start(tideflow.load(textwrap.dedent(text)))
    await eventually(lambda: run.state(timeout=5), lambda s: "hold" in s.approvals, "approval")
    await run.cancel()
    assert (await run.report()).status == "cancelled"
    plan = await run.redrive_plan()
    assert plan.old.status == "cancelled"
    assert sorted(plan.reuse) == ["first"]
    new = await run.redrive()
    await eventually(lambda: new.state(timeout=5), lambda s: "hold" in s.approvals, "approval")
    await new.approve("hold")
    report = await new.report()
    assert report.status == "completed"
    assert report.reused == ["first"]


async def test_a_compensated_node_runs_again(tideflow: Tideflow, client: TideflowClient) -> None:
    text = """
    name: redrive saga
    tasks:
      - {id: charge, type: test.echo, config: {value: charged}, compensate: refund}
      - {id: refund, type: test.echo, config: {value: refunded}}
      - id: ship
        type: code
        depends_on: [charge]
        retry: {max_attempts: 1}
        config: {code: "raise ValueError('no stock')"}
    """
    run = await client.start(tideflow.load(textwrap.dedent(text)))
    report = await run.report()
    assert report.status == "failed"
    assert report.nodes["refund"].status == "completed"
    plan = await run.redrive_plan()
    # The charge was refunded: keeping it would leave the redrive without one.
    assert plan.reuse == {}
    assert plan.old.compensated == {"charge"}


async def test_a_completed_or_open_run_cannot_be_redriven(
    tideflow: Tideflow, client: TideflowClient, cli: Cli
) -> None:
    done = await client.start(tideflow.load("name: redrive done\nsteps:\n  - {id: a, type: set}"))
    assert (await done.report()).status == "completed"
    with pytest.raises(RedriveError, match="completed: there is nothing to redrive"):
        await done.redrive()
    result = await cli("redrive", done.id)
    assert result.code == 2
    assert result.stderr.strip() == (
        f"redrive: run {done.id} completed: there is nothing to redrive"
    )
    open_run = await client.start(
        tideflow.load("name: redrive open\nsteps:\n  - {id: hold, type: approval}")
    )
    result = await cli("redrive", open_run.id)
    assert result.code == 2
    assert "is still running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    await open_run.cancel()
    # Nothing was started by the refusals.
    linked = f'{REDRIVE_KEY.name} = "{done.id}" OR {REDRIVE_KEY.name} = "{open_run.id}"'
    assert [e async for e in tideflow.client.list_workflows(linked)] == []


async def test_cli_redrive_wait_json(
    tideflow: Tideflow, client: TideflowClient, cli: Cli, webhook_server: WebhookServer
) -> None:
    old = await _failed_at_n3(tideflow, client, webhook_server, "redrive cli")
    result = await cli("redrive", old, "--wait", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["status"] == "completed"
    assert report["reused"] == ["n1", "n2"]
    assert "reusing n1, n2; running n3, n4, n5" in result.stderr
    unknown = await cli("redrive", "no-such-run")
    assert unknown.code == 1
    assert unknown.stderr.strip() == "redrive: no run 'no-such-run' in namespace 'default'"


async def test_bulk_redrive_of_three_failed_runs(
    tideflow: Tideflow, client: TideflowClient, cli: Cli, webhook_server: WebhookServer
) -> None:
    olds = [await _failed_at_n3(tideflow, client, webhook_server, "redrive bulk") for _ in range(3)]
    slug = "redrive-bulk"

    async def listed() -> list[str]:
        return [c.run.workflow_id for c in await client.redrive_candidates(definition=slug)]

    await eventually(listed, lambda ids: sorted(ids) == sorted(olds), "the failed runs listed")
    dry = await cli("redrive", "--definition", slug, "--status", "failed", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == f"would redrive 3 failed run(s) of {slug}"
    assert all(old in dry.stdout for old in olds)
    assert "/n4" not in hits(webhook_server)  # the dry run started nothing

    done = await cli("redrive", "--definition", slug, "--since", "1h")
    assert done.code == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == f"redriving 3 failed run(s) of {slug} that ended in the last 1h"
    assert done.stdout.splitlines()[-1] == "redrove 3 run(s)"
    assert hits(webhook_server)["/n1"] == 3  # each old run called it once; no redrive did

    async def redrives() -> list[Any]:
        query = " OR ".join(f'{REDRIVE_KEY.name} = "{old}"' for old in olds)
        return [e async for e in tideflow.client.list_workflows(query)]

    new = await eventually(redrives, lambda found: len(found) == 3, "three redrives")
    for execution in new:
        report = await client.get_run(execution.id).report()
        assert report.status == "completed"
        assert report.reused == ["n1", "n2"]
    assert hits(webhook_server)["/n5"] == 3

    # A second bulk redrive finds them redriven already.
    again = await cli("redrive", "--definition", slug)
    assert again.stdout.splitlines()[0] == f"redriving 0 failed run(s) of {slug}"
    assert again.stdout.count("already redriven by") == 3


async def test_http_redrive(
    tideflow: Tideflow, client: TideflowClient, webhook_server: WebhookServer, tmp_path: Path
) -> None:
    old = await _failed_at_n3(tideflow, client, webhook_server, "redrive http")
    app = create_app(tmp_path, client=tideflow.client, triggers=False)
    async with _serving(app) as api:
        unknown = await api.post(f"/runs/{old}/redrive", json={"from_node": "nope"})
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["problems"][0]["field"] == "from_node"
        response = await api.post(f"/runs/{old}/redrive", json={})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["redrive_of"] == old
        assert body["reused"] == ["n1", "n2"]
        assert body["rerun"] == ["n3", "n4", "n5"]
        report = await api.get(f"/runs/{body['workflow_id']}/report", params={"wait": "true"})
        assert report.json()["status"] == "completed"
        again = await api.post(f"/runs/{body['workflow_id']}/redrive")
        assert again.status_code == 409
        assert "completed: there is nothing to redrive" in again.json()["detail"]
        missing = await api.post("/runs/no-such-run/redrive")
        assert missing.status_code == 404


async def test_a_run_of_a_format_1_input_is_redriven_from_its_compiled_definition(
    tideflow: Tideflow, client: TideflowClient, webhook_server: WebhookServer
) -> None:
    from interpreter.control import RunInput
    from interpreter.workflow import TideflowWorkflow
    from starter.client import definition_json

    webhook_server.respond("/n3", status=404, text="not yet")
    definition = tideflow.load(five_calls("redrive format one"))
    # What older clients sent: the source definition instead of a compiled plan.
    legacy = RunInput(
        definition=definition_json(definition), inputs={"base": webhook_server.base_url}
    )
    handle = await tideflow.client.start_workflow(
        TideflowWorkflow.run,
        legacy,
        id=f"redrive-format-one-{uuid.uuid4().hex[:6]}",
        task_queue=tideflow.task_queue,
    )
    old = client.get_run(handle.id)
    assert (await old.report()).status == "failed"
    plan = await old.redrive_plan()
    assert plan.old.input.plan is None and plan.old.plan["format"] == 2
    report = await (await old.redrive()).report()
    assert report.status == "completed"
    assert report.reused == ["n1", "n2"]
    assert hits(webhook_server) == {"/n1": 1, "/n2": 1, "/n3": 2, "/n4": 1, "/n5": 1}
