"""The typed Python API of Tideflow: load and validate definitions, start and follow runs,
operate them. The CLI, the HTTP API and the triggers all go through it.

    from starter.client import TideflowClient, load

    definition = load("examples/invoice-processing.yaml")
    client = await TideflowClient.connect()
    run = await client.start(definition, {"document": "invoice.pdf"})
    await run.pause()
    report = await run.report()

:class:`TideflowClient` starts runs and hands out :class:`RunHandle`\\ s (shaped like
Temporal's ``Client`` and ``WorkflowHandle``). The module-level functions taking a Temporal
client (``start``, ``result``, ``pause``…) are the first API, kept as thin wrappers.

The package: :mod:`~starter.client.tideflow_client` (the client),
:mod:`~starter.client.handle` (a run), :mod:`~starter.client.connection` (connecting, who
acts), :mod:`~starter.client.definitions` (loading definitions, a run's input),
:mod:`~starter.client.listing` (finding runs), :mod:`~starter.client.events` (events),
:mod:`~starter.client.redrive` (running ended runs again from their last checkpoint),
:mod:`~starter.client.web_ui` (links), :mod:`~starter.client.legacy` (the first API).
"""

from __future__ import annotations

from interpreter import DefinitionError
from interpreter.inputs import InputError
from starter.client.connection import (
    DEFAULT_ADDRESS,
    ConnectionConfigError,
    acting_roles,
    acting_user,
    connect,
    connect_config,
    data_converter,
    default_identity,
    with_identity,
)
from starter.client.definitions import (
    definition_json,
    load,
    new_workflow_id,
    run_input,
    search_attributes,
    static_summary,
    validate,
)
from starter.client.errors import ControlError
from starter.client.events import EventDelivery
from starter.client.handle import RunHandle, report_from_failure
from starter.client.legacy import (
    approve,
    cancel,
    deliver_event,
    emit,
    emit_event,
    fail,
    has_workers,
    pause,
    poller_identities,
    result,
    resume,
    retry,
    run,
    set_vars,
    skip,
    start,
    status,
)
from starter.client.listing import RunSummary, list_runs, visibility_query
from starter.client.redrive import RedriveCandidate, RedriveError, RedrivePlan
from starter.client.tideflow_client import TideflowClient
from starter.client.web_ui import web_ui_base, web_ui_url

__all__ = [
    "DEFAULT_ADDRESS",
    "ConnectionConfigError",
    "ControlError",
    "DefinitionError",
    "EventDelivery",
    "InputError",
    "RedriveCandidate",
    "RedriveError",
    "RedrivePlan",
    "RunHandle",
    "RunSummary",
    "TideflowClient",
    "acting_roles",
    "acting_user",
    "approve",
    "cancel",
    "connect",
    "connect_config",
    "data_converter",
    "default_identity",
    "definition_json",
    "deliver_event",
    "emit",
    "emit_event",
    "fail",
    "has_workers",
    "list_runs",
    "load",
    "new_workflow_id",
    "pause",
    "poller_identities",
    "report_from_failure",
    "result",
    "resume",
    "retry",
    "run",
    "run_input",
    "search_attributes",
    "set_vars",
    "skip",
    "start",
    "static_summary",
    "status",
    "validate",
    "visibility_query",
    "web_ui_base",
    "web_ui_url",
    "with_identity",
]
