"""The ``http.request`` node type against a real HTTP server on loopback."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from tests.nodes import run_node
from tests.servers.webhook import WebhookServer


async def test_get_with_params_and_headers_returns_json(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/items", json={"items": [1, 2]})
    result = await run_node(
        "http.request",
        {"url": webhook_server.url("/items"), "params": {"q": "x"}, "headers": {"X-Key": "k"}},
    )
    assert result.output["status_code"] == 200
    assert result.output["json"] == {"items": [1, 2]}
    (request,) = webhook_server.requests_to("/items")
    assert (request.method, request.query, request.headers["x-key"]) == ("GET", {"q": ["x"]}, "k")


async def test_post_json_through_an_alias(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/hook", status=201, text="created")
    result = await run_node(
        "api", {"method": "post", "url": webhook_server.url("/hook"), "json": {"a": 1}}
    )
    assert (result.output["status_code"], result.output["text"]) == (201, "created")
    assert result.output["json"] is None
    assert webhook_server.requests_to("/hook")[0].json() == {"a": 1}


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (404, False)])
async def test_unexpected_status_is_retried_only_when_it_may_pass(
    webhook_server: WebhookServer, status: int, retryable: bool
) -> None:
    webhook_server.respond("/x", status=status, text="nope  \n  here")
    with pytest.raises(ApplicationError) as failure:
        await run_node("http", {"url": webhook_server.url("/x")}, node_id="call")
    assert failure.value.non_retryable is not retryable
    assert failure.value.message == (
        f"node 'call' (http.request): GET {webhook_server.url('/x')} answered {status}: nope here"
    )


async def test_expect_status_accepts_a_listed_status(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/gone", status=404, text="gone")
    result = await run_node(
        "http.request", {"url": webhook_server.url("/gone"), "expect_status": [404]}
    )
    assert result.output["status_code"] == 404


async def test_a_refused_connection_is_retryable() -> None:
    with pytest.raises(ApplicationError) as failure:
        await run_node("http.request", {"url": "http://127.0.0.1:9/nothing"})
    assert not failure.value.non_retryable
    assert "GET http://127.0.0.1:9/nothing failed" in failure.value.message


async def test_a_secret_header_is_read_on_the_worker(
    webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDEFLOW_SECRET_API_TOKEN", "s3cret")
    await run_node(
        "http.request",
        {
            "url": webhook_server.url("/secure"),
            "headers": {"Authorization": "Bearer ${{ secrets.API_TOKEN }}"},
        },
    )
    assert webhook_server.requests_to("/secure")[0].headers["authorization"] == "Bearer s3cret"


async def test_a_missing_secret_is_a_config_error(webhook_server: WebhookServer) -> None:
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "http.request",
            {"url": webhook_server.url("/"), "headers": {"X": "${{ secrets.NOT_SET_ANYWHERE }}"}},
        )
    assert failure.value.non_retryable
    assert "TIDEFLOW_SECRET_NOT_SET_ANYWHERE" in failure.value.message
