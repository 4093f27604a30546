"""The ``http.request`` node type (aliases ``api``, ``http``), through httpx.

Connections go through :mod:`activities.egress`: link-local and metadata addresses are refused,
loopback and private ones unless the worker allows them, and a response body larger than the
worker's ``max_download_mb`` fails the node. Redirects are not followed (a 3xx is an unexpected
status unless ``expect_status`` lists it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities import egress
from activities._context import NodeContext
from activities._registry import node_type
from activities.errors import PermanentNodeError, RetryableNodeError

# Status codes that a later attempt may not see again.
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpRequestConfig(BaseModel):
    """Config of ``http.request``."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: float = Field(default=30.0, gt=0, description="seconds")
    expect_status: list[int] | None = None
    """Statuses that count as success; default any 2xx."""

    @model_validator(mode="before")
    @classmethod
    def _upper_method(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            data = {**data, "method": data["method"].upper()}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestConfig:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        return self


def _execution(config: Mapping[str, Any]) -> str | None:
    """A short GET (or HEAD) runs as a local activity: read-only and quick, it gains nothing
    from a trip through the task queue. Anything else, or a method chosen by an expression,
    is a regular activity."""
    method = config.get("method", "GET")
    timeout = config.get("timeout", 30.0)
    quick = isinstance(timeout, int | float) and timeout <= LOCAL_TIMEOUT_SECONDS
    return "local" if method in ("GET", "HEAD", "get", "head") and quick else None


LOCAL_TIMEOUT_SECONDS = 10.0
"""The longest ``timeout`` of a request that runs as a local activity by default."""


@node_type("http.request", HttpRequestConfig, execution=_execution)
async def http_request(config: HttpRequestConfig, ctx: NodeContext) -> dict[str, Any]:
    """Send one HTTP request; fail on an unexpected status (5xx and 429 are retried)."""
    client = await egress.client_for(ctx)
    where = f"{config.method} {config.url}"
    try:
        response = await egress.request(
            client,
            config.method,
            config.url,
            shown=where,
            max_bytes=ctx.settings.max_download_bytes,
            headers=config.headers,
            params=config.params or None,
            json=config.json_body,
            content=config.body,
            timeout=config.timeout,
        )
    except httpx.TimeoutException as e:
        raise RetryableNodeError(f"{where} timed out: {e}") from e
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
        raise PermanentNodeError(f"{where}: {e}") from e
    except httpx.HTTPError as e:
        raise RetryableNodeError(f"{where} failed: {e}") from e
    ok = (
        response.status_code in config.expect_status
        if config.expect_status is not None
        else 200 <= response.status_code < 300
    )
    if not ok:
        message = f"{where} answered {response.status_code}: {_excerpt(response.text)}"
        if response.status_code in _RETRYABLE_STATUS:
            raise RetryableNodeError(message)
        raise PermanentNodeError(message)
    try:
        body_json = json.loads(response.content) if response.content else None
    except ValueError:
        body_json = None
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers),
        "json": body_json,
        "text": response.text,
    }


def _excerpt(text: str, limit: int = 300) -> str:
    """The start of a response body on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
