"""Large values inside a run: references, not data.

A node output bigger than the worker's reference threshold (1 MiB by default) never enters the
workflow: the activity stores its large parts in the payload store and returns references in
their place, ``{"$tideflow_ref": "sha256:…", "bytes": N, "type": "string"}``. The workflow
passes references on as they are — to the next node's config and scope, to the report — and
the activities that receive them read the values back before the node runs. So a run's
workflow tasks only ever hold and serialise small values, whatever its documents weigh
(a 300 MiB document no longer trips Temporal's deadlock detector).

An expression cannot look inside a reference — the value is not in the workflow. A plain path
that ends on one hands it on (``${{ nodes.parse.output.text }}`` as a node's config); a path
that goes through one, or CEL that reads a node holding one, fails with a clear error.
"""

from __future__ import annotations

from typing import Any

REF_KEY = "$tideflow_ref"
"""The key that marks a reference."""

SCOPE_MARK = "$tideflow_refs"
"""A scope key naming the nodes whose outputs hold references (set by the run's core)."""


def is_ref(value: Any) -> bool:
    """Whether ``value`` is a reference to a stored value."""
    return isinstance(value, dict) and REF_KEY in value


def ref_size(value: dict[str, Any]) -> int:
    """How many bytes the referenced value has (as JSON)."""
    size = value.get("bytes")
    return size if isinstance(size, int) else 0


def has_refs(value: Any) -> bool:
    """Whether a value holds a reference anywhere."""
    if isinstance(value, dict):
        return REF_KEY in value or any(has_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_refs(v) for v in value)
    return False
