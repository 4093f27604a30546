"""A local HTTP endpoint that records every request and answers what a test scripts.

Stands in for webhooks, Slack incoming webhooks and any HTTP API a node calls::

    def test_x(webhook_server):
        webhook_server.respond("/hook", status=503)          # the next request to /hook
        webhook_server.respond("/hook", json={"ok": True})   # the one after
        url = webhook_server.url("/hook")
        ...
        assert webhook_server.requests[0].json() == {...}

Unscripted requests get ``default`` (200, body ``ok``). Each test gets a fresh server (one thread,
started in about a millisecond), so recordings never leak between tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.servers._quiet_http import QuietHTTPServer


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    """The path without the query string."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class ScriptedResponse:
    """What to answer: a status, a body (bytes, text, or JSON when ``json`` is set), headers,
    and an optional delay before answering (to make a client time out)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain"})
    delay: float = 0.0


class WebhookServer:
    """The recording server; ``requests`` lists what arrived, oldest first."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default = ScriptedResponse()
        self._scripts: dict[str, deque[ScriptedResponse]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._httpd = QuietHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll
            name="webhook-server",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def respond(
        self,
        path: str,
        status: int = 200,
        *,
        text: str | None = None,
        json: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue the answer to the next ``times`` requests to ``path`` (query ignored)."""
        response = _make_response(
            status, text=text, json_body=json, body=body, headers=headers, delay=delay
        )
        with self._lock:
            self._scripts[path].extend([response] * times)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self.requests.append(request)
            queue = self._scripts.get(request.path)
            return queue.popleft() if queue else self.default

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()


def _make_response(
    status: int,
    *,
    text: str | None,
    json_body: Any,
    body: bytes | None,
    headers: dict[str, str] | None,
    delay: float,
) -> ScriptedResponse:
    if json_body is not None:
        payload, content_type = json.dumps(json_body).encode(), "application/json"
    elif text is not None:
        payload, content_type = text.encode(), "text/plain; charset=utf-8"
    elif body is not None:
        payload, content_type = body, "application/octet-stream"
    else:
        payload, content_type = b"", "text/plain"
    return ScriptedResponse(
        status, payload, {"Content-Type": content_type, **(headers or {})}, delay
    )


def _handler_for(server: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            response = server._record(
                RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            if response.delay:
                time.sleep(response.delay)
            try:
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A fresh recording HTTP server on 127.0.0.1 for one test."""
    server = WebhookServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
