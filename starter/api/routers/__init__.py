"""One router per resource of the HTTP API; :mod:`starter.api.app` includes them all."""

from __future__ import annotations

from fastapi import APIRouter

from starter.api.routers import (
    audit,
    control,
    definitions,
    events,
    health,
    runs,
    tokens,
    uploads,
)

ALL: tuple[APIRouter, ...] = (
    health.router,
    definitions.router,
    runs.router,
    uploads.router,
    control.router,
    events.router,
    audit.router,
    tokens.router,
)
"""Every router, in the order the OpenAPI document lists them."""
