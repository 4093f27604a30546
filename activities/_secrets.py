"""``${{ secrets.NAME }}`` in a node's config: resolved on the worker, never in history.

The workflow leaves secret references as text (they are not evaluated there, so no secret
reaches Temporal's history); the activity wrapper replaces them with the worker's environment
variable ``TIDEFLOW_SECRET_<NAME>`` just before the node runs. Only that prefix is readable, so a
workflow author cannot read the worker's other variables (cloud credentials, say).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from activities.errors import NodeConfigError

SECRET_PREFIX = "TIDEFLOW_SECRET_"
_SECRET = re.compile(r"\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def resolve_secrets(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of ``value`` with every secret reference replaced by its value."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        if "secrets." not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            try:
                return env[SECRET_PREFIX + name]
            except KeyError:
                raise NodeConfigError(
                    f"secret {name!r} is not set on this worker "
                    f"(set the environment variable {SECRET_PREFIX}{name})"
                ) from None

        return _SECRET.sub(lookup, value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, env) for v in value]
    return value
