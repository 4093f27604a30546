"""Definitions posted to the API are parsed and validated in worker processes, never on the
API's event loop.

A pathological definition (a YAML alias bomb, a parser that recurses without end, an expression
that crashes a native parser) costs one worker process, never the API: each parse is bounded by
a wall-clock timeout (the worker is killed and replaced; the request is answered 422 "the
definition took too long to parse") and by an address-space limit, and a worker that dies is
answered 422 too. A thread could not be bounded this way: a thread cannot be killed.

Workers are fresh interpreters talking over a socket; they import the node types the API has
registered and are kept for the next parse. The definition's size (its number of nodes) is
bounded before it is validated.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import activities
from interpreter import Definition, DefinitionError, Problem
from interpreter.loader import from_data, parse_yaml
from interpreter.validate import check

log = logging.getLogger("tideflow.api")

GRAPH_KEYS = ("tasks", "steps", "nodes")
"""The keys holding a definition's nodes, whatever its spelling."""

Source = str | dict[str, Any]
"""YAML text or an already-parsed JSON object."""

Outcome = tuple[Definition | None, list[Problem]]
"""What a parse gives: the definition (None when broken) and every problem found."""

ParseFunction = Callable[[Source, str, int], Outcome]
"""Runs in a worker: ``(source, file name, max nodes) -> outcome``."""

PARSE_FUNCTION = "starter.api.parsing:parse_definition"
"""The :data:`ParseFunction` a worker runs, as ``module:name`` (tests name another)."""

_READY = "ready"
_START_TIMEOUT = 120.0  # a spawned worker imports the node types: ~1.5 s here, more under load


@dataclass(frozen=True)
class ParseLimits:
    """How much a posted definition may cost before it is refused."""

    timeout_seconds: float = 10.0
    """Wall-clock time of one parse and validation (422 beyond)."""
    memory_bytes: int = 1024 * 1024 * 1024
    """Address space of a worker process (0: unlimited)."""
    max_nodes: int = 10_000
    """Nodes of one definition, counted before validation (422 beyond)."""
    workers: int = 2
    """Parses that may run at once (more wait for a free worker)."""


def parse_definition(source: Source, file: str, max_nodes: int) -> Outcome:
    """Parse and validate one definition (in a worker): its nodes are counted first, and an
    error of the parser itself becomes a problem of the definition, never an exception."""
    try:
        document = parse_yaml(source, file) if isinstance(source, str) else from_data(source, file)
        if not document.problems:
            count, where = _count_nodes(document.data)
            if count > max_nodes:
                message = f"the definition has {count} nodes: at most {max_nodes} are accepted"
                return None, [document.problem(where, message, key=True)]
        return check(document, activities.registry)
    except MemoryError:
        return None, [Problem(file, 1, 1, "the definition needs too much memory to parse")]
    except RecursionError:
        return None, [Problem(file, 1, 1, "the definition is nested too deeply to parse")]
    except Exception as e:  # a bug of the parser must not cost the request its answer
        message = f"the definition could not be parsed: {type(e).__name__}: {e}"
        return None, [Problem(file, 1, 1, message[:500])]


def _count_nodes(data: Any) -> tuple[int, tuple[str | int, ...]]:
    """The nodes of a definition and of the definitions inlined in its nodes, and where the
    top-level graph is (the problem's location). Walks without recursion and visits a shared
    value once, so aliases that point back to their parents cannot make it loop."""
    count = 0
    where: tuple[str | int, ...] = ()
    seen: set[int] = set()
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while todo:
        value, path = todo.pop()
        if not isinstance(value, dict) or id(value) in seen:
            continue
        seen.add(id(value))
        for key in GRAPH_KEYS:
            nodes = value.get(key)
            if not isinstance(nodes, list):
                continue
            count += len(nodes)
            where = where or (*path, key)
            for index, node in enumerate(nodes):
                config = node.get("config") if isinstance(node, dict) else None
                if isinstance(config, dict) and isinstance(config.get("definition"), dict):
                    todo.append((config["definition"], (*path, key, index, "config", "definition")))
    return count, where


def serve_worker() -> None:
    """A worker's main (``python -c``): ``argv`` names its socket, memory limit and parse
    function. Import, say ready, then answer one parse at a time until the API closes the
    socket."""
    fd, memory_bytes, parse_name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    conn = Connection(fd)
    module, _, name = parse_name.partition(":")
    parse: ParseFunction = getattr(importlib.import_module(module), name)
    activities.load_extensions()
    if memory_bytes > 0:
        with contextlib.suppress(ValueError, OSError):  # a limit above the hard one
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    conn.send(_READY)
    while True:
        try:
            modules, source, file, max_nodes = conn.recv()
        except (EOFError, OSError):
            return
        _import_node_types(modules)
        outcome = parse(source, file, max_nodes)
        try:
            conn.send(outcome)
        except (EOFError, OSError):
            return
        except Exception as e:  # an outcome that does not pickle
            conn.send((None, [Problem(file, 1, 1, f"the definition could not be parsed: {e}")]))


