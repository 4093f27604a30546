"""Lifecycle events out (a definition's ``notifications:``) to a real webhook endpoint, SMTP
server and Slack-style webhook, each with the run's links; ``wait_for_event`` filters on the real
server; and the located errors of bad channels, filters and budgets."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

import tests.testing_node_types  # noqa: F401  (test.* types)
from activities import WorkerSettings, registry
from activities.settings import SMTPSettings
from interpreter import DefinitionError, load_string
from starter.client import TideflowClient
from tests.polling import eventually
from tests.servers.smtp import SMTPServer
from tests.servers.tideflow_worker import Tideflow
from tests.servers.webhook import WebhookServer

UI = "http://temporal-ui.test:8080"
API = "http://tideflow.test:8000"


def _yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest_asyncio.fixture
async def notifying(
    temporal_env: WorkflowEnvironment, smtp_server: SMTPServer, tmp_path: Path
) -> AsyncIterator[TideflowClient]:
    """A worker that sends mail to the test SMTP server and knows the UI and API addresses."""
    from worker import running_worker

    queue = f"notify-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(
        home=tmp_path,
        task_queue=queue,
        allow_private_networks=True,
        smtp=SMTPSettings(**smtp_server.settings()),
        ui_url=UI,
        api_url=API,
    )
    async with running_worker(temporal_env.client, settings):
        yield TideflowClient(temporal_env.client, task_queue=queue)


async def test_a_failed_run_is_told_to_a_webhook_and_by_email(
    notifying: TideflowClient, webhook_server: WebhookServer, smtp_server: SMTPServer
) -> None:
    smtp_server.reset()
    definition = load_string(
        _yaml(f"""
        name: Notify Check
        version: "3"
        notifications:
          - type: webhook
            on: [started, completed, failed]
            config:
              url: {webhook_server.url("/events")}
              headers: {{X-Team: ops}}
          - type: email
            on: [failed]
            config: {{to: ops@tideflow.test}}
        tasks:
          - {{id: first, type: test.echo, config: {{value: 1}}}}
          - {{id: broken, type: test.permanent, depends_on: [first],
             config: {{message: the ledger is closed}}}}
        """),
        "notify.yaml",
        registry,
    )
    run = await notifying.start(definition, {})
    report = await run.report()
    assert report.status == "failed"

    started, failed = (r.json() for r in webhook_server.requests_to("/events"))
    assert started["event"] == "started"
    assert failed["event"] == "failed"
    assert webhook_server.requests_to("/events")[0].headers["x-team"] == "ops"
    run_id = report.run_id
    assert {k: failed[k] for k in ("workflow_id", "run_id", "definition", "version", "slug")} == {
        "workflow_id": run.id,
        "run_id": run_id,
        "definition": "Notify Check",
        "version": "3",
        "slug": "notify-check",
    }
    assert failed["status"] == "failed"
    assert "the ledger is closed" in failed["error"]
    assert failed["message"] == f"Run {run.id} of Notify Check 3 failed."
    assert failed["links"] == {
        "web_ui": f"{UI}/namespaces/default/workflows/{run.id}/{run_id}/history",
        "run_page": f"{API}/ui/runs/{run.id}",
    }

    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ["ops@tideflow.test"]
    assert mail.message["Subject"] == f"Tideflow: Notify Check 3 run {run.id} failed"
    body = mail.message.get_content()
    assert "Status: failed" in body
    assert "the ledger is closed" in body
    assert f"Run page: {API}/ui/runs/{run.id}" in body
    assert f"Temporal Web UI: {UI}/namespaces/default/workflows/{run.id}/{run_id}/history" in body


async def test_needs_attention_and_cancelled_go_to_slack(
    notifying: TideflowClient, webhook_server: WebhookServer
) -> None:
    definition = load_string(
        _yaml(f"""
        name: Notify Slack
        notifications:
          - type: slack
            on: [needs_attention, cancelled]
            config: {{webhook_url: {webhook_server.url("/slack")}, channel: "#ops"}}
        tasks:
          - {{id: fragile, type: test.permanent, on_error: pause}}
        """),
        "slack.yaml",
        registry,
    )
    run = await notifying.start(definition, {})
    [attention] = await eventually(
        lambda: webhook_server.requests_to("/slack"), what="the needs_attention message"
    )
    message = attention.json()
    assert message["channel"] == "#ops"
    text = message["text"]
    assert text.startswith(f"*Tideflow: Notify Slack run {run.id} needs attention*\n")
    assert "Nodes: fragile" in text
    assert f"Run page: {API}/ui/runs/{run.id}" in text

    await run.cancel()
    report = await run.report()
    assert report.status == "cancelled"
    cancelled = webhook_server.requests_to("/slack")[1].json()["text"]
    assert cancelled.startswith(f"*Tideflow: Notify Slack run {run.id} was cancelled*")


async def test_wait_for_event_takes_only_events_its_filters_accept(tideflow: Tideflow) -> None:
    handle = await tideflow.start(
        _yaml("""
        name: Filtered
        inputs:
          customer: {type: string, required: true}
        tasks:
          - id: big_order
            type: wait_for_event
            config:
              event: order.placed
              correlation: ${{ inputs.customer }}
              filters:
                - ${{ event.payload.amount > 100.0 }}
                - ${{ event.payload.currency == "EUR" }}
              timeout: 1h
        outputs:
          order: ${{ nodes.big_order.output.payload }}
        """),
        {"customer": "acme"},
    )
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)
    run = client.get_run(handle.id)
    await eventually(lambda: run.state(), lambda s: s.status == "waiting", "the run waits")
    for payload in (
        {"amount": 50.0, "currency": "EUR", "n": 1},  # too small
        {"amount": 500.0, "currency": "USD", "n": 2},  # wrong currency
        {"currency": "EUR", "n": 3},  # a filter cannot read it: not this node's
    ):
        await run.emit("order.placed", payload, correlation="acme")
    state = await run.state()
    assert state.nodes["big_order"] == "waiting"
    await run.emit("order.placed", {"amount": 150.0, "currency": "EUR", "n": 4}, "acme")
    report = await tideflow.result(handle)
    assert report.status == "completed"
    assert report.outputs == {"order": {"amount": 150.0, "currency": "EUR", "n": 4}}


def _problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_string(_yaml(text), "wf.yaml", registry)
    return [str(p) for p in caught.value.problems]


def test_bad_channels_filters_and_budgets_are_located_errors() -> None:
    assert _problems("""
        name: Bad channels
        notifications:
          - type: webhook
            config: {urll: "http://x"}
          - type: email
            config: {to: ops@example.com, subjct: hi}
          - type: slack
            config: {webhook_url: "ftp://hooks.example.com/x"}
          - type: webhook
            config: {url: "${{ inputs.hook }}", headers: {Authorization: "${{ secrets.T }}"}}
          - type: webhook
            config: {url: "${{ secrets.HOOK }}", timeout: -1}
        tasks:
          - {id: a, type: set, config: {}}
        """) == [
        "wf.yaml:4:13: a webhook notification needs config url",
        "wf.yaml:4:14: unknown config key 'urll' for a webhook notification (did you mean 'url'?)",
        "wf.yaml:6:35: unknown config key 'subjct' for an email notification "
        "(did you mean 'subject'?)",
        "wf.yaml:8:13: config: webhook_url must start with http:// or https://",
        "wf.yaml:10:19: a notification's config is sent as written: expressions are not "
        "evaluated here, only ${{ secrets.NAME }} is replaced",
        "wf.yaml:12:51: config timeout: Input should be greater than 0",
    ]
    assert _problems("""
        name: Bad types
        budget: {tokens: lots, cost_usd: -1}
        notifications:
          - {type: pager, config: {}}
          - {type: webhook, on: [failed, exploded], config: {url: "http://x"}}
        tasks:
          - id: wait
            type: wait_for_event
            config:
              event: paid
              filters: ["${{ event.payload.amount > }}", "${{ nodes.nowhere.output }}"]
          - {id: ask, type: ai.prompt, budget: {cost_usd: free}, config: {prompt: hi}}
        """) == [
        "wf.yaml:2:18: budget.tokens: Input should be a valid integer, unable to parse string "
        "as an integer",
        "wf.yaml:2:34: budget.cost_usd: Input should be greater than 0",
        "wf.yaml:4:12: notifications[0].type must be one of notify.webhook, notify.email, "
        "notify.slack, webhook, email, slack",
        "wf.yaml:5:34: notifications[1].on[1] must be one of started, completed, failed, "
        "cancelled, needs_attention, budget",
        "wf.yaml:11:45: bad expression `event.payload.amount >`: Syntax error: mismatched input "
        "'<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, "
        "NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
        "wf.yaml:11:55: unknown node 'nowhere' in expression",
        "wf.yaml:12:51: budget.cost_usd: Input should be a valid number, unable to parse string "
        "as a number",
    ]


def test_links_use_the_embedded_servers_ui_when_no_ui_url_is_set(tmp_path: Path) -> None:
    import json
    import os
    from types import SimpleNamespace

    from activities.notify import run_links

    ctx: Any = SimpleNamespace(settings=WorkerSettings(home=tmp_path))
    assert run_links(ctx, "wf-1", "r-1") == {
        "web_ui": "http://localhost:8233/namespaces/default/workflows/wf-1/r-1/history"
    }
    server = {"pid": os.getpid(), "ui_url": "http://127.0.0.1:18233", "address": "x"}
    (tmp_path / "server.json").write_text(json.dumps(server))
    assert run_links(ctx, "wf 1", "")["web_ui"] == (
        "http://127.0.0.1:18233/namespaces/default/workflows/wf%201/history"
    )
    ctx.settings = WorkerSettings(home=tmp_path, ui_url="https://ui.example/", api_url="https://t")
    assert run_links(ctx, "wf-1", "r-1") == {
        "web_ui": "https://ui.example/namespaces/default/workflows/wf-1/r-1/history",
        "run_page": "https://t/ui/runs/wf-1",
    }
