"""The one place where the definition lifecycle's actions (redrive, deploy, rollback, undeploy)
meet the audit trail.

The audit trail itself (``starter/audit.py``) comes with the security work; until then
:func:`record_lifecycle_action` records nothing. Every lifecycle action calls it once, after the
action succeeded, so wiring the trail in is a change to this function alone.
"""

from __future__ import annotations

from typing import Any, Literal

LifecycleAction = Literal["redrive", "deploy", "rollback", "undeploy"]


def record_lifecycle_action(
    action: LifecycleAction, subject: str, *, by: str | None, details: dict[str, Any]
) -> None:
    """Record that ``by`` did ``action`` to ``subject`` (a workflow id for a redrive, a
    definition name for the registry's actions), with what was done in ``details``.

    Does nothing yet: the audit trail (``starter/audit.py``) is not there to call."""
    del action, subject, by, details
