"""API tokens: bearer credentials kept in the control-plane store, hashed.

``tideflow token create NAME --role R [--definitions 'invoice-*'] [--expires 90d]`` prints a
token once (``tft_`` and 43 random characters); the store keeps only its sha256, the name (the
user the token acts as), roles, groups, definition patterns, who made it and when, and when it
expires or was revoked. A token is checked by looking its hash up: an unknown, revoked or
expired token is refused (401) with the reason. Revoked tokens stay listed; a name can be given
to a new token once its previous token is revoked.

Every creation and revocation is recorded in the audit trail (:mod:`starter.audit`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, func, insert, select, update

from starter import audit
from starter.auth.roles import Denied, Identity, check_roles
from starter.store import metadata, open_store

PREFIX = "tft_"
"""How every token begins (so a leaked one is recognisable in logs and scanners)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$")
_TOKEN = re.compile(r"^tft_[A-Za-z0-9_-]{20,200}$")

tokens_table = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("roles", Text, nullable=False),
    Column("groups", Text, nullable=False),
    Column("definitions", Text, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("expires_at", DateTime(), nullable=True),
    Column("revoked_at", DateTime(), nullable=True),
    Column("revoked_by", String(200), nullable=True),
)


class TokenError(ValueError):
    """A token cannot be created or revoked as asked (the message says why)."""


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its value)."""

    name: str
    roles: list[str]
    groups: list[str]
    definitions: list[str]
    created_at: dt.datetime
    created_by: str | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def state(self) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= dt.datetime.now(dt.UTC):
            return "expired"
        return "active"

    def as_json(self) -> dict[str, Any]:
        """JSON-able data (times in ISO 8601, UTC)."""
        return {
            "name": self.name,
            "roles": self.roles,
            "groups": self.groups,
            "definitions": self.definitions,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "state": self.state,
        }


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        roles=json.loads(row.roles),
        groups=json.loads(row.groups),
        definitions=json.loads(row.definitions),
        created_at=_aware(row.created_at) or row.created_at,
        created_by=row.created_by,
        expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at),
    )


def create_token(
    name: str,
    roles: list[str],
    *,
    definitions: list[str] | None = None,
    groups: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    by: str | None = None,
    via: str | None = "cli",
    store_url: str | None = None,
) -> str:
    """Create a token and return its value (shown once: only its hash is kept).

    Raises :class:`TokenError` for a bad name, an unknown role, no role, an expiry in the past,
    or a name that an active token already has. Created and refused alike are audited."""
    patterns = [p.strip() for p in definitions or [] if p.strip()]
    try:
        checked = _checked(name, roles, expires_at)
        token = _insert(
            name,
            checked,
            patterns,
            [g.strip() for g in groups or [] if g.strip()],
            expires_at,
            by,
            store_url,
        )
    except TokenError as e:
        audit.record(
            "token.create",
            name,
            user=by,
            via=via,
            outcome="refused",
            detail=str(e),
            store_url=store_url,
        )
        raise
    scope = f" for definitions {', '.join(patterns)}" if patterns else ""
    audit.record(
        "token.create",
        name,
        user=by,
        via=via,
        detail=f"roles {', '.join(checked)}{scope}",
        store_url=store_url,
    )
    return token


def _checked(name: str, roles: list[str], expires_at: dt.datetime | None) -> list[str]:
    if not _NAME.match(name):
        raise TokenError(
            f"token name {name!r}: 1 to 200 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit (it is the user the token acts as)"
        )
    if not roles:
        raise TokenError("give at least one --role (viewer, operator, approver, admin)")
    try:
        checked = check_roles(roles)
    except ValueError as e:
        raise TokenError(str(e)) from None
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise TokenError("the expiry is in the past")
    return checked


def _insert(
    name: str,
    roles: list[str],
    patterns: list[str],
    groups: list[str],
    expires_at: dt.datetime | None,
    by: str | None,
    store_url: str | None,
) -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    with open_store(store_url).begin() as connection:
        active = connection.execute(
            select(func.count())
            .select_from(tokens_table)
            .where(tokens_table.c.name == name, tokens_table.c.revoked_at.is_(None))
        ).scalar_one()
        if active:
            raise TokenError(
                f"an active token is named {name!r}: revoke it first "
                f"(tideflow token revoke {name}) or choose another name"
            )
        connection.execute(
            insert(tokens_table).values(
                name=name,
                hash=_hash(token),
                roles=json.dumps(roles),
                groups=json.dumps(groups),
                definitions=json.dumps(patterns),
                created_at=_now(),
                created_by=by,
                expires_at=expires_at.astimezone(dt.UTC).replace(tzinfo=None)
                if expires_at
                else None,
            )
        )
    return token


def revoke_token(
    name: str, *, by: str | None = None, via: str | None = "cli", store_url: str | None = None
) -> None:
    """Revoke the active token named ``name`` (:class:`TokenError` when there is none)."""
    with open_store(store_url).begin() as connection:
        changed = connection.execute(
            update(tokens_table)
            .where(tokens_table.c.name == name, tokens_table.c.revoked_at.is_(None))
            .values(revoked_at=_now(), revoked_by=by)
        ).rowcount
    if not changed:
        audit.record(
            "token.revoke",
            name,
            user=by,
            via=via,
            outcome="refused",
            detail="no active token",
            store_url=store_url,
        )
        raise TokenError(f"no active token is named {name!r} (see tideflow token list)")
    audit.record("token.revoke", name, user=by, via=via, store_url=store_url)


def list_tokens(*, store_url: str | None = None) -> list[TokenInfo]:
    """Every token, oldest first (revoked and expired ones too)."""
    with open_store(store_url).connect() as connection:
        rows = connection.execute(select(tokens_table).order_by(tokens_table.c.id)).all()
    return [_info(row) for row in rows]


def any_token(*, store_url: str | None = None) -> bool:
    """Whether any token was ever created (authentication is then required)."""
    with open_store(store_url).connect() as connection:
        return connection.execute(select(tokens_table.c.id).limit(1)).first() is not None


def verify_token(token: str, *, store_url: str | None = None) -> Identity:
    """The identity of a valid token; :class:`Denied` (401) naming why it is not."""
    if not _TOKEN.match(token):
        raise Denied(401, f"malformed token: Tideflow tokens start with {PREFIX}")
    with open_store(store_url).connect() as connection:
        row = connection.execute(
            select(tokens_table).where(tokens_table.c.hash == _hash(token))
        ).first()
    if row is None:
        raise Denied(401, "unknown token")
    info = _info(row)
    if info.revoked_at is not None:
        raise Denied(401, f"the token {info.name!r} was revoked")
    if info.expires_at is not None and info.expires_at <= dt.datetime.now(dt.UTC):
        raise Denied(401, f"the token {info.name!r} expired at {info.expires_at.isoformat()}")
    return Identity(
        user=info.name,
        roles=tuple(info.roles),
        groups=tuple(info.groups),
        definitions=tuple(info.definitions),
        via="token",
    )


def parse_expiry(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``90d``, ``12h``, ``2w`` from now, or an ISO 8601 date/time (UTC unless it says
    otherwise); ValueError otherwise."""
    now = now or dt.datetime.now(dt.UTC)
    duration = audit.parse_duration(text)
    if duration is not None:
        return now + duration
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expiry {text!r}: give a duration (90d, 12h, 2w) or an ISO date/time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
