"""The durable start outbox: every start Tideflow accepts (the HTTP API's starts, uploads and
events, document triggers, ``tideflow start --queue``) is written to the control-plane store
first, then handed to Temporal, in order and exactly once, also when Temporal was unreachable
when it was accepted or the process died in between.

- :mod:`~starter.outbox.records`: the table and its entries (``pending`` → ``delivered`` or
  ``failed``; ``waiting`` for a run slot).
- :mod:`~starter.outbox.starts`: what a start keeps (compiled when accepted) and how it is
  delivered exactly once (the entry's id travels in the run's memo).
- :mod:`~starter.outbox.delivery`: the :class:`Deliverer` and its passes, per-definition
  concurrency limits (``concurrency.max_runs``).
- :mod:`~starter.outbox.accepting`: :class:`StartOutbox`, what callers accept starts through.
- :mod:`~starter.outbox.alerts`: the backlog's bounds and the alert past them.
"""

from __future__ import annotations

from starter.outbox.accepting import Accepted, EventAccepted, StartOutbox
from starter.outbox.alerts import BacklogAlerts, BacklogState, backlog_state
from starter.outbox.delivery import Deliverer, PassResult
from starter.outbox.records import Backlog, Entry, NewEntry, Outbox
from starter.outbox.starts import Delivered, EventRecord, Refused, StartRecord

__all__ = [
    "Accepted",
    "Backlog",
    "BacklogAlerts",
    "BacklogState",
    "Delivered",
    "Deliverer",
    "Entry",
    "EventAccepted",
    "EventRecord",
    "NewEntry",
    "Outbox",
    "PassResult",
    "Refused",
    "StartOutbox",
    "StartRecord",
    "backlog_state",
]
