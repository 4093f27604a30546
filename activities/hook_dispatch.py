"""The worker's side of extension hooks: a sink that queues the runs' events and a task that
calls the hooks, each bounded in time, without ever touching a run.

The workflow hands events to :mod:`interpreter.observers` sinks from workflow code (a workflow
task's thread): :meth:`HookDispatcher.sink` only copies the event onto the worker's event loop
and returns. :meth:`HookDispatcher.run` calls the hooks one event at a time, in order: a
coroutine hook on the loop, a plain function in a daemon thread of its own (a hook that hangs
holds that thread, never the loop, the other hooks or the worker's exit). A hook that raises or
outlives its timeout is logged and disabled on this worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from types import TracebackType
from typing import Any

from temporalio import workflow

from activities.hooks import HookEvent, RegisteredHook
from interpreter import observers

log = logging.getLogger("tideflow.hooks")

MAX_QUEUED = 10_000
"""Events waiting for slow hooks beyond this are dropped (and counted), never blocking runs."""

DRAIN_SECONDS = 5.0
"""How long a stopping worker still hands queued events to the hooks."""


class _HookThread:
    """A daemon thread that calls one plain-function hook, one event at a time."""

    def __init__(self, hook: RegisteredHook, loop: asyncio.AbstractEventLoop) -> None:
        self._hook = hook
        self._loop = loop
        self._calls: queue.SimpleQueue[tuple[HookEvent, asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(
            target=self._serve, name=f"tideflow-hook-{hook.name}", daemon=True
        )
        self._thread.start()

    def call(self, event: HookEvent) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        self._calls.put((event, future))
        return future

    def stop(self) -> None:
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            event, future = call
            try:
                self._hook.function(event)
            except BaseException as e:  # handed to the loop, which disables the hook
                self._settle(future, e)
            else:
                self._settle(future, None)

    def _settle(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        def settle() -> None:
            if future.done():  # timed out meanwhile
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            self._loop.call_soon_threadsafe(settle)


class HookDispatcher:
    """Calls the hooks of one worker with the events of the runs it executes.

    Use as an async context manager around the worker: entering adds the sink (before the
    worker starts, so runs know somebody listens), leaving removes it and gives the queued
    events :data:`DRAIN_SECONDS` to reach the hooks."""

    def __init__(
        self,
        hooks: list[RegisteredHook],
        *,
        task_queue: str | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        """``task_queue``: only the events of runs on this queue (several workers may share a
        process); None takes every run's."""
        self.hooks = list(hooks)
        self.task_queue = task_queue
        self.max_queued = max_queued
        self.disabled: dict[str, str] = {}
        """Hook name → why it was disabled."""
        self.dropped = 0
        """Events dropped because the queue was full."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[HookEvent] | None = None
        self._waiting = 0
        self._threads: dict[int, _HookThread] = {}
        self._task: asyncio.Task[None] | None = None

    # -- the sink: workflow code, any thread ------------------------------------------------

    def sink(self, event: str, data: dict[str, Any]) -> None:
        """Queue an event for the hooks (quick; never blocks, never raises)."""
        loop, waiting = self._loop, self._queue
        if loop is None or waiting is None:
            return
        task_queue = _current_task_queue()
        if self.task_queue is not None and task_queue not in (None, self.task_queue):
            return
        if self._waiting >= self.max_queued:
            self.dropped += 1
            return
        self._waiting += 1
        item = HookEvent.of(event, {**data, "task_queue": task_queue})
        try:
            loop.call_soon_threadsafe(waiting.put_nowait, item)
        except RuntimeError:  # the loop has closed
            self._waiting -= 1

    # -- the task: the worker's event loop ----------------------------------------------------

    async def run(self) -> None:
        """Hand queued events to the hooks until cancelled."""
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                await self._dispatch(event)
            finally:
                self._waiting -= 1
                self._queue.task_done()

    async def _dispatch(self, event: HookEvent) -> None:
        for hook in self.hooks:
            if event.event in hook.events and hook.name not in self.disabled:
                await self._call(hook, event)

    async def _call(self, hook: RegisteredHook, event: HookEvent) -> None:
        try:
            if hook.is_async:
                result: Any = hook.function(event)
                await asyncio.wait_for(result, hook.timeout)
            else:
                await asyncio.wait_for(self._thread(hook).call(event), hook.timeout)
        except TimeoutError:
            self._disable(hook, f"did not return within {hook.timeout:g} s on {event.event}")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._disable(hook, f"raised {type(e).__name__}: {e} on {event.event}")

    def _thread(self, hook: RegisteredHook) -> _HookThread:
        thread = self._threads.get(id(hook))
        if thread is None:
            assert self._loop is not None
            thread = self._threads[id(hook)] = _HookThread(hook, self._loop)
        return thread

    def _disable(self, hook: RegisteredHook, why: str) -> None:
        self.disabled[hook.name] = why
        log.error("hook %s %s: disabled on this worker (runs are not affected)", hook.name, why)

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> HookDispatcher:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self.run(), name="tideflow-hooks")
        if self.hooks:
            observers.add_sink(self.sink)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        observers.remove_sink(self.sink)
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for thread in self._threads.values():
            thread.stop()
        self._loop = None
        if self.dropped:
            log.warning("hooks: %d event(s) dropped while the hooks lagged behind", self.dropped)


def _current_task_queue() -> str | None:
    """The task queue of the workflow calling the sink (None outside a workflow)."""
    try:
        return workflow.info().task_queue
    except Exception:
        return None
