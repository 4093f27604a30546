"""The notify family: ``notify.webhook`` (alias ``notification``), ``notify.email`` and
``notify.slack``, and ``notify.lifecycle``, which the workflow starts to tell a definition's
``notifications:`` channels what happened to a run.

Credentials never need to sit in a definition: write ``${{ secrets.NAME }}`` in any config
value (a webhook URL, an ``Authorization`` header) and the worker replaces it with its
environment variable ``TIDEFLOW_SECRET_NAME`` just before the node runs, so the secret stays out
of Temporal's history. The SMTP server and the default Slack webhook are worker settings
(``TIDEFLOW_SMTP_*``, ``SLACK_WEBHOOK_URL``), not node config.
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio import activity

from activities._context import NodeContext
from activities._registry import node_type
from activities._secrets import SECRET_PREFIX
from activities.errors import NodeConfigError, PermanentNodeError, RetryableNodeError
from activities.settings import SMTPSettings

# Statuses a later attempt may not see again; every other unexpected status is permanent.
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

# The secret the Slack node falls back to when neither the config nor the worker settings name a
# webhook: the same variable a `${{ secrets.SLACK_WEBHOOK_URL }}` reference reads.
_SLACK_SECRET = "SLACK_WEBHOOK_URL"


# --------------------------------------------------------------------------------------------
# HTTP: webhook and Slack


def _redact(url: str) -> str:
    """The URL to print in errors: scheme, host and the first path segment only.

    Webhook URLs usually carry their token in the path or query (Slack, Teams, Discord, Zapier),
    and error messages end up in Temporal's history and the run report.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if segments else ""
    if len(segments) > 1 or parts.query:
        path += "/…"
    return f"{parts.scheme}://{host}{path}"


def _check_url(url: str, name: str = "url") -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{name} must start with http:// or https://")
    return url


async def _http_client(ctx: NodeContext) -> httpx.AsyncClient:
    # One pooled client per worker for the family; its own key so another family's client
    # options (redirects, limits) never change how notifications are sent.
    return await ctx.resources.get("notify.http_client", httpx.AsyncClient, close=_close_client)


async def _close_client(client: httpx.AsyncClient) -> None:
    await client.aclose()


async def _send(
    ctx: NodeContext,
    *,
    target: str,
    method: str,
    url: str,
    json_body: Any,
    send_body: bool,
    headers: dict[str, str],
    timeout: float,
) -> httpx.Response:
    """Send one request; transport failures are retryable."""
    client = await _http_client(ctx)
    content: bytes | None = None
    if send_body and json_body is None:
        # httpx reads json=None as "no body"; an explicit null payload is sent as JSON null.
        content, headers = b"null", {"Content-Type": "application/json", **headers}
    try:
        return await client.request(
            method,
            url,
            headers=headers,
            json=json_body if send_body and json_body is not None else None,
            content=content,
            timeout=timeout,
        )
    except httpx.TimeoutException as e:
        raise RetryableNodeError(f"{target} timed out after {timeout:g} s: {e!r}") from e
    except httpx.HTTPError as e:
        raise RetryableNodeError(f"{target} could not be reached: {e}") from e


def _status_error(target: str, response: httpx.Response) -> PermanentNodeError | RetryableNodeError:
    """The error of an unexpected answer: 408/425/429/5xx retryable, the rest permanent."""
    text = response.text.strip()[:500]
    message = f"{target} answered {response.status_code}" + (f": {text}" if text else "")
    if response.status_code in _RETRYABLE_STATUS:
        return RetryableNodeError(message)
    return PermanentNodeError(message)


