"""``tideflow api``: the HTTP API (FastAPI; the OpenAPI schema is served at ``/openapi.json`` and
the interactive docs at ``/docs``).

Definitions are the YAML files of a folder (``--definitions``, ``TIDEFLOW_DEFINITIONS``, default
``examples/``), reloaded when they change. Runs are started, followed and operated through
:mod:`starter.client`; triggers (:mod:`starter.triggers`) run in the background. One Temporal
client is held for the app's lifetime; when Temporal cannot be reached, requests that need it
answer 503 and the API keeps serving the rest. docs/api.md documents every endpoint.

Errors share one shape, ``{"detail": "...", "problems": [...]}``: 422 for a definition problem
(``FILE:LINE:COL: message`` each) or an input problem (the field named), 404 for an unknown
definition or run, 409 for a request the run refuses, 415 for a document the trigger's filter
rejects, 503 when Temporal is unreachable.

The package: :mod:`~starter.api.app` builds the app, :mod:`~starter.api.runtime` holds what it
keeps for its lifetime, :mod:`~starter.api.errors` and :mod:`~starter.api.models` the bodies,
:mod:`~starter.api.starting` the one way routes start runs, and :mod:`starter.api.routers` one
router per resource.

Names are imported on first use: a parse worker imports :mod:`starter.api.parsing` and should
not pay for FastAPI and the routes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starter.api.app import create_app, serve
    from starter.api.errors import ApiError, ErrorOut, input_problems
    from starter.api.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_UPLOAD_BYTES, ApiLimits
    from starter.api.parsing import ParseLimits

_EXPORTS = {
    "create_app": "starter.api.app",
    "serve": "starter.api.app",
    "ApiError": "starter.api.errors",
    "ErrorOut": "starter.api.errors",
    "input_problems": "starter.api.errors",
    "DEFAULT_MAX_BODY_BYTES": "starter.api.limits",
    "DEFAULT_MAX_UPLOAD_BYTES": "starter.api.limits",
    "ApiLimits": "starter.api.limits",
    "ParseLimits": "starter.api.parsing",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'starter.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "ApiError",
    "ApiLimits",
    "ErrorOut",
    "ParseLimits",
    "create_app",
    "input_problems",
    "serve",
]
