"""A small OpenAI-compatible HTTP server of our own, on loopback, for the AI family's tests.

It answers ``POST .../chat/completions`` with replies a test scripts in advance (a queue: JSON or
text content with usage numbers, or an HTTP error with an OpenAI-style error body) and keeps
every request it received, so a test can check the model, messages and ``response_format``
that were sent. ``GET .../models`` lists one model. Dependency-free: ``http.server`` in a thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.servers._quiet_http import QuietHTTPServer


@dataclass
class _Scripted:
    status: int
    body: dict[str, Any]
    delay_seconds: float = 0.0
    when: str | None = None
    """Serve this reply only to a request whose JSON holds this text (for parallel nodes)."""


@dataclass
class OpenAIStub:
    """The running stub: script replies with :meth:`reply` / :meth:`fail`, read ``requests``."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of the chat completion requests received, oldest first."""
    _queue: deque[_Scripted] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(
        self,
        content: str | None = None,
        *,
        json_content: Any = None,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        finish_reason: str = "stop",
        model: str | None = None,
        refusal: str | None = None,
        delay_seconds: float = 0.0,
        when: str | None = None,
        logprobs: list[tuple[str, float, dict[str, float]]] | None = None,
    ) -> None:
        """Queue a successful completion (``json_content`` is serialized as the content).

        ``logprobs``: the reply's tokens as ``(token, logprob, {alternative: logprob})``; they
        must spell the content.

        ``delay_seconds`` holds the answer back, to make the client time out. ``when`` keeps
        the reply for the first request whose JSON contains that text (the order of parallel
        nodes' requests is not fixed).
        """
        text = json.dumps(json_content) if json_content is not None else content
        tokens = None
        if logprobs is not None:
            assert "".join(t for t, _, _ in logprobs) == text, "logprobs must spell the content"
            tokens = {
                "content": [
                    {
                        "token": token,
                        "logprob": logprob,
                        "bytes": None,
                        "top_logprobs": [
                            {"token": alt, "logprob": lp, "bytes": None}
                            for alt, lp in {token: logprob, **top}.items()
                        ],
                    }
                    for token, logprob, top in logprobs
                ]
            }
        body = {
            "id": f"chatcmpl-stub-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,  # None: echo the requested model
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": refusal},
                    "finish_reason": finish_reason,
                    "logprobs": tokens,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        self._push(_Scripted(200, body, delay_seconds, when))

    def fail(self, status: int, message: str, *, type: str = "invalid_request_error") -> None:
        """Queue an HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
        self._push(_Scripted(status, {"error": {"message": message, "type": type, "code": None}}))

    def reset(self) -> None:
        """Forget scripted replies and received requests (call at the start of a test)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        """How many scripted replies have not been served yet."""
        with self._lock:
            return len(self._queue)

    def _push(self, item: _Scripted) -> None:
        with self._lock:
            self._queue.append(item)

    def _next(self, request: dict[str, Any]) -> _Scripted:
        with self._lock:
            self.requests.append(request)
            text = json.dumps(request)
            item = next(
                (i for i in self._queue if i.when is None or i.when in text),
                None,
            )
            if item is None:
                return _Scripted(
                    500, {"error": {"message": "openai_stub: no scripted reply", "type": "stub"}}
                )
            self._queue.remove(item)
        if item.status == 200 and item.body.get("model") is None:
            item.body = {**item.body, "model": request.get("model", "stub-model")}
        return item


def _handler(stub: OpenAIStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "stub"}})
                return
            try:
                request = json.loads(raw)
            except ValueError:
                self._send(400, {"error": {"message": "body is not JSON", "type": "stub"}})
                return
            item = stub._next(request)
            if item.delay_seconds:
                time.sleep(item.delay_seconds)
            # The client may have given up waiting (a timeout test).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(item.status, item.body)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(
                    200,
                    {"object": "list", "data": [{"id": "stub-model", "object": "model"}]},
                )
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "stub"}})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


@pytest.fixture(scope="session")
def openai_stub() -> Iterator[OpenAIStub]:
    """The stub server on 127.0.0.1 (a free port); ``base_url`` ends in ``/v1``."""
    stub = OpenAIStub()
    server = QuietHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="openai-stub", daemon=True)
    thread.start()
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
