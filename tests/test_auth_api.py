"""The HTTP API's authentication and authorization, in process against the real dev server and
worker: the permission matrix over every route (no token, viewer, operator, approver, admin, a
definition-limited operator and viewer), refused credentials with their cause, OIDC JWTs
verified against a JWKS served over HTTP, approvers enforced with the caller's identity, the
audit trail of a scripted sequence, and the Temporal identity of each request."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import update
from temporalio.api.enums.v1 import EventType

from activities import WorkerSettings
from interpreter.control import RunInput
from starter import audit
from starter.api import create_app
from starter.api.app import listen_refusal
from starter.api.permissions import ROUTE_PERMISSIONS, rule_for
from starter.auth import ROLE_PERMISSIONS, Authenticator, OidcSettings, Permission, Role
from starter.auth.tokens import create_token, revoke_token, tokens_table
from starter.server import free_port
from starter.store import open_store
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.test_api import _serving

HELLO = """
name: Sec Hello
inputs:
  who: {type: string, required: true}
vars: {greeting: ""}
tasks:
  - id: greet
    type: set
    config: {greeting: "${{ 'hello ' + inputs.who }}"}
outputs:
  greeting: ${{ vars.greeting }}
"""

GATE = """
name: Sec Gate
vars: {count: 0}
tasks:
  - id: hold
    type: wait
    config: {duration: 1h}
"""

REVIEW = """
name: Sec Review
tasks:
  - id: review
    type: approval
    config: {message: pay it?, approvers: [ana, finance]}
outputs:
  approved: ${{ nodes.review.output.approved }}
  by: ${{ nodes.review.output.by }}
"""

EXPECTED: dict[tuple[str, str], Permission | None] = {
    ("GET", "/health"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/redoc"): None,
    ("GET", "/definitions"): Permission.READ,
    ("GET", "/definitions/{slug}"): Permission.READ,
    ("POST", "/definitions/{slug}/runs"): Permission.START,
    ("POST", "/definitions/{slug}/documents"): Permission.START,
    ("POST", "/runs"): Permission.START_INLINE,
    ("GET", "/runs"): Permission.READ,
    ("GET", "/runs/{workflow_id}"): Permission.READ,
    ("GET", "/runs/{workflow_id}/report"): Permission.READ,
    ("POST", "/runs/{workflow_id}/pause"): Permission.OPERATE,
    ("POST", "/runs/{workflow_id}/resume"): Permission.OPERATE,
    ("POST", "/runs/{workflow_id}/cancel"): Permission.OPERATE,
    ("POST", "/runs/{workflow_id}/skip"): Permission.OPERATE,
    ("POST", "/runs/{workflow_id}/retry"): Permission.OPERATE,
    ("POST", "/runs/{workflow_id}/vars"): Permission.OPERATE,
    ("POST", "/runs/{workflow_id}/approve"): Permission.APPROVE,
    ("POST", "/events/{name}"): Permission.OPERATE,
    ("GET", "/audit"): Permission.AUDIT,
    ("GET", "/tokens"): Permission.MANAGE_TOKENS,
    ("POST", "/tokens"): Permission.MANAGE_TOKENS,
    ("DELETE", "/tokens/{name}"): Permission.MANAGE_TOKENS,
}
"""The issue's matrix, written out: what each route needs (None: open)."""


@dataclass(frozen=True)
class Caller:
    """A kind of caller of the matrix: its token's roles and definition limits."""

    name: str
    roles: tuple[str, ...] = ()
    definitions: tuple[str, ...] = ()


CALLERS = (
    Caller("nobody"),
    Caller("viewer", ("viewer",)),
    Caller("operator", ("operator",)),
    Caller("approver", ("approver",)),
    Caller("admin", ("admin",)),
    Caller("elsewhere", ("operator",), ("sec-other-*",)),  # operator of other definitions only
    Caller("secviewer", ("viewer",), ("sec-*",)),
)