def _response_body(response: httpx.Response) -> Any:
    """The answer as JSON when it is JSON, else its text; None when empty."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


class WebhookConfig(BaseModel):
    """Config of ``notify.webhook``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str = Field(description="http(s) URL; may hold `${{ secrets.NAME }}`")
    payload: Any = Field(default=None, description="The JSON body to send.")
    json_body: Any = Field(default=None, alias="json", description="Same as `payload`.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers, e.g. Authorization."
    )
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout: float = Field(default=30.0, gt=0, description="Seconds.")
    expect_status: list[int] | None = Field(
        default=None, description="Statuses that count as delivered; default any 2xx."
    )

    @model_validator(mode="before")
    @classmethod
    def _upper_method(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            data = {**data, "method": data["method"].upper()}
        return data

    @model_validator(mode="after")
    def _check(self) -> WebhookConfig:
        _check_url(self.url)
        if {"payload", "json_body"} <= self.model_fields_set:
            raise ValueError("give either payload or json, not both")
        return self

    def body_to_send(self) -> tuple[bool, Any]:
        """Whether a body was given, and the body."""
        if "json_body" in self.model_fields_set:
            return True, self.json_body
        return "payload" in self.model_fields_set, self.payload


@node_type("notify.webhook", WebhookConfig)
async def notify_webhook(config: WebhookConfig, ctx: NodeContext) -> dict[str, Any]:
    """POST a JSON payload to a webhook → ``{status_code, response}``.

    ``response`` is the answer's JSON, or its text, or None when empty. 408/425/429/5xx answers,
    timeouts and unreachable hosts are retried; other unexpected statuses fail the node for
    good. Put tokens in ``${{ secrets.NAME }}``; errors print the URL without its path or query.
    """
    target = f"webhook {config.method} {_redact(config.url)}"
    send_body, body = config.body_to_send()
    response = await _send(
        ctx,
        target=target,
        method=config.method,
        url=config.url,
        json_body=body,
        send_body=send_body,
        headers=config.headers,
        timeout=config.timeout,
    )
    ok = (
        response.status_code in config.expect_status
        if config.expect_status is not None
        else 200 <= response.status_code < 300
    )
    if not ok:
        raise _status_error(target, response)
    return {"status_code": response.status_code, "response": _response_body(response)}


class SlackConfig(BaseModel):
    """Config of ``notify.slack`` (a Slack incoming webhook)."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(
        default=None,
        description=(
            "The incoming-webhook URL; default the worker's SLACK_WEBHOOK_URL, then its secret "
            "TIDEFLOW_SECRET_SLACK_WEBHOOK_URL. Use `${{ secrets.NAME }}`, never the URL itself."
        ),
    )
    text: str | None = Field(
        default=None, description="The message (mrkdwn); the notification text when blocks."
    )
    blocks: list[dict[str, Any]] | None = Field(default=None, description="Block Kit blocks.")
    channel: str | None = Field(
        default=None, description="Override the channel (legacy webhooks only)."
    )
    username: str | None = None
    icon_emoji: str | None = Field(default=None, description="e.g. `:robot_face:`")
    timeout: float = Field(default=30.0, gt=0, description="Seconds.")

    @model_validator(mode="after")
    def _check(self) -> SlackConfig:
        if self.webhook_url is not None:
            _check_url(self.webhook_url)
        if not self.text and not self.blocks:
            raise ValueError("give text or blocks")
        return self


def _slack_url(config: SlackConfig, ctx: NodeContext) -> str:
    url = (
        config.webhook_url
        or ctx.settings.slack_webhook_url
        or os.environ.get(SECRET_PREFIX + _SLACK_SECRET)
    )
    if not url:
        raise NodeConfigError(
            "no Slack webhook: set webhook_url (e.g. ${{ secrets.SLACK_WEBHOOK_URL }}), or "
            f"SLACK_WEBHOOK_URL or {SECRET_PREFIX}{_SLACK_SECRET} on the worker"
        )
    try:
        return _check_url(url)
    except ValueError as e:
        raise NodeConfigError(f"Slack webhook: {e}") from None


@node_type("notify.slack", SlackConfig)
async def notify_slack(config: SlackConfig, ctx: NodeContext) -> dict[str, Any]:
    """Post a message to a Slack incoming webhook → ``{status_code}``.

    Sends ``{text, blocks, channel, username, icon_emoji}`` (the fields given) as JSON.
    Slack's 4xx answers (``invalid_token``, ``no_service``, ``channel_not_found``,
    ``invalid_payload``...) fail the node for good; 429, 5xx and timeouts are retried.
    """
    url = _slack_url(config, ctx)
    message = config.model_dump(
        include={"text", "blocks", "channel", "username", "icon_emoji"}, exclude_none=True
    )
    target = f"Slack webhook {_redact(url)}"
    response = await _send(
        ctx,
        target=target,
        method="POST",
        url=url,
        json_body=message,
        send_body=True,
        headers={},
        timeout=config.timeout,
    )
    if not 200 <= response.status_code < 300:
        raise _status_error(target, response)
    return {"status_code": response.status_code}


# --------------------------------------------------------------------------------------------
# Email over SMTP


Addresses = str | list[str]


class EmailConfig(BaseModel):
    """Config of ``notify.email``; the server comes from the worker's ``smtp`` settings."""

    model_config = ConfigDict(extra="forbid")

    to: Addresses = Field(description='One address, a list, or "a@x.org, Name <b@y.org>".')
    cc: Addresses | None = None
    bcc: Addresses | None = Field(default=None, description="Receive it without being listed.")
    subject: str
    body: str = Field(default="", description="The plain-text body.")
    html: str | None = Field(default=None, description="An HTML alternative of the body.")
    sender: str | None = Field(default=None, description="From; default the worker's smtp.sender.")
    reply_to: Addresses | None = None


