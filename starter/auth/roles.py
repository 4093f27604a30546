"""Roles, the permissions they grant, and the identity a request acts as.

=============  ==========================================================================
role           permissions
=============  ==========================================================================
``viewer``     ``read`` (definitions, runs, state, reports), ``decode`` (codec server)
``operator``   viewer's, ``start`` (runs of deployed or folder definitions, uploads) and
               ``operate`` (pause, resume, cancel, skip, retry, fail, set vars, redrive,
               emit events)
``approver``   viewer's and ``approve`` (answer approvals and reviews)
``admin``      every permission: besides the above ``start_inline`` (runs of definitions
               given in the request, which may run code), ``deploy``, ``manage_tokens``,
               ``audit`` (read the audit trail)
=============  ==========================================================================

A credential may be limited to some definitions (``definitions: [invoice-*]``, shell-style
patterns over definition slugs): its permissions then hold for those definitions' runs only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """What a request may need."""

    READ = "read"
    DECODE = "decode"
    START = "start"
    OPERATE = "operate"
    APPROVE = "approve"
    START_INLINE = "start_inline"
    DEPLOY = "deploy"
    MANAGE_TOKENS = "manage_tokens"
    AUDIT = "audit"


class Role(StrEnum):
    """The built-in roles."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


_VIEWER = frozenset({Permission.READ, Permission.DECODE})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _VIEWER | {Permission.START, Permission.OPERATE},
    Role.APPROVER: _VIEWER | {Permission.APPROVE},
    Role.ADMIN: frozenset(Permission),
}
"""The permission matrix."""


def roles_with(permission: Permission) -> list[str]:
    """The roles granting ``permission``, in the matrix's order."""
    return [role.value for role, granted in ROLE_PERMISSIONS.items() if permission in granted]


def check_roles(names: Iterable[str]) -> list[str]:
    """``names`` as role names; ValueError naming an unknown one and the known ones."""
    out = []
    known = ", ".join(r.value for r in Role)
    for name in names:
        cleaned = name.strip().lower()
        if cleaned not in {r.value for r in Role}:
            raise ValueError(f"unknown role {name!r}: one of {known}")
        if cleaned not in out:
            out.append(cleaned)
    return out


@dataclass(frozen=True)
class Identity:
    """Who a request acts as: a user, the roles granted (and groups an approval node's
    ``approvers`` may name), limited to some definitions or not."""

    user: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    definitions: tuple[str, ...] = ()
    """Shell-style patterns over definition slugs; empty: every definition."""
    via: str = "token"
    """How the caller proved it: ``token``, ``oidc``, or ``local`` (no authentication
    configured: the API is open on the loopback interface)."""

    @property
    def permissions(self) -> frozenset[Permission]:
        """Every permission the roles grant."""
        granted: set[Permission] = set()
        for role in self.roles:
            try:
                granted |= ROLE_PERMISSIONS[Role(role)]
            except ValueError:
                continue
        return frozenset(granted)

    @property
    def limited(self) -> bool:
        """Whether the identity acts on some definitions only."""
        return bool(self.definitions)

    def covers(self, definition: str | None) -> bool:
        """Whether ``definition`` (a slug) is one the identity may act on; an unknown
        definition (None) is covered only by an unlimited identity."""
        if not self.definitions:
            return True
        if not definition:
            return False
        return any(fnmatch.fnmatchcase(definition, pattern) for pattern in self.definitions)

    def allows(self, permission: Permission, definition: str | None = None) -> bool:
        """Whether the identity has ``permission`` (on ``definition``'s runs, when limited)."""
        return permission in self.permissions and self.covers(definition)

    @property
    def approver_names(self) -> list[str]:
        """What an approval node's ``approvers`` are matched against besides the user: the
        roles and the groups."""
        return list(dict.fromkeys([*self.roles, *self.groups]))


class Denied(Exception):
    """A request without the credentials (401) or the permission (403) it needs (503 when
    its credentials cannot be checked)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
