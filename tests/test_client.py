"""The typed client on the session's dev server: RunHandle's answers for runs that have ended
(cancel, and retry/skip/fail with the redrive hint), the acting user as ``by``, and the
client's identity reaching the server with the signals it sends."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType

from activities import WorkerSettings
from starter.client import (
    ControlError,
    RunHandle,
    TideflowClient,
    acting_user,
    default_identity,
)
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow

STUCK = """
name: NAME
vars: {booked: false}
tasks:
  - id: book
    type: set
    config: {booked: true}
  - id: charge
    type: fail
    depends_on: [book]
    on_error: pause
    config: {message: card declined}
"""

QUICK = """
name: NAME
vars: {done: false}
tasks:
  - {id: only, type: set, config: {done: true}}
"""


def named(text: str) -> str:
    """A definition name unique to the test."""
    return text.replace("NAME", f"client-{uuid.uuid4().hex[:8]}")


@pytest_asyncio.fixture
async def client(
    tideflow: Tideflow, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TideflowClient]:
    """A client connected the way the CLI connects, acting as ``ana``."""
    monkeypatch.setenv("TIDEFLOW_USER", "ana")
    settings = WorkerSettings(home=tideflow.home, task_queue=tideflow.task_queue)
    yield await TideflowClient.connect(tideflow.address, settings=settings)


async def _needs_attention(run: RunHandle, node: str) -> None:
    async def stuck() -> list[str]:
        try:
            return (await run.state(timeout=5)).needs_attention
        except Exception:
            return []

    await eventually(stuck, lambda nodes: node in nodes, f"{node} needing attention")


def test_acting_user_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEFLOW_USER", " ana ")
    assert acting_user() == "ana"
    assert default_identity() == f"ana@{socket.gethostname()}"
    monkeypatch.delenv("TIDEFLOW_USER")
    assert acting_user()  # the OS user, never empty


async def test_the_identity_reaches_the_server(client: TideflowClient, tideflow: Tideflow) -> None:
    assert client.identity == f"ana@{socket.gethostname()}"
    assert client.user == "ana"
    run = await client.start(tideflow.load(named(STUCK)))
    await _needs_attention(run, "charge")
    await run.pause()
    await run.resume()
    answer = await run.fail("charge", "card expired")
    assert answer.status == "failed"
    report = await run.report()
    assert report.status == "failed"
    # `by` is the client's user when the call names nobody.
    assert (report.error or "").endswith("(ana): card expired")

    history = await run.temporal.fetch_history()
    signalled = [
        event.workflow_execution_signaled_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert [s.signal_name for s in signalled] == ["pause", "resume"]
    assert {s.identity for s in signalled} == {client.identity}
    updates = [
        event.workflow_execution_update_accepted_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert [u.accepted_request.meta.identity for u in updates] == [client.identity]


async def test_cancel_of_an_ended_run_says_so(client: TideflowClient, tideflow: Tideflow) -> None:
    run = await client.start(tideflow.load(named(QUICK)))
    assert (await run.report()).status == "completed"
    with pytest.raises(ControlError) as raised:
        await run.cancel()
    assert str(raised.value) == f"run {run.id} has already ended (completed)"
    # Signals and updates answer the same way, with no redrive hint for a completed run.
    for action in (run.pause(), run.retry("only"), run.set_vars({"x": 1})):
        with pytest.raises(ControlError) as raised:
            await action
        assert str(raised.value) == f"run {run.id} has already ended (completed)"


async def test_retry_skip_fail_on_a_failed_run_hint_at_redrive(
    client: TideflowClient, tideflow: Tideflow
) -> None:
    run = await client.start(tideflow.load(named(STUCK)))
    await _needs_attention(run, "charge")
    await run.fail("charge")
    assert (await run.report()).status == "failed"
    assert await run.ended() == "failed"
    hint = (
        f"run {run.id} has ended (failed): use `tideflow redrive {run.id}` to run it again "
        "from its last checkpoint"
    )
    for action in (run.retry("charge"), run.skip("charge", {"paid": False}), run.fail("charge")):
        with pytest.raises(ControlError) as raised:
            await action
        assert str(raised.value) == hint
    # A handle got by id, as the CLI and the API get them, answers the same.
    with pytest.raises(ControlError, match="tideflow redrive"):
        await client.get_run(run.id).retry("charge")
    with pytest.raises(ControlError, match=r"has already ended \(failed\)$"):
        await client.get_run(run.id).cancel()


async def test_a_refused_update_names_the_reason(
    client: TideflowClient, tideflow: Tideflow
) -> None:
    run = await client.start(tideflow.load(named(STUCK)))
    await _needs_attention(run, "charge")
    with pytest.raises(ControlError, match=r"^refused: .*book"):
        await run.retry("book")
    assert await run.ended() is None
    await run.cancel()
    assert (await run.report()).status == "cancelled"
    assert await run.ended() == "cancelled"
