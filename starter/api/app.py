"""The app factory: one FastAPI app over a definitions folder, its routers, error handlers and
lifespan (the Temporal connection and the trigger loop)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path

from fastapi import Depends, FastAPI
from temporalio.client import Client

from activities import WorkerSettings
from starter._catalog import Catalog, definitions_dir
from starter.api import routers
from starter.api.errors import TemporalUnavailable, install_error_handlers
from starter.api.limits import ApiLimits, install_body_limit
from starter.api.parsing import DefinitionParser
from starter.api.permissions import document_permissions, guard
from starter.api.routers.docs import install_docs
from starter.api.runtime import TRIGGERS_USER, Runtime, TemporalConnection
from starter.auth import Authenticator, is_loopback
from starter.client import TideflowClient
from starter.outbox import BacklogAlerts, Deliverer, Outbox, StartOutbox
from starter.triggers import TriggerRunner, new_catalog

log = logging.getLogger("tideflow.api")


def create_app(
    definitions: str | Path | None = None,
    *,
    client: TideflowClient | Client | None = None,
    settings: WorkerSettings | None = None,
    triggers: bool = True,
    poll_seconds: float = 2.0,
    max_upload_bytes: int | None = None,
    limits: ApiLimits | None = None,
    warm_parser: bool = False,
    authenticator: Authenticator | None = None,
    catalog: Catalog | None = None,
) -> FastAPI:
    """The API over a definitions folder (or ``catalog``: the registry's deployed definitions);
    ``client`` is used when given (a Temporal client is wrapped), else one is connected from
    ``TEMPORAL_ADDRESS`` on first need. ``triggers`` runs the trigger loop too.
    ``limits`` default to :meth:`ApiLimits.from_env` (``max_upload_bytes`` overrides theirs).
    ``warm_parser`` starts a parse worker at startup (:func:`serve` does), so the first posted
    definition does not wait for one to import the node types.
    ``authenticator`` checks credentials (default: tokens of the store, OIDC from
    ``TIDEFLOW_OIDC_*``; see :mod:`starter.auth` and :mod:`starter.api.permissions`)."""
    settings = settings or WorkerSettings.from_env()
    limits = limits or ApiLimits.from_env()
    if max_upload_bytes is not None:
        limits = replace(limits, max_upload_bytes=max_upload_bytes)
    if isinstance(client, Client):
        client = TideflowClient(
            client,
            user=TRIGGERS_USER,
            task_queue=settings.task_queue,
            origin="trigger",
            default_retry=settings.default_retry,
        )
    connection = TemporalConnection(client, settings)
    outbox = Outbox.of(settings)
    alerts = BacklogAlerts(outbox, settings)
    deliverer = Deliverer(outbox, connection.get, alerts=alerts)
    runtime = Runtime(
        catalog=catalog or new_catalog(definitions_dir(definitions)),
        settings=settings,
        client=connection,
        limits=limits,
        parser=DefinitionParser(limits.parse),
        outbox=StartOutbox(outbox, deliverer, settings),
        alerts=alerts,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.client.get()
        except TemporalUnavailable as e:
            log.warning("%s (requests that need it answer 503 until it is back)", e.detail)
        warming = asyncio.create_task(
            runtime.parser.warm() if warm_parser else asyncio.sleep(0), name="tideflow-api-parser"
        )
        stop = asyncio.Event()
        # Starts accepted before a crash, or while Temporal was down, are delivered first.
        tasks = [asyncio.create_task(deliverer.run(stop), name="tideflow-outbox")]
        if triggers:
            runner = TriggerRunner(
                runtime.catalog,
                runtime.client.get,
                settings=settings,
                poll_seconds=poll_seconds,
                start=runtime.outbox.start_once,
            )
            tasks.append(asyncio.create_task(runner.run(stop), name="tideflow-triggers"))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            runtime.parser.close()
            await warming  # returns at once: close() ended the worker it was starting

    app = FastAPI(
        title="Tideflow",
        version="1",
        summary="Durable YAML workflows on Temporal: start, follow and operate runs.",
        lifespan=lifespan,
        docs_url=None,  # served by routers.docs with local assets, not FastAPI's CDN ones
        redoc_url=None,
        # Every route: authenticate, then check the permission starter.api.permissions declares.
        dependencies=[Depends(guard)],
    )
    app.state.tideflow = runtime
    app.state.tideflow_auth = authenticator or Authenticator()
    install_error_handlers(app)
    install_body_limit(app, limits)
    for router in routers.ALL:
        app.include_router(router)
    install_docs(app)
    document_permissions(app)
    return app


def serve(
    definitions: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    triggers: bool = True,
    poll_seconds: float = 2.0,
    catalog: Catalog | None = None,
) -> None:
    """Run the API with uvicorn until interrupted (a bad ``TIDEFLOW_API_*`` value is one line on
    stderr and exit code 2). Without authentication configured (a token in the store, OIDC,
    ``TIDEFLOW_API_AUTH=required``) it listens on the loopback interface only: any other
    ``host`` is refused."""
    import uvicorn

    from activities.encryption import EncryptionKeys

    try:
        limits = ApiLimits.from_env()
        authenticator = Authenticator()
        EncryptionKeys.from_env()  # a malformed key list stops here, not at the first request
    except ValueError as e:
        print(f"tideflow api: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    refusal = listen_refusal(host, authenticator)
    if refusal:
        print(f"tideflow api: {refusal}", file=sys.stderr)
        raise SystemExit(2)
    app = create_app(
        definitions,
        triggers=triggers,
        poll_seconds=poll_seconds,
        limits=limits,
        warm_parser=True,
        authenticator=authenticator,
        catalog=catalog,
    )
    uvicorn.run(app, host=host, port=port, log_level="info")


def listen_refusal(host: str, authenticator: Authenticator) -> str | None:
    """Why the API may not listen on ``host`` (None when it may): anywhere but the loopback
    interface needs authentication configured."""
    if is_loopback(host) or authenticator.enabled():
        return None
    return (
        f"refusing to listen on {host}: no authentication is configured, so anybody reaching "
        "the API could start runs. Create a token first (tideflow token create NAME --role "
        "admin), or configure OIDC (TIDEFLOW_OIDC_ISSUER), or listen on 127.0.0.1"
    )