@dataclass
class Secured:
    """The API with authentication on, its HTTP client, tokens by caller, and its store."""

    http: httpx.AsyncClient
    tokens: dict[str, str]
    store: str
    tideflow: Tideflow
    app: FastAPI

    def auth(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {"Authorization": f"Bearer {token}"} if token else {}


def _write_definitions(folder: Path) -> None:
    for name, text in (("hello.yaml", HELLO), ("gate.yaml", GATE), ("review.yaml", REVIEW)):
        (folder / name).write_text(textwrap.dedent(text).strip() + "\n")


@pytest_asyncio.fixture(scope="module")
async def secured(
    tideflow: Tideflow, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Secured]:
    folder = tmp_path_factory.mktemp("sec-definitions")
    _write_definitions(folder)
    store = f"sqlite:///{tmp_path_factory.mktemp('sec-store') / 'control.db'}"
    tokens = {
        caller.name: create_token(
            caller.name, list(caller.roles), definitions=list(caller.definitions), store_url=store
        )
        for caller in CALLERS
        if caller.roles
    }
    for name, roles, groups in (
        ("ana", ["approver"], []),
        ("bob", ["approver"], []),
        ("cleo", ["approver"], ["finance"]),
    ):
        tokens[name] = create_token(name, roles, groups=groups, store_url=store)
    settings = WorkerSettings(
        home=tmp_path_factory.mktemp("sec-home"), task_queue=tideflow.task_queue
    )
    app = create_app(
        folder,
        client=tideflow.client,
        settings=settings,
        triggers=False,
        authenticator=Authenticator(store_url=store),
    )
    async with _serving(app) as http:
        yield Secured(http, tokens, store, tideflow, app)


async def _start(api: Secured, slug: str, caller: str = "admin", **body: Any) -> str:
    answer = await api.http.post(f"/definitions/{slug}/runs", json=body, headers=api.auth(caller))
    assert answer.status_code == 201, answer.text
    workflow_id: str = answer.json()["workflow_id"]
    return workflow_id


async def _waiting(api: Secured, workflow_id: str) -> dict[str, Any]:
    async def state() -> dict[str, Any]:
        answer = await api.http.get(f"/runs/{workflow_id}", headers=api.auth("admin"))
        body: dict[str, Any] = answer.json()
        return body

    found: dict[str, Any] = await eventually(
        state, lambda s: s.get("status") == "waiting", f"{workflow_id} waiting"
    )
    return found


# --- the permission matrix ----------------------------------------------------------------------


def _routes(app_routes: list[Any]) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers (routers included; HEAD left out)."""
    return sorted(
        (method, str(route.path))
        for route in iter_route_contexts(app_routes)
        for method in route.methods or ()
        if method != "HEAD"
    )


def test_every_route_declares_a_permission(tmp_path: Path) -> None:
    app = create_app(tmp_path, triggers=False, authenticator=Authenticator(store_url="sqlite://"))
    routes = _routes(app.routes)
    assert ("POST", "/runs/{workflow_id}/approve") in routes  # the listing sees routers' routes
    undeclared = [r for r in routes if rule_for(*r) is None]
    assert undeclared == [], f"declare these in starter/api/permissions.py: {undeclared}"
    # The written-out matrix agrees with the declarations it covers.
    for route, permission in EXPECTED.items():
        if route in ROUTE_PERMISSIONS:
            assert ROUTE_PERMISSIONS[route].permission == permission, route


def _allowed(caller: Caller, route: tuple[str, str], permission: Permission) -> bool:
    if not caller.roles:
        return False
    granted = set().union(*(ROLE_PERMISSIONS[Role(r)] for r in caller.roles))
    if permission not in granted:
        return False
    if not caller.definitions:
        return True
    scope = ROUTE_PERMISSIONS[route].scope
    if scope == "global":
        return False
    if scope == "listing":
        return True
    # The matrix's slug and run are of sec-hello and sec-gate.
    return any(pattern == "sec-*" for pattern in caller.definitions)


async def test_the_permission_matrix_over_every_route(secured: Secured) -> None:
    gate = await _start(secured, "sec-gate")
    await _waiting(secured, gate)
    app_routes = secured.app.routes
    values = {
        "slug": "sec-hello",
        "workflow_id": gate,
        "name": "sec-hello",
        "entry_id": "no-such-entry",
        "node": "gate",
        "version": "1",
    }
    checked = 0
    for route in _routes(app_routes):
        method, template = route
        permission = EXPECTED.get(route, ROUTE_PERMISSIONS[route].permission)
        path = template.format(**values)
        for caller in CALLERS:
            answer = await secured.http.request(
                method,
                path,
                headers=secured.auth(caller.name),
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
            where = f"{caller.name}: {method} {path} -> {answer.status_code} {answer.text[:300]}"
            if permission is None:
                assert answer.status_code not in (401, 403), where
            elif not caller.roles:
                assert answer.status_code == 401, where
                assert answer.headers["www-authenticate"] == "Bearer"
                assert "authentication required" in answer.json()["detail"]
            elif _allowed(caller, route, permission):
                assert answer.status_code not in (401, 403), where
            else:
                assert answer.status_code == 403, where
                detail = answer.json()["detail"]
                assert f"'{permission.value}' permission" in detail, where
            checked += 1
    assert checked >= len(EXPECTED) * len(CALLERS)


async def test_a_route_without_a_declared_permission_is_refused(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'control.db'}"
    admin = create_token("root", ["admin"], store_url=store)
    app = create_app(tmp_path, triggers=False, authenticator=Authenticator(store_url=store))

    @app.get("/brand-new")
    async def brand_new() -> dict[str, str]:
        return {"secret": "yes"}

    async with _serving(app) as http:
        answer = await http.get("/brand-new", headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 403
    assert "no permission is declared for GET /brand-new" in answer.json()["detail"]


# --- refused credentials ------------------------------------------------------------------------


async def test_bad_credentials_are_401_naming_the_cause(secured: Secured) -> None:
    revoked = create_token("gone", ["viewer"], store_url=secured.store)
    revoke_token("gone", store_url=secured.store)
    expired = create_token("old", ["viewer"], store_url=secured.store)
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    with open_store(secured.store).begin() as connection:
        connection.execute(
            update(tokens_table).where(tokens_table.c.name == "old").values(expires_at=past)
        )
    cases = {
        None: "authentication required",
        "Basic dXNlcjpwdw==": "malformed Authorization header",
        "Bearer": "malformed Authorization header",
        "Bearer not-a-token": "malformed token",
        "Bearer tft_" + "A" * 43: "unknown token",
        f"Bearer {revoked}": "'gone' was revoked",
        f"Bearer {expired}": "'old' expired",
        "Bearer aaa.bbb.ccc": "no OIDC issuer is configured",
    }
    for header, cause in cases.items():
        answer = await secured.http.get(
            "/definitions", headers={"Authorization": header} if header else {}
        )
        assert answer.status_code == 401, (header, answer.text)
        assert cause in answer.json()["detail"], (header, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        credential = (header or "").partition(" ")[2]
        assert not credential or credential not in answer.text  # never echoes a credential


async def test_health_and_docs_need_no_token(secured: Secured) -> None:
    for path in ("/health", "/openapi.json", "/docs"):
        assert (await secured.http.get(path)).status_code == 200, path


async def test_a_limited_caller_sees_only_its_definitions(secured: Secured) -> None:
    await _start(secured, "sec-hello", inputs={"who": "x"})
    listed = await secured.http.get("/definitions", headers=secured.auth("elsewhere"))
    assert listed.status_code == 200 and listed.json() == []
    mine = await secured.http.get("/definitions", headers=secured.auth("secviewer"))
    assert {d["slug"] for d in mine.json()} == {"sec-hello", "sec-gate", "sec-review"}

    runs = await secured.http.get("/runs", headers=secured.auth("elsewhere"))
    assert runs.status_code == 200 and runs.json() == []
    refused = await secured.http.get(
        "/runs", params={"definition": "sec-hello"}, headers=secured.auth("elsewhere")
    )
    assert refused.status_code == 403
    assert "limited to the definitions sec-other-*" in refused.json()["detail"]


def test_the_api_listens_elsewhere_only_with_authentication(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'control.db'}"
    open_api = Authenticator(store_url=store, environ={})
    assert listen_refusal("127.0.0.1", open_api) is None
    assert listen_refusal("::1", open_api) is None
    refusal = listen_refusal("0.0.0.0", open_api)
    assert refusal and "no authentication is configured" in refusal
    create_token("root", ["admin"], store_url=store)
    assert listen_refusal("0.0.0.0", Authenticator(store_url=store, environ={})) is None

    done = subprocess.run(
        [sys.executable, "-m", "starter.cli", "api", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "TIDEFLOW_HOME": str(tmp_path / "home")},
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to listen on 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr


# --- approvers, the audit trail, Temporal's identity --------------------------------------------


async def test_approvers_are_enforced_with_the_callers_identity(secured: Secured) -> None:
    refused_run = await _start(secured, "sec-review")
    await _waiting(secured, refused_run)
    path = f"/runs/{refused_run}/approve"
    bob = await secured.http.post(path, json={"node": "review"}, headers=secured.auth("bob"))
    assert bob.status_code == 409, bob.text
    assert "bob may not answer 'review': only ana, finance may" in bob.json()["detail"]
    posing = await secured.http.post(
        path, json={"node": "review", "by": "ana"}, headers=secured.auth("bob")
    )
    assert posing.status_code == 403
    assert "you are bob: you cannot answer as ana" in posing.json()["detail"]
    viewer = await secured.http.post(path, json={"node": "review"}, headers=secured.auth("viewer"))
    assert viewer.status_code == 403 and "'approve' permission" in viewer.json()["detail"]
    assert (await _waiting(secured, refused_run))["waiting"] == {"review": "approval"}

    ana = await secured.http.post(path, json={"node": "review"}, headers=secured.auth("ana"))
    assert ana.status_code == 200, ana.text
    report = await secured.http.get(
        f"{path.rsplit('/', 1)[0]}/report", params={"wait": "true"}, headers=secured.auth("ana")
    )
    assert report.json()["outputs"] == {"approved": True, "by": "ana"}

    # A group of the token counts as an approver name too.
    by_group = await _start(secured, "sec-review")
    await _waiting(secured, by_group)
    cleo = await secured.http.post(
        f"/runs/{by_group}/approve", json={"node": "review"}, headers=secured.auth("cleo")
    )
    assert cleo.status_code == 200, cleo.text


async def test_the_audit_trail_and_temporal_identity_of_a_scripted_sequence(
    secured: Secured,
) -> None:
    http, auth = secured.http, secured.auth
    gate = await _start(secured, "sec-gate", caller="operator")
    await _waiting(secured, gate)
    assert (await http.post(f"/runs/{gate}/pause", headers=auth("operator"))).status_code == 200
    assert (await http.post(f"/runs/{gate}/resume", headers=auth("operator"))).status_code == 200
    denied = await http.post(f"/runs/{gate}/cancel", headers=auth("viewer"))
    assert denied.status_code == 403
    vars_set = await http.post(
        f"/runs/{gate}/vars", json={"values": {"count": 2}}, headers=auth("admin")
    )
    assert vars_set.status_code == 200
    refused = await http.post(f"/runs/{gate}/skip", json={"node": "nope"}, headers=auth("operator"))
    assert refused.status_code == 409
    assert (await http.post(f"/runs/{gate}/cancel", headers=auth("operator"))).status_code == 200

    not_admin = await http.get("/audit", params={"run": gate}, headers=auth("operator"))
    assert not_admin.status_code == 403 and "'audit' permission" in not_admin.json()["detail"]
    trail = await http.get("/audit", params={"run": gate}, headers=auth("admin"))
    assert trail.status_code == 200
    seen = [(e["user"], e["via"], e["action"], e["outcome"]) for e in trail.json()]
    assert seen == [
        ("operator", "api", "start", "ok"),
        ("operator", "api", "pause", "ok"),
        ("operator", "api", "resume", "ok"),
        ("viewer", "api", "POST /runs/{workflow_id}/cancel", "denied"),
        ("admin", "api", "set_vars", "ok"),
        ("operator", "api", "skip", "refused"),
        ("operator", "api", "cancel", "ok"),
    ]
    entries = trail.json()
    assert entries[0]["definition"] == "sec-gate"
    assert entries[4]["detail"] == "vars count"  # names, never values
    assert "'operate' permission" in entries[3]["detail"]
    assert "nope" in entries[5]["detail"]
    by_user = await http.get("/audit", params={"user": "viewer"}, headers=auth("admin"))
    assert all(e["user"] == "viewer" for e in by_user.json()) and by_user.json()

    # Temporal's history names who sent each signal and update: the token's user.
    handle = secured.tideflow.client.get_workflow_handle(gate)
    history = await handle.fetch_history()
    host = socket.gethostname()
    signals = [
        e.workflow_execution_signaled_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert signals == [f"operator@{host}", f"operator@{host}"]
    updates = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert updates == [f"admin@{host}"]
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.identity == f"operator@{host}"
    converter = secured.tideflow.client.data_converter
    [run_input] = await converter.decode(started.input.payloads, [RunInput])
    assert run_input.origin == "api"  # what the run's nodes see as NodeInput.origin
    cancel = [
        e.workflow_execution_cancel_requested_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    ]
    assert cancel == [f"operator@{host}"]


async def test_token_management_over_http(secured: Secured) -> None:
    name = f"svc-{uuid.uuid4().hex[:6]}"
    made = await secured.http.post(
        "/tokens",
        json={"name": name, "roles": ["viewer"], "definitions": ["sec-*"]},
        headers=secured.auth("admin"),
    )
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert (
        await secured.http.get("/definitions", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
    listed = await secured.http.get("/tokens", headers=secured.auth("admin"))
    assert name in {t["name"] for t in listed.json()}
    assert token not in listed.text
    bad = await secured.http.post(
        "/tokens", json={"name": "x", "roles": ["root"]}, headers=secured.auth("admin")
    )
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["field"].startswith("body.roles")
    gone = await secured.http.delete(f"/tokens/{name}", headers=secured.auth("admin"))
    assert gone.status_code == 204
    after = await secured.http.get("/definitions", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    # Token changes are recorded in the store the tokens live in (one store in production).
    trail = audit.entries(user="admin", store_url=secured.store)
    actions = [(e.action, e.target, e.outcome, e.via) for e in trail]
    assert ("token.create", name, "ok", "api") in actions
    assert ("token.revoke", name, "ok", "api") in actions
    duplicate = await secured.http.post(
        "/tokens", json={"name": "admin", "roles": ["viewer"]}, headers=secured.auth("admin")
    )
    assert duplicate.status_code == 422 and "an active token is named" in duplicate.text
    trail = audit.entries(user="admin", store_url=secured.store)
    assert ("token.create", "admin", "refused", "api") in [
        (e.action, e.target, e.outcome, e.via) for e in trail
    ]


# --- OIDC ----------------------------------------------------------------------------------------


class _Jwks:
    """An issuer's signing key and its JWKS served over HTTP by a local server."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "issuer-1", "use": "sig", "alg": "RS256"})
        body = json.dumps({"keys": [jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, key: Any = None, kid: str = "issuer-1", **claims: Any) -> str:
        now = dt.datetime.now(dt.UTC)
        payload = {
            "iss": "https://idp.test",
            "aud": "tideflow",
            "sub": "user-1",
            "exp": now + dt.timedelta(minutes=5),
            "iat": now,
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    served = _Jwks()
    try:
        yield served
    finally:
        served.close()


async def test_oidc_tokens_verified_against_the_issuers_jwks(
    jwks: _Jwks, tideflow: Tideflow, tmp_path: Path
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    _write_definitions(folder)
    oidc = OidcSettings(
        issuer="https://idp.test",
        audience=("tideflow",),
        jwks_url=jwks.url,
        roles_claim="realm_access.roles",
        role_map={"tideflow-approvers": "approver", "tideflow-readers": "viewer"},
    )
    app = create_app(
        folder,
        client=tideflow.client,
        settings=WorkerSettings(home=tmp_path, task_queue=tideflow.task_queue),
        triggers=False,
        authenticator=Authenticator(store_url=f"sqlite:///{tmp_path / 'c.db'}", oidc=oidc),
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    roles: dict[str, Any] = {"realm_access": {"roles": ["tideflow-approvers", "finance"]}}
    good = jwks.token(preferred_username="dana", **roles)
    cases = {
        jwks.token(key=other, **roles): "signature does not verify",
        jwks.token(key=other, kid="rogue", **roles): "kid 'rogue'",
        jwks.token(exp=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), **roles): "expired",
        jwks.token(aud="someone-else", **roles): "not for this API",
        jwks.token(iss="https://evil.test", **roles): "not from the issuer",
    }
    async with _serving(app) as http:
        listed = await http.get("/definitions", headers={"Authorization": f"Bearer {good}"})
        assert listed.status_code == 200, listed.text
        for token, cause in cases.items():
            answer = await http.get("/definitions", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, (cause, answer.text)
            assert cause in answer.json()["detail"], answer.text
        reader = jwks.token(realm_access={"roles": ["tideflow-readers"]})
        start = await http.post(
            "/definitions/sec-review/runs", json={}, headers={"Authorization": f"Bearer {reader}"}
        )
        assert start.status_code == 403 and "'start' permission" in start.json()["detail"]

        # The JWT's user and group answer an approval naming the group.
        run = await tideflow.client.start_workflow(  # started directly: dana may not start
            "TideflowWorkflow",
            _review_input(folder),
            id=f"sec-review-{uuid.uuid4().hex[:6]}",
            task_queue=tideflow.task_queue,
        )
        await eventually(
            lambda: http.get(f"/runs/{run.id}", headers={"Authorization": f"Bearer {good}"}),
            lambda r: r.status_code == 200 and r.json()["waiting"] == {"review": "approval"},
            "the review waiting",
        )
        answer = await http.post(
            f"/runs/{run.id}/approve",
            json={"node": "review"},
            headers={"Authorization": f"Bearer {good}"},
        )
        assert answer.status_code == 200, answer.text
        report = await http.get(
            f"/runs/{run.id}/report",
            params={"wait": "true"},
            headers={"Authorization": f"Bearer {good}"},
        )
        assert report.json()["outputs"] == {"approved": True, "by": "dana"}


def _review_input(folder: Path) -> Any:
    from starter.client import load, run_input

    return run_input(load(folder / "review.yaml"), {})


async def test_an_unreachable_token_store_fails_closed(tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/tideflow"
    app = create_app(tmp_path, triggers=False, authenticator=Authenticator(store_url=dead))
    async with _serving(app) as http:
        anonymous = await http.get("/definitions")
        assert anonymous.status_code == 401  # authentication required: it cannot tell
        token = await http.get("/definitions", headers={"Authorization": "Bearer tft_" + "a" * 43})
        assert token.status_code == 503
        assert "cannot check the token: the store is unreachable" in token.json()["detail"]
        assert (await http.get("/health")).status_code in (200, 503)  # open either way
