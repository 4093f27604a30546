"""A doubtful classification waits for a person on the real dev server, and the reviewer's
label (given with the CLI or the HTTP API) becomes the node's output; the run report names the
model that answered."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import redirect_stdout
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings, registry
from activities.settings import AISettings
from interpreter import load_string
from interpreter.control import Approve
from interpreter.report import RunState
from interpreter.workflow import TideflowWorkflow
from starter import client as tideflow_client
from starter.api import create_app
from starter.cli import main as cli_main
from starter.progress import print_state
from tests.polling import eventually
from tests.servers.openai_stub import OpenAIStub
from tests.test_ai import label_reply

DEFINITION = """\
name: Triage
version: "1"
inputs:
  text: {type: string, required: true}
tasks:
  - id: classify
    type: ai.classify
    config:
      text: ${{ inputs.text }}
      labels:
        invoice: a bill to pay
        letter: a personal or business letter
      min_confidence: 0.8
      model: gpt-review
  - id: after
    type: set
    depends_on: [classify]
    config: {}
outputs:
  label: ${{ nodes.classify.output.label }}
"""


@pytest_asyncio.fixture
async def ai_queue(
    temporal_env: WorkflowEnvironment, openai_stub: OpenAIStub, tmp_path: Path
) -> AsyncIterator[str]:
    """A worker whose AI nodes talk to the stub, on a task queue of its own."""
    from worker import running_worker

    openai_stub.reset()
    queue = f"ai-review-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(
        home=tmp_path,
        task_queue=queue,
        ai=AISettings(base_url=openai_stub.base_url, api_key="test"),
    )
    async with running_worker(temporal_env.client, settings):
        yield queue


async def test_a_doubtful_label_waits_for_review_and_takes_the_reviewers_label(
    temporal_env: WorkflowEnvironment,
    openai_stub: OpenAIStub,
    ai_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    label_reply(openai_stub, "invoice", 0.6, letter=0.4)
    text = "Dear Ana, the amount we spoke about is enclosed."
    definition = load_string(DEFINITION, "triage.yaml", catalog=registry)
    handle = await tideflow_client.start(
        temporal_env.client, definition, {"text": text}, task_queue=ai_queue
    )

    async def state() -> RunState:
        return await handle.query(TideflowWorkflow.state)

    waiting = await eventually(
        state, lambda s: "classify" in s.approvals, "the classification waiting for review"
    )
    review = waiting.approvals["classify"]
    assert review.kind == "review"
    assert review.options == ["invoice", "letter"]
    assert review.proposed["label"] == "invoice"
    assert review.proposed["confidence"] == 0.6
    assert review.details["text"] == text
    assert review.details["scores"] == {"invoice": 0.6, "letter": 0.4}
    assert "60% sure the label is 'invoice'" in (review.message or "")
    assert waiting.nodes["classify"] == "waiting"
    # tideflow status shows the reviewer the question, the model's answer and the document.
    shown = io.StringIO()
    with redirect_stdout(shown):
        print_state(handle.id, waiting)
    status = shown.getvalue()
    assert "review classify: the model is 60% sure the label is 'invoice'" in status
    assert '"label": "invoice"' in status
    assert "options: invoice, letter" in status
    assert f"document: {text}" in status
    assert f"tideflow approve {handle.id} classify [--answer VALUE] [--reject]" in status

    # An answer outside the labels is refused; the reviewer's label is taken.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            TideflowWorkflow.approve, Approve(node="classify", output="poem", by="ana")
        )
    assert "'poem' is not an answer of 'classify'" in str(refused.value.cause)
    # The reviewer answers with the CLI, as a person would.
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    out = io.StringIO()
    monkeypatch.setenv("TIDEFLOW_USER", "ana")  # the CLI answers as the acting user
    argv = ["approve", handle.id, "classify", "--answer", "letter"]
    with redirect_stdout(out):
        code = await asyncio.to_thread(cli_main, [*argv, "--comment", "it is a letter"])
    assert code == 0
    assert out.getvalue() == f"approved classify of {handle.id}\n"
    report = await tideflow_client.result(temporal_env.client, handle.id)
    assert report.status == "completed"
    assert report.outputs == {"label": "letter"}
    output = report.nodes["classify"].output
    assert output["label"] == "letter"
    assert output["confidence"] == 0.6  # what the model said, kept for the record
    assert output["review"]["by"] == "ana"
    assert output["review"]["comment"] == "it is a letter"
    usage = report.nodes["classify"].usage or {}
    assert usage["model"] == "gpt-review"
    assert len(openai_stub.requests) == 1


async def test_the_reviewers_label_through_the_http_api(
    temporal_env: WorkflowEnvironment, openai_stub: OpenAIStub, ai_queue: str, tmp_path: Path
) -> None:
    label_reply(openai_stub, "invoice", 0.55, letter=0.45)
    definition = load_string(DEFINITION, "triage.yaml", catalog=registry)
    handle = await tideflow_client.start(
        temporal_env.client, definition, {"text": "Dear Ana, thanks."}, task_queue=ai_queue
    )

    async def state() -> RunState:
        return await handle.query(TideflowWorkflow.state)

    await eventually(state, lambda s: "classify" in s.approvals, "the review")
    settings = WorkerSettings(home=tmp_path / "api", task_queue=ai_queue)
    app = create_app(tmp_path, client=temporal_env.client, settings=settings, triggers=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tideflow.test") as http:
            answer = await http.post(
                f"/runs/{handle.id}/approve",
                json={"node": "classify", "output": "letter", "by": "ana"},
            )
    assert answer.status_code == 200, answer.text
    report = await tideflow_client.result(temporal_env.client, handle.id)
    assert report.outputs == {"label": "letter"}
    assert report.nodes["classify"].output["review"]["by"] == "ana"
