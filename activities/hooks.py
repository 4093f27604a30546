"""Extension hooks: code an installed extension runs on the worker when a run starts, a node
starts, a node ends and a run ends (seed 003's ``custom_logger``).

An extension is a distribution declaring a setup function in the ``tideflow.extensions``
entry-point group; the worker configuration's ``extensions:`` list loads it by that name::

    # pyproject.toml of the extension
    [project.entry-points."tideflow.extensions"]
    custom_logger = "tideflow_custom_logger:setup"

    # tideflow_custom_logger/__init__.py
    def setup(hooks: Hooks) -> None:
        @hooks.on("run_started", "node_ended")
        def log(event: HookEvent) -> None:
            ...

Hooks receive a :class:`HookEvent` (ids, definition, node, status, attempts, error, time:
never inputs, outputs or secrets) and their answer is ignored: they observe runs, they cannot
change their course. They run on the worker's event loop (``async def``) or in a thread of their
own (plain functions), one event after another in the order the runs produced them, each call
bounded by the extension's ``timeout_seconds``. A hook that raises or times out is logged and
disabled on that worker; the run goes on (:mod:`activities.hook_dispatch`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from activities.settings import ExtensionSettings, WorkerSettings

ENTRY_POINT_GROUP = "tideflow.extensions"
"""Where extensions declare their setup function."""

EVENTS = ("run_started", "node_started", "node_ended", "run_ended")
"""The events hooks may listen to, in the order a run produces them."""


@dataclass(frozen=True)
class HookEvent:
    """What happened, as a hook sees it."""

    event: str
    """``run_started``, ``node_started``, ``node_ended`` or ``run_ended``."""
    workflow_id: str
    run_id: str
    definition: str | None = None
    """The definition's name."""
    version: str | None = None
    slug: str | None = None
    node: str | None = None
    """The node's id (node events only)."""
    type: str | None = None
    """The node's type (node events only)."""
    status: str | None = None
    """The node's or run's status after the event."""
    attempts: int | None = None
    error: str | None = None
    at: str | None = None
    """When it happened, ISO 8601 (the workflow's clock)."""
    task_queue: str | None = None
    """The task queue of the run's worker."""

    @classmethod
    def of(cls, event: str, data: Mapping[str, Any]) -> HookEvent:
        """The event from the workflow's data (unknown keys are left out)."""
        known: dict[str, Any] = {
            name: data.get(name) for name in cls.__dataclass_fields__ if name != "event"
        }
        known["workflow_id"] = str(known.get("workflow_id") or "")
        known["run_id"] = str(known.get("run_id") or "")
        return cls(event=event, **known)

    def as_dict(self) -> dict[str, Any]:
        """The event as plain JSON-able data, without empty fields."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


Hook = Callable[[HookEvent], Awaitable[None] | None]
"""A hook: a function (or coroutine function) of one event."""


@dataclass
class RegisteredHook:
    """One hook of one extension, and the events it listens to."""

    extension: str
    function: Hook
    events: frozenset[str]
    timeout: float

    @property
    def name(self) -> str:
        """``extension:function`` for logs."""
        return f"{self.extension}:{getattr(self.function, '__name__', 'hook')}"

    @property
    def is_async(self) -> bool:
        """Whether the hook is a coroutine function (awaited on the event loop)."""
        return inspect.iscoroutinefunction(self.function)


@dataclass
class Hooks:
    """What an extension's setup function registers its hooks on."""

    extension: str
    options: Mapping[str, Any] = field(default_factory=dict)
    """The ``options:`` of the extension's entry in the worker configuration."""
    settings: WorkerSettings | None = None
    """The worker's settings (``home`` is where an extension may keep its files)."""
    timeout: float = 5.0
    registered: list[RegisteredHook] = field(default_factory=list)

    def on(self, *events: str) -> Callable[[Hook], Hook]:
        """Decorator: call the function on each of ``events`` (every event when none given)."""
        wanted = frozenset(events or EVENTS)
        unknown = sorted(wanted - set(EVENTS))
        if unknown:
            raise ValueError(
                f"extension {self.extension}: unknown hook event {unknown[0]!r} "
                f"(events: {', '.join(EVENTS)})"
            )

        def register(function: Hook) -> Hook:
            self.registered.append(RegisteredHook(self.extension, function, wanted, self.timeout))
            return function

        return register

    def add(self, function: Hook, events: Iterable[str] = EVENTS) -> None:
        """Call ``function`` on each of ``events``."""
        self.on(*events)(function)


class ExtensionError(ValueError):
    """An extension the configuration names cannot be loaded."""


def load_hooks(settings: WorkerSettings) -> list[RegisteredHook]:
    """Load every enabled extension of ``settings.extensions`` by entry-point name and return
    the hooks they registered. Raises :class:`ExtensionError` (located in the configuration
    file) for an extension that is not installed or whose setup fails."""
    installed = {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}
    hooks: list[RegisteredHook] = []
    for extension in settings.extensions:
        if not extension.enabled:
            continue
        entry = installed.get(extension.name)
        if entry is None:
            raise ExtensionError(_not_installed(extension, installed))
        hooks.extend(_setup(entry, extension, settings))
    return hooks


def _setup(
    entry: EntryPoint, extension: ExtensionSettings, settings: WorkerSettings
) -> list[RegisteredHook]:
    where = f"{extension.where}: " if extension.where else ""
    try:
        setup = entry.load()
        if not callable(setup):  # a module: its setup function
            setup = setup.setup
        hooks = Hooks(
            extension.name,
            options=dict(extension.options),
            settings=settings,
            timeout=extension.timeout_seconds,
        )
        setup(hooks)
    except Exception as e:
        raise ExtensionError(
            f"{where}extension {extension.name!r} ({entry.value}) failed to set up: "
            f"{type(e).__name__}: {e}"
        ) from e
    return hooks.registered


def _not_installed(extension: ExtensionSettings, installed: Mapping[str, EntryPoint]) -> str:
    where = f"{extension.where}: " if extension.where else ""
    close = difflib.get_close_matches(extension.name, list(installed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(sorted(installed)) or "none"
    return (
        f"{where}extension {extension.name!r} is not installed{hint}: no {ENTRY_POINT_GROUP} "
        f"entry point of that name (installed: {names})"
    )
