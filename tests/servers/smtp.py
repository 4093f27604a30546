"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives.

One server for the session. It offers AUTH PLAIN and LOGIN without TLS (loopback only) and
accepts only ``SMTP_USER`` / ``SMTP_PASSWORD``; logging in is optional, so a client without
credentials can send too. Recipients listed in ``reject`` get ``550`` (``450`` for those in
``defer``). The server is shared: call ``reset()`` first, or look messages up by a subject
unique to the test.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SMTP_USER = "tideflow"
SMTP_PASSWORD = "s3cret-pass"


@dataclass(frozen=True)
class ReceivedMail:
    """One message as delivered: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None


@dataclass
class SMTPServer:
    """The running server and what it received."""

    host: str
    port: int
    username: str = SMTP_USER
    password: str = SMTP_PASSWORD
    messages: list[ReceivedMail] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)
    """Recipients answered with a permanent 550."""
    defer: set[str] = field(default_factory=set)
    """Recipients answered with a temporary 450."""

    def reset(self) -> None:
        """Forget received messages and scripted refusals."""
        self.messages.clear()
        self.reject.clear()
        self.defer.clear()

    def with_subject(self, subject: str) -> list[ReceivedMail]:
        """The received messages with this subject."""
        return [m for m in self.messages if m.message["Subject"] == subject]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The ``smtp`` section of worker settings pointing at this server (no login)."""
        return {"host": self.host, "port": self.port, "timeout_seconds": 10.0, **overrides}


class _Handler:
    def __init__(self, state: SMTPServer) -> None:
        self.state = state

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.state.reject:
            return "550 5.1.1 no such mailbox"
        if address in self.state.defer:
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        login = session.auth_data if session.authenticated else None
        self.state.messages.append(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                authenticated_as=login.decode() if isinstance(login, bytes) else None,
            )
        )
        return "250 Message accepted for delivery"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPServer]:
    """A session-wide SMTP server on 127.0.0.1 with optional AUTH (PLAIN/LOGIN)."""
    state = SMTPServer(host="127.0.0.1", port=_free_port())
    controller = Controller(
        _Handler(state),
        hostname=state.host,
        port=state.port,
        authenticator=_authenticator,
        auth_required=False,
        auth_require_tls=False,  # plain-text AUTH is fine on loopback
    )
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
