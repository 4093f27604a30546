"""``tideflow codec-server``: the payload codec over HTTP, for the Temporal Web UI (and
``temporal workflow show --codec-endpoint``).

Temporal's remote codec protocol: ``POST /decode`` and ``POST /encode`` take and answer
``{"payloads": [{"metadata": {KEY: BASE64}, "data": BASE64}, ...]}`` (the JSON form of
``temporal.api.common.v1.Payloads``); the UI sends the namespace in ``X-Namespace`` and, when
told to pass the user's access token, ``Authorization: Bearer ...``. Point the UI at it with
``temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8888`` or the UI's
``TEMPORAL_CODEC_ENDPOINT``; CORS answers the UI's origin (``--cors-origin``, default
``http://localhost:8233``).

Who may decode: the same credentials and roles as the HTTP API (:mod:`starter.auth`): any role
(``decode`` is a viewer's permission), and a credential limited to some definitions decodes only
payloads bound to runs of those definitions (each encrypted payload names its run; the run's
definition is asked of Temporal) — a request holding another run's payload is refused whole
(403). A request without valid credentials is refused (401). Without authentication configured
the server, like the API, listens on the loopback interface only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from activities.encryption import (
    EncryptionCodec,
    EncryptionError,
    EncryptionKeys,
    KeyConfigError,
    is_encrypted,
    workflow_of,
)
from starter.auth import Authenticator, Denied, Identity, Permission, is_loopback, require

log = logging.getLogger("tideflow.codec")

DEFAULT_UI_ORIGIN = "http://localhost:8233"


class PayloadJson(BaseModel):
    """One payload in Temporal's JSON form."""

    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""


class PayloadsJson(BaseModel):
    """The body of ``/encode`` and ``/decode``, and their answer."""

    payloads: list[PayloadJson] = Field(default_factory=list)


def _to_payload(item: PayloadJson, index: int) -> Payload:
    try:
        return Payload(
            metadata={k: base64.b64decode(v, validate=True) for k, v in item.metadata.items()},
            data=base64.b64decode(item.data, validate=True),
        )
    except (binascii.Error, ValueError):
        raise _BadRequest(f"payloads[{index}]: metadata values and data must be base64") from None


def _to_json(payload: Payload) -> PayloadJson:
    return PayloadJson(
        metadata={k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        data=base64.b64encode(payload.data).decode(),
    )


class _BadRequest(Exception):
    pass


class RunDefinitions:
    """Which definition a run runs (its ``TideflowDefinition`` search attribute), asked of
    Temporal once per run and remembered."""

    def __init__(self) -> None:
        self._client: Any = None
        self._known: dict[str, str | None] = {}
        self._lock = asyncio.Lock()

    async def definition(self, workflow_id: str) -> str | None:
        """The run's definition slug, or None (unknown run, or not a Tideflow run)."""
        if workflow_id in self._known:
            return self._known[workflow_id]
        from temporalio.service import RPCError

        from interpreter.workflow import DEFINITION_KEY
        from starter.client import connect, default_identity

        async with self._lock:
            if self._client is None:
                self._client = await connect(identity=default_identity("tideflow-codec-server"))
        slug: str | None
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
            slug = described.typed_search_attributes.get(DEFINITION_KEY)
        except RPCError:
            slug = None
        if slug is not None:  # an unknown run may exist later: ask again then
            self._known[workflow_id] = slug
        return slug


def create_codec_app(
    codec: EncryptionCodec,
    *,
    authenticator: Authenticator | None = None,
    cors_origins: list[str] | None = None,
    definitions: RunDefinitions | None = None,
) -> FastAPI:
    """The codec server's app: ``/encode``, ``/decode`` and ``/health``."""
    authenticator = authenticator or Authenticator()
    runs = definitions or RunDefinitions()
    app = FastAPI(
        title="Tideflow codec server",
        version="1",
        summary="Temporal's remote payload codec: AES-256-GCM with TIDEFLOW_ENCRYPTION_KEYS.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins or [DEFAULT_UI_ORIGIN],
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )

    async def identity_of(request: Request) -> Identity:
        identity = await authenticator.authenticate(request.headers.get("authorization"))
        require(identity, Permission.DECODE, somewhere=True)  # runs are checked per payload
        return identity

    async def body_payloads(request: Request) -> list[Payload]:
        try:
            body = PayloadsJson.model_validate_json(await request.body())
        except ValueError:
            raise _BadRequest(
                'the body must be {"payloads": [{"metadata": {...}, "data": "..."}]}'
            ) from None
        return [_to_payload(item, i) for i, item in enumerate(body.payloads)]

    def answer(payloads: list[Payload]) -> JSONResponse:
        out = PayloadsJson(payloads=[_to_json(p) for p in payloads])
        return JSONResponse(out.model_dump())

    def error(status: int, detail: str) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        """Decrypt the payloads the caller may read."""
        try:
            identity = await identity_of(request)
            payloads = await body_payloads(request)
            if identity.limited:
                for payload in payloads:
                    if not is_encrypted(payload):
                        continue
                    workflow_id = workflow_of(payload)
                    definition = await runs.definition(workflow_id) if workflow_id else None
                    if not identity.covers(definition):
                        run = f"run {workflow_id!r}" if workflow_id else "a payload of no run"
                        raise Denied(
                            403,
                            f"{identity.user} may decode payloads of the definitions "
                            f"{', '.join(identity.definitions)} only: not of {run}",
                        )
            return answer(await codec.decode(payloads))
        except Denied as e:
            return error(e.status, e.detail)
        except _BadRequest as e:
            return error(400, str(e))
        except EncryptionError as e:
            return error(422, str(e))

    @app.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        """Encrypt payloads with the current key (the UI encodes what it sends)."""
        try:
            await identity_of(request)
            payloads = await body_payloads(request)
            return answer(await codec.encode(payloads))
        except Denied as e:
            return error(e.status, e.detail)
        except _BadRequest as e:
            return error(400, str(e))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Up, with the key ids in use (never the keys)."""
        return {
            "status": "ok",
            "keys": list(codec.keys.keys),
            "encrypting_with": codec.keys.current,
        }

    return app


def serve(
    *, host: str = "127.0.0.1", port: int = 8888, cors_origins: list[str] | None = None
) -> int:
    """Run the codec server with uvicorn until interrupted; exit code 2 without keys, with
    bad keys, or on a non-loopback host without authentication configured."""
    import uvicorn

    try:
        keys = EncryptionKeys.from_env()
        authenticator = Authenticator()
    except (KeyConfigError, ValueError) as e:
        print(f"tideflow codec-server: {e}", file=sys.stderr)
        return 2
    if keys is None:
        print(
            "tideflow codec-server: TIDEFLOW_ENCRYPTION_KEYS is not set: there is nothing to "
            "decode with (make a key with tideflow encryption-key)",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(host) and not authenticator.enabled():
        print(
            f"tideflow codec-server: refusing to listen on {host} without authentication "
            "(create a token with tideflow token create, or configure OIDC)",
            file=sys.stderr,
        )
        return 2
    app = create_codec_app(
        EncryptionCodec(keys), authenticator=authenticator, cors_origins=cors_origins
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