def _addresses(value: Addresses | None, field: str) -> list[Address]:
    """Parse one field's addresses; anything that is not ``local@domain`` is a config error."""
    if value is None:
        return []
    raw = [value] if isinstance(value, str) else value
    parsed: list[Address] = []
    for name, addr in getaddresses(raw):
        local, at, domain = addr.rpartition("@")
        bad = NodeConfigError(f"{field}: {addr or raw!r} is not an email address")
        if not at or not local or not domain or any(c.isspace() for c in addr):
            raise bad
        try:
            parsed.append(Address(display_name=name, addr_spec=addr))
        except (ValueError, IndexError) as e:
            raise bad from e
    return parsed


def _build_message(
    config: EmailConfig, settings: SMTPSettings
) -> tuple[EmailMessage, str, list[str]]:
    """The message, the envelope sender and every envelope recipient (to, cc and bcc)."""
    sender = _addresses(config.sender or settings.sender, "sender")
    if len(sender) != 1:
        raise NodeConfigError("sender: give exactly one address")
    to = _addresses(config.to, "to")
    cc = _addresses(config.cc, "cc")
    bcc = _addresses(config.bcc, "bcc")
    if not to and not cc and not bcc:
        raise NodeConfigError("to: give at least one recipient")
    reply_to = _addresses(config.reply_to, "reply_to")
    message = EmailMessage()
    try:
        message["From"] = sender[0]
        if to:
            message["To"] = to
        if cc:
            message["Cc"] = cc
        if reply_to:
            message["Reply-To"] = reply_to
        # The policy refuses line breaks in headers, so a subject cannot inject headers.
        message["Subject"] = config.subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=sender[0].domain or None)
        message.set_content(config.body)
        if config.html is not None:
            message.add_alternative(config.html, subtype="html")
    except ValueError as e:
        raise NodeConfigError(f"cannot build the message: {e}") from e
    recipients = list(dict.fromkeys(a.addr_spec for a in (*to, *cc, *bcc)))
    return message, sender[0].addr_spec, recipients


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{error.smtp_code} {text}".strip()


def _by_code(code: int, message: str) -> RetryableNodeError | PermanentNodeError:
    """SMTP's own rule: 4xx replies are temporary, 5xx permanent."""
    if 400 <= code < 500:
        return RetryableNodeError(message)
    return PermanentNodeError(message)


def _deliver(
    settings: SMTPSettings, message: EmailMessage, sender: str, recipients: list[str]
) -> None:
    """Connect, log in and send; every failure becomes a NodeError naming the server."""
    server = f"SMTP server {settings.host}:{settings.port}"
    tls = ssl.create_default_context()
    smtp: smtplib.SMTP
    try:
        if settings.ssl:
            smtp = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_seconds, context=tls
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
    except smtplib.SMTPConnectError as e:
        raise _by_code(e.smtp_code, f"{server} refused the connection: {_reply(e)}") from e
    except ssl.SSLError as e:
        raise PermanentNodeError(f"TLS with {server} failed: {e}") from e
    except TimeoutError as e:
        raise RetryableNodeError(f"{server} timed out while connecting") from e
    except OSError as e:
        raise RetryableNodeError(f"could not connect to {server}: {e}") from e
    try:
        if settings.starttls and not settings.ssl:
            smtp.starttls(context=tls)
        if settings.username:
            try:
                smtp.login(settings.username, settings.password or "")
            except smtplib.SMTPAuthenticationError as e:
                raise PermanentNodeError(
                    f"{server} refused the login of user {settings.username!r}: {_reply(e)}"
                ) from e
        refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPNotSupportedError as e:
        raise PermanentNodeError(f"{server} does not support it: {e}") from e
    except smtplib.SMTPRecipientsRefused as e:
        # Every recipient refused: nothing was sent, so a retry is safe when all were 4xx.
        detail = "; ".join(f"{addr}: {_code_text(r)}" for addr, r in e.recipients.items())
        codes = [r[0] for r in e.recipients.values()]
        error = f"{server} refused every recipient: {detail}"
        if all(400 <= c < 500 for c in codes):
            raise RetryableNodeError(error) from e
        raise PermanentNodeError(error) from e
    except smtplib.SMTPSenderRefused as e:
        raise _by_code(e.smtp_code, f"{server} refused the sender {sender}: {_reply(e)}") from e
    except smtplib.SMTPResponseException as e:
        raise _by_code(e.smtp_code, f"{server} answered {_reply(e)}") from e
    except smtplib.SMTPServerDisconnected as e:
        raise RetryableNodeError(f"{server} closed the connection: {e}") from e
    except smtplib.SMTPException as e:
        # No shared AUTH mechanism, STARTTLS refused...: configuration, not chance.
        raise PermanentNodeError(f"{server}: {e}") from e
    except ssl.SSLError as e:
        raise PermanentNodeError(f"TLS with {server} failed: {e}") from e
    except TimeoutError as e:
        raise RetryableNodeError(f"{server} timed out") from e
    except OSError as e:
        raise RetryableNodeError(f"{server}: {e}") from e
    finally:
        _quit(smtp)
    if refused:
        # Some recipients got it: a retry would send it twice to them, so this is final.
        detail = "; ".join(f"{addr}: {_code_text(r)}" for addr, r in refused.items())
        accepted = [r for r in recipients if r not in refused]
        raise PermanentNodeError(
            f"{server} refused some recipients ({detail}); sent to {', '.join(accepted)}"
        )


