"""OIDC bearer tokens: JWTs an identity provider issued, verified against its JWKS (PyJWT).

Configured by environment variables (``TIDEFLOW_OIDC_ISSUER`` turns it on):

=================================  ===========================================================
``TIDEFLOW_OIDC_ISSUER``           the ``iss`` every token must carry
``TIDEFLOW_OIDC_AUDIENCE``         the ``aud`` it must carry (recommended; comma separated)
``TIDEFLOW_OIDC_JWKS_URL``         where the signing keys are (default: ``jwks_uri`` of the
                                   issuer's ``/.well-known/openid-configuration``)
``TIDEFLOW_OIDC_ROLES_CLAIM``      the claim holding roles or groups (default ``roles``; a
                                   dotted path such as ``realm_access.roles`` reaches inside)
``TIDEFLOW_OIDC_ROLE_MAP``         ``idp-value=role,...``: claim values mapped onto Tideflow
                                   roles (values naming a role already need no mapping; others
                                   become groups an approval's ``approvers`` may name)
``TIDEFLOW_OIDC_USER_CLAIM``       the user name (default ``preferred_username``, then
                                   ``email``, then ``sub``)
``TIDEFLOW_OIDC_DEFINITIONS_CLAIM``  a claim listing definition patterns the caller is
                                   limited to (optional)
``TIDEFLOW_OIDC_ALGORITHMS``       accepted signature algorithms (default ``RS256,ES256``)
=================================  ===========================================================

A token must be signed by one of the issuer's keys (looked up by ``kid``; the key set is cached
and fetched again when an unknown ``kid`` appears), unexpired (30 s leeway), from the issuer, for
the audience. Each refusal is a 401 naming the cause; a token without any known role is a 403.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from starter.auth.roles import Denied, Identity, Role

_LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class OidcSettings:
    """How OIDC tokens are verified and mapped onto identities."""

    issuer: str
    audience: tuple[str, ...] = ()
    jwks_url: str | None = None
    roles_claim: str = "roles"
    role_map: Mapping[str, str] | None = None
    user_claim: str | None = None
    definitions_claim: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcSettings | None:
        """The settings of the ``TIDEFLOW_OIDC_*`` variables; None without an issuer.
        ValueError names a malformed variable."""
        env = os.environ if environ is None else environ
        issuer = env.get("TIDEFLOW_OIDC_ISSUER", "").strip()
        if not issuer:
            return None
        role_map: dict[str, str] = {}
        for pair in env.get("TIDEFLOW_OIDC_ROLE_MAP", "").split(","):
            if not pair.strip():
                continue
            value, sep, role = pair.partition("=")
            if not sep or role.strip() not in {r.value for r in Role}:
                raise ValueError(
                    f"TIDEFLOW_OIDC_ROLE_MAP: {pair.strip()!r} must be VALUE=ROLE with ROLE one "
                    f"of {', '.join(r.value for r in Role)}"
                )
            role_map[value.strip()] = role.strip()
        return cls(
            issuer=issuer,
            audience=_list(env.get("TIDEFLOW_OIDC_AUDIENCE", "")),
            jwks_url=env.get("TIDEFLOW_OIDC_JWKS_URL", "").strip() or None,
            roles_claim=env.get("TIDEFLOW_OIDC_ROLES_CLAIM", "").strip() or "roles",
            role_map=role_map,
            user_claim=env.get("TIDEFLOW_OIDC_USER_CLAIM", "").strip() or None,
            definitions_claim=env.get("TIDEFLOW_OIDC_DEFINITIONS_CLAIM", "").strip() or None,
            algorithms=_list(env.get("TIDEFLOW_OIDC_ALGORITHMS", "")) or ("RS256", "ES256"),
        )


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def looks_like_jwt(credential: str) -> bool:
    """Whether a bearer credential has a JWT's shape (three dot-separated parts)."""
    return credential.count(".") == 2 and not credential.startswith("tft_")


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if isinstance(item, str | int)]
    return []


class OidcVerifier:
    """Verifies OIDC JWTs and maps their claims onto an :class:`Identity`."""

    def __init__(self, settings: OidcSettings) -> None:
        """Verify as ``settings`` say; the JWKS is fetched on first use."""
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None

    def _jwks_url(self) -> str:
        if self.settings.jwks_url:
            return self.settings.jwks_url
        discovery = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(discovery, timeout=10) as answer:
                document = json.loads(answer.read())
            return str(document["jwks_uri"])
        except Exception as e:
            raise Denied(
                401, f"the OIDC issuer's configuration could not be read from {discovery}: {e}"
            ) from None

    def _client(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self._jwks_url(), cache_keys=True, lifespan=300)
        return self._jwks

    def verify(self, token: str) -> Identity:
        """The identity of a valid token; :class:`Denied` (401) naming why it is not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Denied(401, "malformed token: not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.settings.algorithms:
            raise Denied(
                401,
                f"the token is signed with {algorithm!r}; accepted: "
                f"{', '.join(self.settings.algorithms)}",
            )
        try:
            key = self._client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as e:
            raise Denied(401, f"the OIDC issuer's keys could not be fetched: {e}") from None
        except (jwt.PyJWKClientError, jwt.DecodeError):
            kid = header.get("kid")
            raise Denied(
                401, f"the token's signing key (kid {kid!r}) is not one of the issuer's keys"
            ) from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(self.settings.algorithms),
                audience=list(self.settings.audience) or None,
                issuer=self.settings.issuer,
                leeway=_LEEWAY_SECONDS,
                options={
                    "require": ["exp", "iss", "sub"],
                    "verify_aud": bool(self.settings.audience),
                },
            )
        except jwt.ExpiredSignatureError:
            raise Denied(401, "the token expired") from None
        except jwt.InvalidSignatureError:
            raise Denied(
                401, "the token's signature does not verify with the issuer's key"
            ) from None
        except jwt.InvalidAudienceError:
            raise Denied(
                401, f"the token is not for this API (audience {', '.join(self.settings.audience)})"
            ) from None
        except jwt.InvalidIssuerError:
            raise Denied(401, f"the token is not from the issuer {self.settings.issuer}") from None
        except jwt.MissingRequiredClaimError as e:
            raise Denied(401, f"the token lacks the {e.claim!r} claim") from None
        except jwt.ImmatureSignatureError:
            raise Denied(401, "the token is not valid yet") from None
        except jwt.InvalidTokenError as e:
            raise Denied(401, f"invalid token: {e}") from None
        return self.identity(claims)

    async def verify_async(self, token: str) -> Identity:
        """:meth:`verify` in a thread (fetching the key set blocks)."""
        return await asyncio.to_thread(self.verify, token)

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        """The identity of verified claims: user, roles (mapped), groups, definitions."""
        settings = self.settings
        user_claims = [settings.user_claim] if settings.user_claim else []
        user = next(
            (
                str(claims[name])
                for name in [*user_claims, "preferred_username", "email", "sub"]
                if claims.get(name)
            ),
            "",
        )
        known = {r.value for r in Role}
        roles: list[str] = []
        groups: list[str] = []
        for value in _strings(_claim(claims, settings.roles_claim)):
            mapped = (settings.role_map or {}).get(value, value)
            if mapped in known:
                roles.append(mapped)
            else:
                groups.append(value)
        definitions: list[str] = []
        if settings.definitions_claim:
            definitions = _strings(_claim(claims, settings.definitions_claim))
        return Identity(
            user=user,
            roles=tuple(dict.fromkeys(roles)),
            groups=tuple(dict.fromkeys(groups)),
            definitions=tuple(definitions),
            via="oidc",
        )
