"""The ``http.request`` node type (aliases ``api``, ``http``), through httpx."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


@node_type("http.request", HttpRequestConfig)
async def http_request(config: HttpRequestConfig, ctx: NodeContext) -> dict[str, Any]:
    """Send one HTTP request; fail on an unexpected status (5xx and 429 are retried)."""
    client = await ctx.resources.get("http.client", httpx.AsyncClient, close=_close_client)
    try:
        response = await client.request(
            config.method,
            config.url,
            headers=config.headers,
            params=config.params or None,
            json=config.json_body,
            content=config.body,
            timeout=config.timeout,
        )
    except httpx.TimeoutException as e:
        raise RetryableNodeError(f"{config.method} {config.url} timed out: {e}") from e
    except httpx.HTTPError as e:
        raise RetryableNodeError(f"{config.method} {config.url} failed: {e}") from e
    ok = (
        response.status_code in config.expect_status
        if config.expect_status is not None
        else 200 <= response.status_code < 300
    )
    if not ok:
        message = (
            f"{config.method} {config.url} answered {response.status_code}: "
            f"{_excerpt(response.text)}"
        )
        if response.status_code in _RETRYABLE_STATUS:
            raise RetryableNodeError(message)
        raise PermanentNodeError(message)
    try:
        body_json = response.json() if response.content else None
    except ValueError:
        body_json = None
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers),
        "json": body_json,
        "text": response.text,
    }


async def _close_client(client: httpx.AsyncClient) -> None:
    await client.aclose()


def _excerpt(text: str, limit: int = 300) -> str:
    """The start of a response body on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