def _import_node_types(modules: list[str]) -> None:
    """Import the modules that registered node types in the API, so the worker validates
    against the same types (a module the worker cannot import is left out)."""
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _Worker:
    """One parse worker process and the API's end of its socket."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    def launch(cls, memory_bytes: int, parse: str) -> _Worker:
        """Start a worker process (it is ready once :meth:`wait_ready` returns). A fresh
        interpreter, not ``multiprocessing``: the API process holds threads (``fork`` would copy
        them in an unknown state) and ``spawn`` would run the API's ``__main__`` again."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # where the API imports
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from starter.api.parsing import serve_worker; serve_worker()",
                    str(theirs.fileno()),
                    str(memory_bytes),
                    parse,
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as e:
            ours.close()
            raise _Died(f"the parse worker did not start: {e}") from None
        finally:
            theirs.close()
        return cls(process, Connection(ours.detach()))

    def wait_ready(self) -> None:
        """Wait until the worker has imported everything (blocking: run in a thread)."""
        try:
            if not self.conn.poll(_START_TIMEOUT) or self.conn.recv() != _READY:
                raise _Died("the parse worker did not start in time")
        except (EOFError, OSError):
            self.kill()
            raise _Died(f"the parse worker did not start ({_death(self.process.poll())})") from None
        except _Died:
            self.kill()
            raise

    def call(self, request: tuple[Any, ...], timeout: float) -> Outcome:
        """Send one parse and wait for its outcome (blocking: run in a thread)."""
        try:
            self.conn.send(request)
            if not self.conn.poll(timeout):
                raise _Timeout
            outcome: Outcome = self.conn.recv()
        except (EOFError, OSError) as e:
            raise _Died(str(e)) from None
        return outcome

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def exit_reason(self) -> str:
        """How the process ended (it closes its socket a moment before its exit is known)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)
        return _death(self.process.poll())

    def kill(self) -> None:
        """End the process at once (it may be stuck in native code: no polite way out)."""
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(5)
        with contextlib.suppress(Exception):
            self.conn.close()


class DefinitionParser:
    """Parses posted definitions in worker processes, each parse bounded by :class:`ParseLimits`.

    Raises :class:`~interpreter.DefinitionError` (located problems, answered 422) for a
    definition that is invalid, too big, too slow to parse or that kills its worker.
    """

    def __init__(self, limits: ParseLimits | None = None, *, parse: str = PARSE_FUNCTION) -> None:
        self.limits = limits or ParseLimits()
        self._parse = parse
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting: set[_Worker] = set()
        self._slots = asyncio.Semaphore(max(1, self.limits.workers))
        self._generation = 0  # bumped by close(): a worker started before is not kept

    async def warm(self) -> None:
        """Start one worker ahead of the first request (its imports take a moment)."""
        if self._idle or self._busy or self._starting:
            return
        generation = self._generation
        try:
            worker = await self._start()
        except _Died as e:
            if generation == self._generation:
                log.warning("%s", e)
            return
        self._idle.append(worker)

    async def _start(self) -> _Worker:
        generation = self._generation
        worker = await asyncio.to_thread(_Worker.launch, self.limits.memory_bytes, self._parse)
        self._starting.add(worker)
        try:
            if generation == self._generation:
                await asyncio.to_thread(worker.wait_ready)
        finally:
            self._starting.discard(worker)
        if generation != self._generation:  # closed meanwhile (the API is stopping)
            worker.kill()
            raise _Died("the API stopped while a parse worker started")
        return worker

    async def parse(self, source: Source, file: str = "<request>") -> Definition:
        """The validated definition of ``source`` (YAML text or a JSON object)."""
        activities.load_extensions()
        modules = sorted(
            {t.function.__module__ for t in activities.registry.types()} - {"__main__"}
        )
        request = (modules, source, file, self.limits.max_nodes)
        async with self._slots:
            worker = await self._worker()
            generation = self._generation
            self._busy.add(worker)
            try:
                outcome = await asyncio.to_thread(worker.call, request, self.limits.timeout_seconds)
            except _Timeout:
                await asyncio.to_thread(worker.kill)
                seconds = f"{self.limits.timeout_seconds:g}"
                message = f"the definition took too long to parse (more than {seconds} s)"
                raise DefinitionError([Problem(file, 1, 1, message)]) from None
            except _Died:
                why = await asyncio.to_thread(worker.exit_reason)
                await asyncio.to_thread(worker.kill)
                message = f"the definition could not be parsed: the parser process died ({why})"
                raise DefinitionError([Problem(file, 1, 1, message)]) from None
            except BaseException:  # the request was cancelled: the worker's state is unknown
                worker.kill()  # no await here: the task is being cancelled
                raise
            finally:
                self._busy.discard(worker)
            if worker.alive and generation == self._generation:
                self._idle.append(worker)
            else:
                worker.kill()
        definition, problems = outcome
        if problems or definition is None:
            raise DefinitionError(problems)
        return definition

    async def _worker(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
            worker.kill()
        try:
            return await self._start()
        except _Died as e:
            from starter.api.errors import ApiError  # not in workers: it imports FastAPI

            raise ApiError(503, f"definitions cannot be parsed now: {e}") from None

    def close(self) -> None:
        """End every worker (a later parse starts new ones)."""
        self._generation += 1
        for worker in (*self._idle, *self._busy, *self._starting):
            worker.kill()
        self._idle.clear()
