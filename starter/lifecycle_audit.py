"""The one place where the definition lifecycle's actions (redrive, deploy, rollback, undeploy)
meet the audit trail (:mod:`starter.audit`).

Every lifecycle action calls :func:`record_lifecycle_action` once, after the action succeeded.
"""

from __future__ import annotations

from typing import Any, Literal

from starter import audit

LifecycleAction = Literal["redrive", "deploy", "rollback", "undeploy"]


def record_lifecycle_action(
    action: LifecycleAction, subject: str, *, by: str | None, details: dict[str, Any]
) -> None:
    """Record in the audit trail that ``by`` did ``action`` to ``subject`` (a workflow id for a
    redrive, a definition name for the registry's actions), with what was done in ``details``
    (names and ids, never values). Never raises (see :func:`starter.audit.record`)."""
    detail = ", ".join(
        f"{key}={','.join(map(str, value)) if isinstance(value, list | tuple) else value}"
        for key, value in details.items()
        if value not in (None, "", [], ())
    )
    definition = subject if action != "redrive" else None
    audit.record(action, subject, user=by, detail=detail or None, definition=definition)
