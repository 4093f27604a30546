"""Who may do what: identities, roles and permissions (:mod:`~starter.auth.roles`), API tokens
kept hashed in the store (:mod:`~starter.auth.tokens`), OIDC JWTs verified against the issuer's
JWKS (:mod:`~starter.auth.oidc`), and the :class:`Authenticator` the HTTP API and the codec
server ask for the identity of a request.

Authentication is required as soon as it is configured: a token exists in the store (revoked
ones count: revoking every token does not open the API), ``TIDEFLOW_OIDC_ISSUER`` is set, or
``TIDEFLOW_API_AUTH=required``. Until then the API is open — as the local user, with every
permission — and :func:`starter.api.serve` refuses to listen anywhere but on the loopback
interface.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Mapping

from sqlalchemy.exc import SQLAlchemyError

from starter.auth.oidc import OidcSettings, OidcVerifier, looks_like_jwt
from starter.auth.roles import (
    ROLE_PERMISSIONS,
    Denied,
    Identity,
    Permission,
    Role,
    roles_with,
)
from starter.auth.tokens import any_token, verify_token

AUTH_VARIABLE = "TIDEFLOW_API_AUTH"
"""``required`` forces authentication even before any token exists; ``auto`` (the default)
requires it once a token exists or OIDC is configured."""


def local_identity() -> Identity:
    """Who acts when authentication is not configured: the local user, as admin."""
    from starter.client.connection import acting_user

    return Identity(user=acting_user(), roles=(Role.ADMIN.value,), via="local")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns a request's ``Authorization`` header into an :class:`Identity`."""

    def __init__(
        self,
        *,
        store_url: str | None = None,
        oidc: OidcSettings | None = None,
        required: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Tokens from the store of ``store_url``; OIDC with ``oidc`` (default: the
        ``TIDEFLOW_OIDC_*`` variables); ``required`` (default: ``TIDEFLOW_API_AUTH``)."""
        env = os.environ if environ is None else environ
        self._store_url = store_url
        oidc = oidc or OidcSettings.from_env(env)
        self._oidc = OidcVerifier(oidc) if oidc else None
        mode = env.get(AUTH_VARIABLE, "auto").strip().lower() or "auto"
        if mode not in ("auto", "required"):
            raise ValueError(f"{AUTH_VARIABLE}={mode!r}: use auto or required")
        self._required = required if required is not None else mode == "required"
        self._tokens_seen = False

    @property
    def store_url(self) -> str | None:
        """The store the tokens are kept in (None: the default store)."""
        return self._store_url

    @property
    def oidc(self) -> OidcVerifier | None:
        """The OIDC verifier, when OIDC is configured."""
        return self._oidc

    def enabled(self) -> bool:
        """Whether requests must authenticate (see the module's docstring)."""
        if self._required or self._oidc is not None or self._tokens_seen:
            return True
        try:
            # Once a token exists it always will (revoked tokens stay): remember it.
            self._tokens_seen = any_token(store_url=self._store_url)
        except SQLAlchemyError:
            return True  # the store cannot say: fail closed
        return self._tokens_seen

    async def enabled_async(self) -> bool:
        """:meth:`enabled` from async code."""
        if self._required or self._oidc is not None or self._tokens_seen:
            return True
        return await asyncio.to_thread(self.enabled)

    async def authenticate(self, authorization: str | None) -> Identity:
        """The identity of a request with this ``Authorization`` header: the local identity
        when authentication is not configured; :class:`Denied` (401) for missing, malformed,
        unknown, revoked or expired credentials."""
        if not await self.enabled_async():
            return local_identity()
        return await self.identify(authorization)

    async def identify(self, authorization: str | None) -> Identity:
        """The identity of a bearer credential, authentication configured or not."""
        if not authorization or not authorization.strip():
            raise Denied(401, "authentication required: send Authorization: Bearer <token>")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or " " in credential:
            raise Denied(401, "malformed Authorization header: send Authorization: Bearer <token>")
        if looks_like_jwt(credential):
            if self._oidc is None:
                raise Denied(401, "JWTs are not accepted here: no OIDC issuer is configured")
            return await self._oidc.verify_async(credential)
        try:
            return await asyncio.to_thread(verify_token, credential, store_url=self._store_url)
        except SQLAlchemyError as e:
            raise Denied(
                503, f"cannot check the token: the store is unreachable ({type(e).__name__})"
            ) from None


def require(
    identity: Identity,
    permission: Permission,
    definition: str | None = None,
    *,
    somewhere: bool = False,
) -> None:
    """Raise :class:`Denied` (403) unless ``identity`` has ``permission`` (on ``definition``
    when it is limited; on some definition at least with ``somewhere``); the message names the
    permission and the roles granting it."""
    if permission not in identity.permissions:
        granted = ", ".join(identity.roles) or "no role"
        raise Denied(
            403,
            f"{identity.user} lacks the {permission.value!r} permission (granted by "
            f"{', '.join(roles_with(permission))}; {identity.user} has {granted})",
        )
    if not somewhere and not identity.covers(definition):
        limits = ", ".join(identity.definitions)
        what = f"definition {definition!r}" if definition else "runs of every definition"
        raise Denied(
            403,
            f"{identity.user}'s {permission.value!r} permission is limited to the definitions "
            f"{limits}: not {what}",
        )


__all__ = [
    "AUTH_VARIABLE",
    "ROLE_PERMISSIONS",
    "Authenticator",
    "Denied",
    "Identity",
    "OidcSettings",
    "OidcVerifier",
    "Permission",
    "Role",
    "is_loopback",
    "local_identity",
    "require",
    "roles_with",
]