def _code_text(reply: tuple[int, bytes | str]) -> str:
    code, text = reply
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}"


def _quit(smtp: smtplib.SMTP) -> None:
    # The message is already accepted when QUIT runs: a failing QUIT must not fail (and so
    # retry, and so duplicate) the node.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


@node_type("notify.email", EmailConfig)
def notify_email(config: EmailConfig, ctx: NodeContext) -> dict[str, Any]:
    """Send an email through the worker's SMTP server → ``{message_id, recipients}``.

    The server, login and default sender are worker settings (``smtp``: host, port, username,
    password, starttls, ssl, sender; env ``TIDEFLOW_SMTP_*``). ``recipients`` lists every
    envelope recipient (to, cc and bcc). A refused login or recipient fails the node for good;
    an unreachable server, a timeout or a 4xx (temporary) reply is retried.
    """
    settings = ctx.settings.smtp
    message, sender, recipients = _build_message(config, settings)
    _deliver(settings, message, sender, recipients)
    return {"message_id": message["Message-ID"], "recipients": recipients}


# --------------------------------------------------------------------------------------------
# Run lifecycle events (`notifications:` of a definition)


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WebhookChannel(_Channel):
    """A ``notifications:`` webhook: the event is POSTed as JSON (with the message and links)."""

    url: str = Field(description="http(s) URL; may hold `${{ secrets.NAME }}`")
    headers: dict[str, str] = Field(default_factory=dict)
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout: float = Field(default=30.0, gt=0, description="Seconds.")
    expect_status: list[int] | None = None

    @model_validator(mode="after")
    def _check(self) -> WebhookChannel:
        if "${{" not in self.url:
            _check_url(self.url)
        return self


class EmailChannel(_Channel):
    """A ``notifications:`` email, sent through the worker's SMTP server."""

    to: Addresses
    cc: Addresses | None = None
    bcc: Addresses | None = None
    subject: str | None = Field(
        default=None,
        description="Default: `Tideflow: <definition> <version> run <id> <what happened>`; "
        "may use $definition, $version, $workflow_id, $event and $status.",
    )
    sender: str | None = None
    reply_to: Addresses | None = None


class SlackChannel(_Channel):
    """A ``notifications:`` Slack message (an incoming webhook)."""

    webhook_url: str | None = None
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SlackChannel:
        if self.webhook_url is not None and "${{" not in self.webhook_url:
            _check_url(self.webhook_url, "webhook_url")
        return self


class _WebhookTarget(_Channel):
    type: Literal["notify.webhook", "webhook"]
    config: WebhookChannel


class _EmailTarget(_Channel):
    type: Literal["notify.email", "email"]
    config: EmailChannel


class _SlackTarget(_Channel):
    type: Literal["notify.slack", "slack"]
    config: SlackChannel


class LifecycleEvent(BaseModel):
    """What happened to a run (built by the workflow)."""

    model_config = ConfigDict(extra="allow")

    workflow_id: str
    run_id: str = ""
    definition: str = ""
    version: str = ""
    slug: str = ""
    event: str
    status: str = ""
    error: str | None = None
    nodes: list[str] | None = None


class LifecycleConfig(BaseModel):
    """Config of ``notify.lifecycle``: the channel (a definition's ``notifications:`` entry)
    and the event; the workflow starts it, definitions do not name it."""

    model_config = ConfigDict(extra="forbid")

    channel: Annotated[_WebhookTarget | _EmailTarget | _SlackTarget, Field(discriminator="type")]
    event: LifecycleEvent | None = None
    """None only when a definition's channel is checked at load time."""


