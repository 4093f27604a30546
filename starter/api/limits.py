"""What one request may cost the API: the size of its body (JSON requests and uploads apart),
and the parse limits of a posted definition (:class:`~starter.api.parsing.ParseLimits`).

Bodies are bounded by :class:`BodyLimit`, an ASGI middleware that answers 413 from the
``Content-Length`` header before reading anything, and otherwise counts the bytes as they
arrive and stops at the limit: a 200 MB body is never held in memory. Every limit has a
default and an environment variable (docs/api.md lists them)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starter.api.errors import ApiError, error_response
from starter.api.parsing import ParseLimits

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest JSON request body (a definition with its inputs, an event, a control request)."""

DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""Largest document ``POST /definitions/{slug}/documents`` accepts (413 beyond)."""

UPLOAD_OVERHEAD_BYTES = 1024 * 1024
"""What an upload's body may hold beyond its document: multipart framing and form fields."""

_UPLOAD_PATH = re.compile(r"^/definitions/[^/]+/documents/?$")


@dataclass(frozen=True)
class ApiLimits:
    """Every limit of the API, with its default."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Body of any request but an upload (413 beyond)."""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    """Document of an upload (413 beyond)."""
    parse: ParseLimits = field(default_factory=ParseLimits)
    """Parse time, memory and node count of a posted definition (422 beyond)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiLimits:
        """The defaults, overridden by ``TIDEFLOW_API_*`` environment variables."""
        env = os.environ if environ is None else environ
        parse = ParseLimits()
        return cls(
            max_body_bytes=_read(env, "TIDEFLOW_API_MAX_BODY_BYTES", int, cls.max_body_bytes),
            max_upload_bytes=_read(env, "TIDEFLOW_API_MAX_UPLOAD_BYTES", int, cls.max_upload_bytes),
            parse=ParseLimits(
                timeout_seconds=_read(
                    env, "TIDEFLOW_API_PARSE_TIMEOUT", float, parse.timeout_seconds
                ),
                memory_bytes=_read(env, "TIDEFLOW_API_PARSE_MEMORY_BYTES", int, parse.memory_bytes),
                max_nodes=_read(env, "TIDEFLOW_API_MAX_NODES", int, parse.max_nodes),
                workers=_read(env, "TIDEFLOW_API_PARSE_WORKERS", int, parse.workers),
            ),
        )

    def body_limit(self, path: str) -> int:
        """The largest body a request to ``path`` may send."""
        if _UPLOAD_PATH.match(path):
            return self.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        return self.max_body_bytes


def _read(env: Mapping[str, str], name: str, kind: type[Any], default: Any) -> Any:
    text = env.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = kind(text.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a number") from None
    if value <= 0 and name != "TIDEFLOW_API_PARSE_MEMORY_BYTES":
        raise ValueError(f"{name}={text!r}: expected a number above 0")
    return value


class BodyTooLarge(HTTPException):
    """A request body past its limit (raised while it is read; answered 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    """The one-line answer to a body past ``limit``."""
    return f"the request body is larger than {limit} bytes (the API's limit for this request)"


class BodyLimit:
    """ASGI middleware bounding request bodies by :meth:`ApiLimits.body_limit`."""

    def __init__(self, app: ASGIApp, limits: ApiLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.body_limit(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer_too_large(scope, receive, send, limit)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _answer_too_large(scope, receive, send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer_too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = error_response(ApiError(413, too_large_message(limit)))
    response.headers["Connection"] = "close"  # the rest of the body is not read
    await response(scope, receive, send)


def install_body_limit(app: FastAPI, limits: ApiLimits) -> None:
    """Bound every request body of ``app``; a body found too large while a route reads it is
    answered in the API's error shape."""
    app.add_middleware(BodyLimit, limits=limits)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        response = error_response(ApiError(413, too_large_message(error.limit)))
        response.headers["Connection"] = "close"
        return response
