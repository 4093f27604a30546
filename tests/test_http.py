"""The ``http.request`` node type against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import WorkerSettings
from tests.nodes import run_node as run_any_node
from tests.servers.webhook import WebhookServer

LOOPBACK = WorkerSettings(allow_private_networks=True)
"""The test servers listen on 127.0.0.1, a private address a default worker refuses."""


async def run_node(node_type: str, config: dict[str, Any], **options: Any) -> Any:
    """``tests.nodes.run_node`` on a worker that may reach loopback, unless told otherwise."""
    options.setdefault("settings", LOOPBACK)
    return await run_any_node(node_type, config, **options)


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


# --- what a node may reach ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("2130706433", "a loopback address"),
        ("[::ffff:127.0.0.1]", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("localhost", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("[fd12:3456::1]", "a private address"),
        ("100.64.0.1", "a private address"),
    ],
)
async def test_a_default_worker_refuses_loopback_and_private_addresses(
    webhook_server: WebhookServer, host: str, reason: str
) -> None:
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "http.request",
            {"url": f"http://{host}:{webhook_server.port}/x"},
            settings=WorkerSettings(),
            node_id="call",
        )
    assert failure.value.non_retryable
    assert failure.value.type == "BlockedAddressError"
    assert f"GET http://{host}:{webhook_server.port}/x: " in failure.value.message
    assert reason in failure.value.message
    assert "TIDEFLOW_ALLOW_PRIVATE_NETWORKS" in failure.value.message
    assert webhook_server.requests == []


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.1.1", "fd00:ec2::254", "fe80::1", "::ffff:169.254.169.254",
     "2002:a9fe:a9fe::1", "0.0.0.0", "224.0.0.1", "100.100.100.200"],
)  # fmt: skip
def test_link_local_metadata_and_non_unicast_addresses_are_never_allowed(address: str) -> None:
    from activities.egress import AddressPolicy

    why = AddressPolicy(allow_private=True).refusal(ipaddress.ip_address(address))
    assert why is not None and "loopback and private" not in why


def test_public_addresses_are_allowed_and_private_ones_only_when_configured() -> None:
    from activities.egress import AddressPolicy

    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None
    for address in ("127.0.0.1", "10.0.0.1", "::1", "::ffff:192.168.1.1"):
        assert AddressPolicy().refusal(ipaddress.ip_address(address)) is not None
        assert AddressPolicy(allow_private=True).refusal(ipaddress.ip_address(address)) is None


async def test_every_address_a_name_resolves_to_is_checked(
    webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with one public and one metadata address is refused, whichever comes first."""
    real = asyncio.AbstractEventLoop.getaddrinfo

    async def fake(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "mixed.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
            ]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake)
    with pytest.raises(ApplicationError) as failure:
        await run_node("http.request", {"url": "http://mixed.test/"})
    assert "mixed.test (169.254.169.254) is a cloud metadata address" in failure.value.message


async def test_the_connection_goes_to_the_checked_address(
    webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the check; the socket opens to that address while the
    request keeps the name (no second lookup a rebinding DNS server could answer)."""
    lookups: list[str] = []
    real = asyncio.AbstractEventLoop.getaddrinfo

    async def fake(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        if host == "service.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake)
    webhook_server.respond("/named", json={"ok": True})
    result = await run_node(
        "http.request", {"url": f"http://service.test:{webhook_server.port}/named"}
    )
    assert result.output["json"] == {"ok": True}
    assert webhook_server.requests_to("/named")[0].headers["host"] == (
        f"service.test:{webhook_server.port}"
    )
    assert lookups == ["service.test"]


async def test_redirects_are_not_followed(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/old", status=302, headers={"Location": "http://169.254.169.254/"})
    result = await run_node(
        "http.request", {"url": webhook_server.url("/old"), "expect_status": [302]}
    )
    assert result.output["status_code"] == 302
    assert result.output["headers"]["location"] == "http://169.254.169.254/"


# --- size of the answer ------------------------------------------------------------------------


async def test_a_body_over_the_download_cap_fails_the_node(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/big", body=b"a" * 300_000)
    settings = WorkerSettings(allow_private_networks=True, max_download_mb=0.25)
    with pytest.raises(ApplicationError) as failure:
        await run_node("http.request", {"url": webhook_server.url("/big")}, settings=settings)
    assert failure.value.non_retryable
    assert failure.value.type == "TooLargeError"
    assert failure.value.message == (
        f"node 'node' (http.request): GET {webhook_server.url('/big')}: 0.286 MB, over the "
        "worker's download limit of 0.25 MB (setting max_download_mb (TIDEFLOW_MAX_DOWNLOAD_MB))"
    )
    webhook_server.respond("/fits", body=b"a" * 200_000)
    result = await run_node("http.request", {"url": webhook_server.url("/fits")}, settings=settings)
    assert len(result.output["text"]) == 200_000


# --- secrets in what the node leaves behind ----------------------------------------------------


async def test_secret_values_are_redacted_from_errors_and_outputs(
    webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pa ss/wörd&1"  # needs percent-encoding in a URL
    monkeypatch.setenv("TIDEFLOW_SECRET_API_TOKEN", secret)
    webhook_server.respond("/k", status=400, json={"detail": f"bad key {secret}"})
    with pytest.raises(ApplicationError) as failure:
        await run_node(
            "http.request",
            {"url": webhook_server.url("/k"), "params": {"key": "${{ secrets.API_TOKEN }}"}},
        )
    assert webhook_server.requests_to("/k")[0].query == {"key": [secret]}
    message = failure.value.message
    assert secret not in message and "pa%20ss" not in message and "pa+ss" not in message
    assert "bad key [secret API_TOKEN]" in message
    assert failure.value.__cause__ is None  # no unredacted cause chain into history

    webhook_server.respond("/echo", json={"token": secret, secret: 1})
    result = await run_node(
        "http.request",
        {"url": webhook_server.url("/echo"), "params": {"key": "${{ secrets.API_TOKEN }}"}},
    )
    assert result.output["json"] == {"token": "[secret API_TOKEN]", "[secret API_TOKEN]": 1}
    assert secret not in result.output["text"]


def test_the_redactor_catches_encoded_forms() -> None:
    from activities._secrets import Redactor

    redactor = Redactor({'k"ey/é 1': "KEY", "other": "OTHER"})
    for form in ['k"ey/é 1', "k%22ey%2F%C3%A9%201", "k%22ey/%C3%A9%201", "k%22ey%2F%C3%A9+1",
                 'k\\"ey/\\u00e9 1']:  # fmt: skip
        assert redactor.text(f"<{form}>") == "<[secret KEY]>", form
    assert redactor.value({"a": ["other", 1, None]}) == {"a": ["[secret OTHER]", 1, None]}
    assert not Redactor({})
