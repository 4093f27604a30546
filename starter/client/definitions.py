"""Definitions as the client sends them: loading and validating files, a run's workflow input,
and what a run of a definition is started with (id, search attributes, title)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from temporalio.api.common.v1 import Payload
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.converter import DataConverter

import activities
from interpreter import Definition, Problem, load_file, problems_in_file
from interpreter.control import RunInput
from interpreter.inputs import resolve_inputs
from interpreter.model import RetrySpec
from interpreter.plan import compile_plan
from interpreter.workflow import DEFINITION_KEY, VERSION_KEY


def load(path: str | Path) -> Definition:
    """Load and validate a definition file against every registered node type."""
    activities.load_extensions()
    return load_file(path, activities.registry)


def validate(paths: Sequence[str | Path]) -> list[Problem]:
    """Every problem of every file (empty when all are valid)."""
    activities.load_extensions()
    problems: list[Problem] = []
    for path in paths:
        problems.extend(problems_in_file(path, activities.registry))
    return problems


def run_input(
    definition: Definition,
    inputs: dict[str, Any] | None = None,
    *,
    history_limit: int | None = None,
    origin: str | None = None,
    default_retry: RetrySpec | None = None,
) -> RunInput:
    """The workflow input of a run: the definition's compiled plan plus checked inputs, and
    where the run comes from (``origin``: ``api``, ``cli``, ``trigger``…; its nodes see it).

    ``default_retry`` (the engine configuration's ``default_retry``, seed 003's
    ``error_handling``) is the retry of nodes when the definition sets no default of its own;
    the plan records it, so the run keeps it whatever the configuration becomes.
    Raises :class:`~interpreter.inputs.InputError` naming each bad field before anything runs.
    """
    resolve_inputs(definition, inputs or {})
    plan = compile_plan(with_default_retry(definition, default_retry), activities.registry)
    return RunInput(
        plan=plan, inputs=dict(inputs or {}), history_limit=history_limit, origin=origin
    )


def with_default_retry(definition: Definition, retry: RetrySpec | None) -> Definition:
    """``definition`` with ``retry`` as its default retry, unless it sets one (``defaults.retry``
    or ``error_handling.retry``) or ``retry`` is None."""
    if retry is None or definition.defaults.retry or definition.error_handling.retry:
        return definition
    defaults = definition.defaults.model_copy(update={"retry": retry})
    return definition.model_copy(update={"defaults": defaults})


def definition_json(definition: Definition) -> dict[str, Any]:
    """The definition as the JSON object the workflow takes."""
    return definition.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


def new_workflow_id(definition: Definition) -> str:
    """``<slug>-<random>``."""
    return f"{definition.slug}-{secrets.token_hex(4)}"


def search_attributes(definition: Definition) -> TypedSearchAttributes:
    """The search attributes a run of ``definition`` starts with."""
    return _run_attributes(definition.slug, definition.display_version)


def _run_attributes(slug: str, version: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(DEFINITION_KEY, slug), SearchAttributePair(VERSION_KEY, version)]
    )


def static_summary(definition: Definition) -> str:
    """How a run of ``definition`` is titled in the Web UI: name and version."""
    return f"{definition.display_name} {definition.display_version}".strip()


def plain_payload(text: str) -> Payload:
    """``text`` as a plain JSON payload, which no payload codec touches: a run's title (static
    summary) passed so stays readable in the Web UI when payloads are encrypted (the SDK takes
    a Payload where it takes the text)."""
    return DataConverter.default.payload_converter.to_payloads([text])[0]


def task_priority(key: int | None) -> Priority:
    """Temporal's priority for a run's ``priority`` (1 first … 5 last; None: the default, 3).
    Activities inherit their workflow's priority, so a run's nodes are ordered too."""
    return Priority(priority_key=key) if key else Priority.default


def start_options(
    *, slug: str, version: str, summary: str, details: str | None, priority: int | None
) -> dict[str, Any]:
    """The options of ``start_workflow`` every run gets, whoever starts it (the client, the
    outbox's deliverer): its definition and version as search attributes, its title and
    description in the Web UI — pre-encoded, so that no payload codec (encryption) hides them
    (the SDK takes a Payload where it takes the text) — and its task priority."""
    return {
        "search_attributes": _run_attributes(slug, version),
        "static_summary": cast(str, plain_payload(summary)),
        "static_details": cast(str, plain_payload(details)) if details else None,
        "priority": task_priority(priority),
    }
