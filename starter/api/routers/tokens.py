"""``/tokens``: the API's bearer tokens (admin): list, create (the value is answered once),
revoke. The same as ``tideflow token``; every change is in the audit trail."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from starter.api.errors import ERROR_RESPONSES, ApiError, field_error
from starter.api.permissions import IdentityParam
from starter.auth import Identity, tokens

router = APIRouter(tags=["governance"], responses=ERROR_RESPONSES)


class TokenOut(BaseModel):
    """A token as listed (never its value)."""

    name: str
    roles: list[str]
    groups: list[str]
    definitions: list[str]
    created_at: str
    created_by: str | None
    expires_at: str | None
    revoked_at: str | None
    state: str


class TokenRequest(BaseModel):
    """A token to create."""

    name: str = Field(
        description="the user the token acts as",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$",
    )
    roles: list[Literal["viewer", "operator", "approver", "admin"]] = Field(min_length=1)
    definitions: list[str] = Field(
        default_factory=list, description="limit it to these definition slugs (patterns)"
    )
    groups: list[str] = Field(
        default_factory=list, description="groups an approval node's approvers may name"
    )
    expires: str | None = Field(default=None, description="90d, 12h, or an ISO date/time")


class TokenCreated(BaseModel):
    """A created token: ``token`` is shown this once."""

    name: str
    token: str


def _store(request: Request) -> str | None:
    """The store of the app's authenticator (where its tokens are checked)."""
    url: str | None = request.app.state.tideflow_auth.store_url
    return url


def _authenticated(identity: Identity) -> None:
    if identity.via == "local":
        raise ApiError(
            403,
            "the API has no authentication yet: make the first token with the CLI "
            "(tideflow token create NAME --role admin)",
        )


@router.get("/tokens", response_model=list[TokenOut])
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    """Every token, revoked and expired ones too."""
    listed = await asyncio.to_thread(tokens.list_tokens, store_url=_store(request))
    return [info.as_json() for info in listed]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
async def create_token(
    body: TokenRequest, identity: IdentityParam, request: Request
) -> TokenCreated:
    """Create a token; its value is in this answer only (the store keeps its hash). The first
    token is made with the CLI: an API without authentication mints no credentials."""
    _authenticated(identity)
    try:
        expires = tokens.parse_expiry(body.expires) if body.expires else None
    except ValueError as e:
        raise field_error("expires", str(e)) from None
    try:
        value = await asyncio.to_thread(
            tokens.create_token,
            body.name,
            [str(role) for role in body.roles],
            definitions=body.definitions,
            groups=body.groups,
            expires_at=expires,
            by=identity.user,
            via="api",
            store_url=_store(request),
        )
    except tokens.TokenError as e:
        raise ApiError(422, str(e)) from None
    return TokenCreated(name=body.name, token=value)


@router.delete("/tokens/{name}", status_code=204)
async def revoke_token(name: str, identity: IdentityParam, request: Request) -> None:
    """Revoke the active token of that name (404 when there is none)."""
    _authenticated(identity)
    try:
        await asyncio.to_thread(
            tokens.revoke_token, name, by=identity.user, via="api", store_url=_store(request)
        )
    except tokens.TokenError as e:
        raise ApiError(404, str(e)) from None