_HAPPENED = {
    "started": "started",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "was cancelled",
    "needs_attention": "needs attention",
    "budget": "was stopped by its budget",
}


@dataclass(frozen=True)
class _Message:
    subject: str
    lines: list[str]
    links: dict[str, str]


def _message(event: LifecycleEvent, ctx: NodeContext) -> _Message:
    what = _HAPPENED.get(event.event, event.event)
    name = " ".join(p for p in (event.definition, event.version) if p) or "a workflow"
    subject = f"Tideflow: {name} run {event.workflow_id} {what}"
    lines = [f"Run {event.workflow_id} of {name} {what}."]
    if event.status:
        lines.append(f"Status: {event.status}")
    if event.error:
        lines.append(f"Error: {event.error}")
    if event.nodes:
        lines.append(f"Nodes: {', '.join(event.nodes)}")
    links = run_links(ctx, event.workflow_id, event.run_id)
    if "run_page" in links:
        lines.append(f"Run page: {links['run_page']}")
    lines.append(f"Temporal Web UI: {links['web_ui']}")
    return _Message(subject, lines, links)


def run_links(ctx: NodeContext, workflow_id: str, run_id: str) -> dict[str, str]:
    """Links to a run: the Temporal Web UI's page (``ui_url``, else the embedded server's UI when
    it runs from the worker's data folder, else localhost:8233) and, when the worker knows the
    HTTP API's address (``api_url``), Tideflow's run page."""
    settings = ctx.settings
    namespace = _namespace()
    base = (settings.ui_url or _embedded_ui(settings.home) or "http://localhost:8233").rstrip("/")
    tail = f"/{quote(run_id, safe='')}" if run_id else ""
    links = {
        "web_ui": f"{base}/namespaces/{quote(namespace, safe='')}/workflows/"
        f"{quote(workflow_id, safe='')}{tail}/history"
    }
    if settings.api_url:
        links["run_page"] = f"{settings.api_url.rstrip('/')}/ui/runs/{quote(workflow_id, safe='')}"
    return links


def _embedded_ui(home: Path) -> str | None:
    """The Web UI address ``tideflow server``/``dev`` wrote to ``<home>/server.json``, if that
    server is alive."""
    try:
        info = json.loads((home / "server.json").read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["ui_url"]) if info.get("ui_url") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _namespace() -> str:
    try:
        return activity.info().workflow_namespace or "default"
    except RuntimeError:  # called outside an activity (tests of the message)
        return os.environ.get("TEMPORAL_NAMESPACE", "default")


@node_type("notify.lifecycle", LifecycleConfig)
async def notify_lifecycle(config: LifecycleConfig, ctx: NodeContext) -> dict[str, Any]:
    """Tell a channel what happened to a run (a definition's ``notifications:``): a webhook
    gets the event as JSON with ``message`` and ``links``; an email and a Slack message say it
    in words, with the links to the run. Started by the workflow, not written in definitions.
    """
    event = config.event
    if event is None:
        raise NodeConfigError("notify.lifecycle needs the event")
    message = _message(event, ctx)
    target = config.channel
    if isinstance(target, _WebhookTarget):
        hook = target.config
        payload = {
            **event.model_dump(exclude_none=True),
            "message": message.lines[0],
            "links": message.links,
        }
        sent: dict[str, Any] = await notify_webhook(
            WebhookConfig(
                url=hook.url,
                payload=payload,
                headers=hook.headers,
                method=hook.method,
                timeout=hook.timeout,
                expect_status=hook.expect_status,
            ),
            ctx,
        )
        return sent
    if isinstance(target, _SlackTarget):
        slack = target.config
        text = "\n".join([f"*{message.subject}*", *message.lines[1:]])
        posted: dict[str, Any] = await notify_slack(
            SlackConfig(
                webhook_url=slack.webhook_url,
                text=text,
                channel=slack.channel,
                username=slack.username,
                icon_emoji=slack.icon_emoji,
                timeout=slack.timeout,
            ),
            ctx,
        )
        return posted
    mail = target.config
    subject = message.subject
    if mail.subject:
        fields = event.model_dump(exclude_none=True)
        subject = Template(mail.subject).safe_substitute(
            {k: str(v) for k, v in fields.items() if isinstance(v, str | int | float)}
        )
    email_config = EmailConfig(
        to=mail.to,
        cc=mail.cc,
        bcc=mail.bcc,
        subject=subject,
        body="\n".join(message.lines) + "\n",
        sender=mail.sender,
        reply_to=mail.reply_to,
    )
    mailed: dict[str, Any] = await asyncio.to_thread(notify_email, email_config, ctx)
    return mailed
