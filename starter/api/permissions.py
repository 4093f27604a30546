"""Who may call which route: one table, checked for every request before the route runs.

:data:`ROUTE_PERMISSIONS` maps each route (method and path template, as FastAPI declares it) to
the :class:`~starter.auth.Permission` it needs and where its definition is found, for
credentials limited to some definitions:

- ``scope="slug"``: the ``{slug}`` path parameter names the definition;
- ``scope="run"``: the ``{workflow_id}`` run's definition (its ``TideflowDefinition`` search
  attribute, asked of Temporal for limited credentials only);
- ``scope="listing"``: the route lists several definitions' things; a limited caller is let in
  and the route shows it only what it covers (``identity`` of the request);
- ``scope="global"``: the route acts beyond one definition (events broadcast to every run, the
  audit trail, tokens): limited credentials are refused.

**A route missing from the table is refused (403) for everybody**: a new route declares its
permission here with one line, e.g.::

    ("POST", "/runs/{workflow_id}/redrive"): Rule(Permission.OPERATE, "run"),

and ``tests/test_auth_api.py`` fails while any route of the app is undeclared. :data:`PUBLIC`
marks the few open routes (``/health`` and the API's documentation).

The check (:func:`guard`, a dependency of the whole app) authenticates the request
(:class:`~starter.auth.Authenticator`), answers 401 or 403 naming what is missing (recording
denied changes in the audit trail), and leaves the identity in ``request.state.identity``,
where :data:`IdentityParam` and the per-request client (:data:`~starter.api.runtime.ClientParam`,
acting as the caller) find it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.routing import Match
from temporalio.service import RPCError

from starter import audit
from starter.api.errors import ApiError
from starter.auth import Authenticator, Denied, Identity, Permission, require, roles_with

log = logging.getLogger("tideflow.api")

Scope = Literal["slug", "run", "listing", "global"]


@dataclass(frozen=True)
class Rule:
    """What a route needs: a permission (None: open to anybody) and where its definition is."""

    permission: Permission | None
    scope: Scope = "global"


PUBLIC = Rule(None)
"""A route anybody may call, without credentials."""

ROUTE_PERMISSIONS: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/definitions"): Rule(Permission.READ, "listing"),
    ("GET", "/definitions/{slug}"): Rule(Permission.READ, "slug"),
    ("POST", "/definitions/{slug}/runs"): Rule(Permission.START, "slug"),
    ("POST", "/definitions/{slug}/documents"): Rule(Permission.START, "slug"),
    # The definition is in the body: the route checks it once parsed.
    ("POST", "/runs"): Rule(Permission.START_INLINE, "listing"),
    ("GET", "/runs"): Rule(Permission.READ, "listing"),
    ("GET", "/runs/{workflow_id}"): Rule(Permission.READ, "run"),
    ("GET", "/runs/{workflow_id}/report"): Rule(Permission.READ, "run"),
    ("POST", "/runs/{workflow_id}/pause"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/resume"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/cancel"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/skip"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/retry"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/fail"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/vars"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/redrive"): Rule(Permission.OPERATE, "run"),
    ("POST", "/runs/{workflow_id}/approve"): Rule(Permission.APPROVE, "run"),
    ("POST", "/runs/{workflow_id}/budget"): Rule(Permission.OPERATE, "run"),
    ("GET", "/runs/{workflow_id}/nodes/{node}"): Rule(Permission.READ, "run"),
    ("POST", "/events/{name}"): Rule(Permission.OPERATE, "global"),
    # Listings these routes do not filter per definition: a limited caller is refused.
    ("GET", "/stats"): Rule(Permission.READ, "global"),
    ("GET", "/outbox"): Rule(Permission.READ, "global"),
    ("GET", "/outbox/{entry_id}"): Rule(Permission.READ, "global"),
    ("GET", "/registry"): Rule(Permission.READ, "global"),
    ("GET", "/registry/{name}"): Rule(Permission.READ, "slug"),
    ("GET", "/registry/{name}/versions/{version}"): Rule(Permission.READ, "slug"),
    ("GET", "/registry/{name}/history"): Rule(Permission.READ, "slug"),
    ("POST", "/registry/{name}/runs"): Rule(Permission.START, "slug"),
    # The run page: a browser sends no bearer token, so it is usable while no authentication
    # is configured (loopback), or through a proxy that adds the caller's token.
    ("GET", "/ui/assets/{name}"): PUBLIC,
    ("GET", "/ui"): Rule(Permission.READ, "global"),
    ("GET", "/ui/runs"): Rule(Permission.READ, "global"),
    ("GET", "/ui/runs/{workflow_id}"): Rule(Permission.READ, "run"),
    ("GET", "/ui/runs/{workflow_id}/nodes/{node}"): Rule(Permission.READ, "run"),
    ("GET", "/ui/runs/{workflow_id}/live"): Rule(Permission.READ, "run"),
    ("GET", "/audit"): Rule(Permission.AUDIT, "global"),
    ("GET", "/tokens"): Rule(Permission.MANAGE_TOKENS, "global"),
    ("POST", "/tokens"): Rule(Permission.MANAGE_TOKENS, "global"),
    ("DELETE", "/tokens/{name}"): Rule(Permission.MANAGE_TOKENS, "global"),
}
"""Every route's rule, by method and path template."""


