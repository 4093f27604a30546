"""The notify family against real local servers: an HTTP receiver and an aiosmtpd SMTP server."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import WorkerSettings, registry
from activities.settings import SMTPSettings
from tests.nodes import run_node
from tests.servers.smtp import SMTP_PASSWORD, SMTP_USER, SMTPServer
from tests.servers.webhook import WebhookServer


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fails(node_type: str, config: dict[str, Any], **kwargs: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run_node(node_type, config, **kwargs)
    return caught.value


# --------------------------------------------------------------------------------------------
# notify.webhook


def test_notification_alias_is_the_webhook() -> None:
    assert registry.canonical("notification") == "notify.webhook"


async def test_webhook_delivers_exact_json_with_secret_header(
    webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDEFLOW_SECRET_HOOK_TOKEN", "tok-123")
    payload = {"event": "invoice.processed", "total": 1234.5, "lines": [1, "two", None]}
    webhook_server.respond("/hooks/invoices", json={"received": True})

    result = await run_node(
        "notification",
        {
            "url": webhook_server.url("/hooks/invoices"),
            "payload": payload,
            "headers": {"Authorization": "Bearer ${{ secrets.HOOK_TOKEN }}"},
        },
    )

    assert result.output == {"status_code": 200, "response": {"received": True}}
    [request] = webhook_server.requests
    assert request.method == "POST"
    assert request.path == "/hooks/invoices"
    assert request.json() == payload
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer tok-123"


async def test_webhook_json_field_method_and_text_answer(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/put", status=202, text="queued")

    result = await run_node(
        "notify.webhook",
        {"url": webhook_server.url("/put"), "json": ["a", 1], "method": "put"},
    )

    assert result.output == {"status_code": 202, "response": "queued"}
    assert webhook_server.requests[0].method == "PUT"
    assert webhook_server.requests[0].json() == ["a", 1]


async def test_webhook_without_payload_sends_no_body_and_null_payload_sends_null(
    webhook_server: WebhookServer,
) -> None:
    await run_node("notify.webhook", {"url": webhook_server.url("/empty")})
    await run_node("notify.webhook", {"url": webhook_server.url("/null"), "payload": None})

    assert webhook_server.requests_to("/empty")[0].body == b""
    null = webhook_server.requests_to("/null")[0]
    assert null.body == b"null" and null.headers["content-type"] == "application/json"


async def test_webhook_payload_and_json_together_is_a_config_error() -> None:
    error = await _fails("notify.webhook", {"url": "http://127.0.0.1:1/", "payload": 1, "json": 2})
    assert error.non_retryable
    assert "either payload or json" in error.message


async def test_webhook_503_is_retryable(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/hook", status=503, text="down for maintenance")

    error = await _fails("notify.webhook", {"url": webhook_server.url("/hook"), "payload": {}})

    assert not error.non_retryable
    assert "503" in error.message and "down for maintenance" in error.message
    assert f"127.0.0.1:{webhook_server.port}/hook" in error.message


async def test_webhook_400_is_permanent(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/hook", status=400, json={"error": "missing field 'id'"})

    error = await _fails("notify.webhook", {"url": webhook_server.url("/hook"), "payload": {}})

    assert error.non_retryable
    assert "400" in error.message and "missing field 'id'" in error.message


async def test_webhook_429_is_retryable(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/hook", status=429)
    error = await _fails("notify.webhook", {"url": webhook_server.url("/hook"), "payload": {}})
    assert not error.non_retryable


async def test_webhook_expect_status(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/hook", status=200)
    error = await _fails(
        "notify.webhook",
        {"url": webhook_server.url("/hook"), "payload": {}, "expect_status": [201]},
    )
    assert error.non_retryable and "answered 200" in error.message

    webhook_server.respond("/hook", status=201, text="")
    result = await run_node(
        "notify.webhook",
        {"url": webhook_server.url("/hook"), "payload": {}, "expect_status": [201]},
    )
    assert result.output == {"status_code": 201, "response": None}


async def test_webhook_timeout_is_retryable(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/slow", delay=2.0)
    error = await _fails(
        "notify.webhook", {"url": webhook_server.url("/slow"), "payload": {}, "timeout": 0.2}
    )
    assert not error.non_retryable
    assert "timed out" in error.message


async def test_webhook_connection_refused_is_retryable() -> None:
    port = _closed_port()
    error = await _fails("notify.webhook", {"url": f"http://127.0.0.1:{port}/x", "payload": {}})
    assert not error.non_retryable
    assert f"127.0.0.1:{port}" in error.message


async def test_webhook_errors_do_not_print_the_token_in_the_url(
    webhook_server: WebhookServer,
) -> None:
    webhook_server.respond("/services/T000/B000/XXXXSECRET", status=404, text="no_service")
    error = await _fails(
        "notify.webhook",
        {"url": webhook_server.url("/services/T000/B000/XXXXSECRET?sig=abc"), "payload": {}},
    )
    assert error.non_retryable
    assert "XXXXSECRET" not in error.message and "abc" not in error.message
    assert "no_service" in error.message


# --------------------------------------------------------------------------------------------
# notify.slack


async def test_slack_posts_exact_json(webhook_server: WebhookServer) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Invoice* 42 stored"}}]

    result = await run_node(
        "notify.slack",
        {
            "webhook_url": webhook_server.url("/services/T1/B1/abc"),
            "text": "Invoice 42 stored",
            "blocks": blocks,
            "channel": "#finance",
            "username": "tideflow",
            "icon_emoji": ":robot_face:",
        },
    )

    assert result.output == {"status_code": 200}
    [request] = webhook_server.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "text": "Invoice 42 stored",
        "blocks": blocks,
        "channel": "#finance",
        "username": "tideflow",
        "icon_emoji": ":robot_face:",
    }


async def test_slack_defaults_to_the_worker_webhook(
    webhook_server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = WorkerSettings(slack_webhook_url=webhook_server.url("/services/default"))
    result = await run_node("notify.slack", {"text": "hello"}, settings=settings)
    assert result.output == {"status_code": 200}
    assert webhook_server.requests_to("/services/default")[0].json() == {"text": "hello"}

    # Then the worker's secret, when the settings name none.
    monkeypatch.setenv("TIDEFLOW_SECRET_SLACK_WEBHOOK_URL", webhook_server.url("/services/s"))
    await run_node("notify.slack", {"text": "from secret"}, settings=WorkerSettings())
    assert webhook_server.requests_to("/services/s")[0].json() == {"text": "from secret"}


async def test_slack_without_a_webhook_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDEFLOW_SECRET_SLACK_WEBHOOK_URL", raising=False)
    error = await _fails("notify.slack", {"text": "x"}, settings=WorkerSettings())
    assert error.non_retryable
    assert error.type == "NodeConfigError"
    assert "SLACK_WEBHOOK_URL" in error.message


async def test_slack_needs_text_or_blocks() -> None:
    error = await _fails("notify.slack", {"webhook_url": "https://hooks.slack.com/services/x"})
    assert error.non_retryable and "text or blocks" in error.message


@pytest.mark.parametrize(("status", "answer"), [(403, "invalid_token"), (404, "no_service")])
async def test_slack_refusals_are_permanent(
    webhook_server: WebhookServer, status: int, answer: str
) -> None:
    webhook_server.respond("/services/T/B/token", status=status, text=answer)
    error = await _fails(
        "notify.slack", {"webhook_url": webhook_server.url("/services/T/B/token"), "text": "x"}
    )
    assert error.non_retryable
    assert answer in error.message and str(status) in error.message
    assert "token" not in error.message.replace(answer, "")


async def test_slack_server_error_is_retryable(webhook_server: WebhookServer) -> None:
    webhook_server.respond("/services/T/B/C", status=500, text="rollup_error")
    error = await _fails(
        "notify.slack", {"webhook_url": webhook_server.url("/services/T/B/C"), "text": "x"}
    )
    assert not error.non_retryable and "rollup_error" in error.message


# --------------------------------------------------------------------------------------------
# notify.email


def _settings(smtp_server: SMTPServer, **smtp: Any) -> WorkerSettings:
    return WorkerSettings(smtp=SMTPSettings(**smtp_server.settings(**smtp)))


async def test_email_is_delivered_exactly(smtp_server: SMTPServer) -> None:
    smtp_server.reset()
    body = "Invoice 42 was stored.\nTotal: 1234.50 EUR\n"
    config = {
        "to": ["ap@example.com", "Finance Team <finance@example.com>"],
        "cc": "boss@example.com",
        "bcc": ["audit@example.com"],
        "subject": "Invoice 42 processed — ✓",
        "body": body,
        "html": "<p>Invoice <b>42</b> was stored.</p>",
        "sender": "Tideflow <robot@tideflow.test>",
        "reply_to": "help@tideflow.test",
    }

    result = await run_node("notify.email", config, settings=_settings(smtp_server))

    recipients = ["ap@example.com", "finance@example.com", "boss@example.com", "audit@example.com"]
    assert result.output["recipients"] == recipients
    [mail] = smtp_server.messages
    assert mail.mail_from == "robot@tideflow.test"
    assert mail.rcpt_tos == recipients
    assert mail.authenticated_as is None
    message = mail.message
    assert message["Subject"] == "Invoice 42 processed — ✓"
    assert message["From"] == "Tideflow <robot@tideflow.test>"
    assert message["To"] == "ap@example.com, Finance Team <finance@example.com>"
    assert message["Cc"] == "boss@example.com"
    assert message["Bcc"] is None
    assert message["Reply-To"] == "help@tideflow.test"
    assert message["Message-ID"] == result.output["message_id"]
    assert result.output["message_id"].endswith("@tideflow.test>")
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    # SMTP carries CRLF line ends; the text itself must be intact.
    assert plain.get_content().replace("\r\n", "\n") == body
    assert html.get_content().strip() == "<p>Invoice <b>42</b> was stored.</p>"


async def test_email_logs_in_and_uses_the_default_sender(smtp_server: SMTPServer) -> None:
    smtp_server.reset()
    settings = _settings(
        smtp_server, username=SMTP_USER, password=SMTP_PASSWORD, sender="ops@tideflow.test"
    )

    result = await run_node(
        "notify.email",
        {"to": "a@example.com, b@example.com", "subject": "Logged in", "body": "hi"},
        settings=settings,
    )

    assert result.output["recipients"] == ["a@example.com", "b@example.com"]
    [mail] = smtp_server.with_subject("Logged in")
    assert mail.authenticated_as == SMTP_USER
    assert mail.mail_from == "ops@tideflow.test"
    assert mail.message["From"] == "ops@tideflow.test"


async def test_email_wrong_password_is_permanent_and_names_server_and_user(
    smtp_server: SMTPServer,
) -> None:
    smtp_server.reset()
    settings = _settings(smtp_server, username=SMTP_USER, password="wrong")

    error = await _fails(
        "notify.email", {"to": "a@example.com", "subject": "s", "body": "b"}, settings=settings
    )

    assert error.non_retryable
    assert f"SMTP server 127.0.0.1:{smtp_server.port}" in error.message
    assert f"refused the login of user {SMTP_USER!r}" in error.message
    assert "535" in error.message
    assert "wrong" not in error.message
    assert smtp_server.messages == []


async def test_email_connection_refused_is_retryable() -> None:
    port = _closed_port()
    settings = WorkerSettings(smtp=SMTPSettings(host="127.0.0.1", port=port))

    error = await _fails(
        "notify.email", {"to": "a@example.com", "subject": "s", "body": "b"}, settings=settings
    )

    assert not error.non_retryable
    assert f"could not connect to SMTP server 127.0.0.1:{port}" in error.message


async def test_email_refused_recipient_is_permanent(smtp_server: SMTPServer) -> None:
    smtp_server.reset()
    smtp_server.reject.add("ghost@example.com")

    error = await _fails(
        "notify.email",
        {"to": "ghost@example.com", "subject": "s", "body": "b"},
        settings=_settings(smtp_server),
    )

    assert error.non_retryable
    assert "ghost@example.com: 550" in error.message
    assert smtp_server.messages == []


async def test_email_partly_refused_recipients_fail_without_retry(
    smtp_server: SMTPServer,
) -> None:
    smtp_server.reset()
    smtp_server.reject.add("ghost@example.com")

    error = await _fails(
        "notify.email",
        {"to": ["ghost@example.com", "real@example.com"], "subject": "partly", "body": "b"},
        settings=_settings(smtp_server),
    )

    # real@ got it: retrying would send it twice.
    assert error.non_retryable
    assert "ghost@example.com: 550" in error.message and "sent to real@example.com" in error.message
    assert [m.rcpt_tos for m in smtp_server.with_subject("partly")] == [["real@example.com"]]


async def test_email_temporarily_refused_recipient_is_retryable(smtp_server: SMTPServer) -> None:
    smtp_server.reset()
    smtp_server.defer.add("busy@example.com")

    error = await _fails(
        "notify.email",
        {"to": "busy@example.com", "subject": "s", "body": "b"},
        settings=_settings(smtp_server),
    )

    assert not error.non_retryable
    assert "busy@example.com: 450" in error.message


async def test_email_bad_address_is_a_config_error(smtp_server: SMTPServer) -> None:
    error = await _fails(
        "notify.email",
        {"to": ["not an address"], "subject": "s", "body": "b"},
        settings=_settings(smtp_server),
    )
    assert error.non_retryable and error.type == "NodeConfigError"
    assert "to:" in error.message and "not an email address" in error.message


async def test_email_subject_cannot_inject_headers(smtp_server: SMTPServer) -> None:
    error = await _fails(
        "notify.email",
        {"to": "a@example.com", "subject": "hi\r\nBcc: victim@example.com", "body": "b"},
        settings=_settings(smtp_server),
    )
    assert error.non_retryable and error.type == "NodeConfigError"
