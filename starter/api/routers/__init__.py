"""One router per resource of the HTTP API; :mod:`starter.api.app` includes them all."""

from __future__ import annotations

from fastapi import APIRouter

from starter.api.routers import (
    audit,
    budget,
    control,
    definitions,
    events,
    health,
    outbox,
    redrive,
    registry,
    runs,
    stats,
    tokens,
    ui,
    uploads,
)

ALL: tuple[APIRouter, ...] = (
    health.router,
    definitions.router,
    registry.router,
    runs.router,
    uploads.router,
    control.router,
    redrive.router,
    budget.router,
    events.router,
    stats.router,
    audit.router,
    tokens.router,
    ui.router,
    ui.pages,
    outbox.router,
)
"""Every router, in the order the OpenAPI document lists them."""