def rule_for(method: str, path: str) -> Rule | None:
    """The declared rule of a route, or None (then the route is refused)."""
    return ROUTE_PERMISSIONS.get((method.upper(), path))


def _route_of(request: Request) -> tuple[str, str, dict[str, str]]:
    """The method, path template and path parameters of the route a request matched."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    params = dict(request.path_params)
    if route is None:  # not routed yet (middleware): find it
        for candidate in request.app.routes:
            match, child = candidate.matches(request.scope)
            if match == Match.FULL:
                template = getattr(candidate, "path", template)
                params = dict(child.get("path_params", {}))
                break
    return request.method.upper(), template, params


async def run_definition(request: Request, workflow_id: str) -> str | None:
    """The definition slug of a run (its search attribute), or None when it has none."""
    from interpreter.workflow import DEFINITION_KEY
    from starter.api.runtime import Runtime

    runtime: Runtime = request.app.state.tideflow
    client = await runtime.client.get()
    try:
        described = await client.get_run(workflow_id).describe()
    except RPCError:
        return None  # unknown run: a limited caller gets 403, nobody learns it exists
    return described.typed_search_attributes.get(DEFINITION_KEY)


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.tideflow_auth
    return authenticator


def _deny(error: Denied) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return HTTPException(error.status, error.detail, headers=headers)


async def guard(request: Request) -> None:
    """Authenticate the request and check its route's permission (see the module's
    docstring); raise 401/403 otherwise."""
    method, template, params = _route_of(request)
    rule = rule_for(method, template)
    if rule is not None and rule.permission is None:
        return
    identity: Identity | None = None
    try:
        identity = await _authenticator(request).authenticate(request.headers.get("authorization"))
        request.state.identity = identity
        if rule is None:
            raise Denied(
                403,
                f"no permission is declared for {method} {template}: the route is refused "
                "(declare one in starter/api/permissions.py)",
            )
        assert rule.permission is not None
        definition: str | None = None
        if rule.scope == "slug":  # a folder's definition, or the registry's by name
            definition = params.get("slug") or params.get("name")
        elif rule.scope == "run" and identity.limited:
            definition = await run_definition(request, params.get("workflow_id", ""))
        elif rule.scope == "listing":
            # Let a limited caller in if it holds the permission at all; the route filters.
            require(identity, rule.permission, somewhere=True)
            return
        require(identity, rule.permission, definition)
    except Denied as e:
        if method not in ("GET", "HEAD", "OPTIONS"):
            await audit.record_async(
                f"{method} {template}",
                params.get("workflow_id") or params.get("slug") or params.get("name") or template,
                user=identity.user if identity else "anonymous",
                via="api",
                outcome="denied",
                detail=e.detail,
            )
        raise _deny(e) from None


def current_identity(request: Request) -> Identity:
    """The identity :func:`guard` authenticated for this request."""
    identity: Identity | None = getattr(request.state, "identity", None)
    if identity is None:  # a public route: nobody in particular
        return Identity(user="anonymous")
    return identity


IdentityParam = Annotated[Identity, Depends(current_identity)]
"""A route parameter receiving the caller's identity."""


def acting_as(identity: Identity, by: str | None, action: str) -> str | None:
    """Whom an action names as its actor: ``by`` of the body when the API runs without
    authentication; else None (the caller, whom the per-request client acts as), and 403 for
    a body naming somebody else."""
    if identity.via == "local":
        return by
    if by and by != identity.user:
        raise ApiError(403, f"you are {identity.user}: you cannot {action} as {by}")
    return None


def check(identity: Identity, permission: Permission, definition: str | None) -> None:
    """Raise 403 unless ``identity`` has ``permission`` on ``definition`` (routes of
    ``listing`` scope check what they learn while serving)."""
    try:
        require(identity, permission, definition)
    except Denied as e:
        raise _deny(e) from None


def document_permissions(app: FastAPI) -> None:
    """Show each operation's permission in the OpenAPI document: a bearer security scheme,
    ``security`` and the 401/403 answers on every operation that needs a permission, and its
    permission (``x-tideflow-permission``) and the roles granting it in its description. While
    no authentication is configured (the API open on the loopback interface) the bearer token
    is documented as optional."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        if schema.get("x-tideflow-permissions"):
            return schema
        authenticator: Authenticator = app.state.tideflow_auth
        security: list[dict[str, list[str]]] = [{"bearer": []}]
        if not authenticator.enabled():
            security.append({})  # an empty requirement: no credentials accepted too
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "a Tideflow token (tideflow token create) or an OIDC access token",
        }
        error = {"$ref": "#/components/schemas/ErrorOut"}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                rule = rule_for(method, path)
                if rule is None or rule.permission is None:
                    continue
                permission = rule.permission.value
                roles = ", ".join(roles_with(rule.permission))
                operation["security"] = security
                operation["x-tideflow-permission"] = permission
                operation["description"] = (
                    f"{operation.get('description', '')}\n\nNeeds the `{permission}` permission "
                    f"({roles})."
                ).strip()
                answers = operation.setdefault("responses", {})
                for status, text in (
                    ("401", "no valid credentials"),
                    ("403", "the credentials lack the permission"),
                ):
                    answers.setdefault(
                        status,
                        {"description": text, "content": {"application/json": {"schema": error}}},
                    )
        schema["x-tideflow-permissions"] = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
