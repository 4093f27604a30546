"""The ``code.python`` node type (aliases ``code``, ``python``): inline Python, sandboxed.

The code is the body of a function; its ``return`` value is the node's output (None without
one). It sees the run's expression scope as variables:

- ``inputs``, ``vars``, ``run``: the run's inputs, workflow variables and ``{id, started_at}``;
- ``nodes``: every finished node as ``nodes["parse"]["output"]`` or ``nodes.parse.output``
  (dicts anywhere in the scope also read keys as attributes; dict methods win, so use
  ``["items"]`` for a key named like one);
- ``item`` and ``index`` inside a ``foreach`` (else None); ``error`` and ``failed_node`` in
  handlers;
- the modules ``json``, ``math``, ``datetime``, ``re``, ``decimal``, ``statistics``, already
  imported (``import json`` / ``from datetime import date`` also work; every other import is
  refused);
- a curated set of builtins: ``len range min max sum sorted enumerate zip abs round any all
  dict list set tuple str int float bool isinstance map filter reversed`` and the other pure
  ones, common exception classes, ``getattr``/``hasattr`` (without private names) and
  ``type(x)``. ``print`` goes to the worker's log (and the tail of it into error messages).

Changing ``vars`` or ``inputs`` inside the code changes a copy: return values and use a ``set``
node to change workflow variables.

Refused, with an error naming what was blocked: names and attributes starting with ``_``
(``__class__``, ``__subclasses__``, ``__globals__``...; ``__init__`` and comparison methods of
the code's own classes are fine), frame and code attributes, ``open``, ``eval``, ``exec``,
``compile``, ``globals``, ``str.format`` (use f-strings), changing attributes of objects other
than the code's own class instances and decimal contexts, ``nonlocal``, ``async`` and ``match``.
Dates and Decimals in the return value become ISO 8601 and exact decimal text; any other value
that is not JSON fails the node.

Each run is a fresh ``python -I`` child (:mod:`activities._sandbox_runner`) under
RestrictedPython and resource limits: CPU seconds, address space, open files, no core files, no
file writes; plus a wall-clock timeout and a cap on the answer's size. The node's
``resource_limits`` (``cpu_seconds``, ``memory_mb``, ``wall_seconds``, ``output_kb``; seed 002)
set them within the worker's ceilings (``code.max_cpu_seconds``, ``code.max_memory_mb``,
``code.max_wall_seconds``, ``max_output_mb``), else the worker's ``code`` settings do (the
node's ``timeout`` caps the wall clock too). User-code failures are permanent: the same code
fails the same way on every attempt.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import math
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from activities._context import NodeContext
from activities._registry import node_type
from activities.errors import PermanentNodeError, RetryableNodeError

_RUNNER = Path(__file__).with_name("_sandbox_runner.py")
_LOG_TAIL_LINES = 5
_LOG_TAIL_CHARS = 500


class CodePythonConfig(BaseModel):
    """Config of ``code.python``."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description=(
            "The body of a Python function; its `return` value is the output. Sees inputs, "
            "vars, nodes, item, index, run and the modules json, math, datetime, re, decimal, "
            "statistics."
        )
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds; default and cap: the worker's code.wall_seconds.",
    )


@functools.cache
def _import_path() -> str:
    """The folder RestrictedPython is installed in; the child runs with ``-S``, without
    site-packages (and its .pth files), so it is given this one folder."""
    spec = importlib.util.find_spec("RestrictedPython")
    if spec is None or not spec.submodule_search_locations:
        raise PermanentNodeError("code.python needs RestrictedPython, which is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


@dataclass(frozen=True)
class _Limits:
    """What one code.python run may use: the node's ``resource_limits`` within the worker's
    ceilings (``code.max_*``), else the worker's ``code`` defaults."""

    wall: float
    cpu: int
    memory_mb: int
    output_bytes: int | None
    notes: dict[str, str]
    """Limit → ``(asked N, the worker's ceiling)`` for a limit the ceiling lowered."""

    @classmethod
    def of(cls, config: CodePythonConfig, ctx: NodeContext) -> _Limits:
        code = ctx.settings.code
        asked = ctx.limits or {}
        notes: dict[str, str] = {}

        def within(name: str, value: float, ceiling: float) -> float:
            if value > ceiling:
                notes[name] = f" (asked {value:g}; the worker's ceiling)"
                return ceiling
            return value

        wall = within(
            "wall",
            float(asked.get("wall_seconds") or config.timeout or code.wall_seconds),
            code.wall_ceiling,
        )
        cpu_asked = asked.get("cpu_seconds")
        cpu = math.ceil(within("cpu", float(cpu_asked or code.cpu_seconds), code.cpu_ceiling))
        if not cpu_asked:  # CPU time cannot usefully exceed the wall time
            cpu = min(cpu, math.ceil(wall))
        memory = int(
            within("memory", float(asked.get("memory_mb") or code.memory_mb), code.memory_ceiling)
        )
        output_kb = asked.get("output_kb") or code.output_kb
        output = min(output_kb * 1024, ctx.settings.max_output_bytes) if output_kb else None
        return cls(
            wall=wall, cpu=max(1, cpu), memory_mb=max(1, memory), output_bytes=output, notes=notes
        )


def _execution(config: Mapping[str, Any]) -> str | None:
    """Code that declares a timeout of a second or less runs as a local activity."""
    timeout = config.get("timeout")
    quick = isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout <= 1
    return "local" if quick else None


@node_type("code.python", CodePythonConfig, execution=_execution)
async def code_python(config: CodePythonConfig, ctx: NodeContext) -> Any:
    """Run inline Python in a sandboxed child process; its return value is the output."""
    limits = ctx.settings.code
    applied = _Limits.of(config, ctx)
    wall, cpu = applied.wall, applied.cpu
    child_limits = {
        "cpu_seconds": cpu,
        "memory_bytes": applied.memory_mb * 1024 * 1024,
        "max_open_files": limits.max_open_files,
        "path": [_import_path()],
    }
    request = json.dumps({"code": config.code, "scope": ctx.scope or {}}, default=str).encode()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # no PYTHON* variables, no user site, no script folder on the path
            "-S",  # no site-packages; see _import_path
            "-B",  # write no .pyc (file writes are limited to nothing)
            str(_RUNNER),
            json.dumps(child_limits),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},  # none of the worker's variables (secrets, cloud credentials)
            cwd="/",
        )
    except OSError as e:
        raise RetryableNodeError(f"could not start the code sandbox: {e}") from e
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(request), timeout=wall)
    except TimeoutError:
        ceiling = applied.notes.get("wall", "")
        raise PermanentNodeError(
            f"code exceeded its time limit of {wall:g} s (wall clock){ceiling}"
        ) from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if applied.output_bytes is not None and len(stdout) > applied.output_bytes:
        raise PermanentNodeError(
            f"code answered {len(stdout) // 1024} KiB, over its output limit of "
            f"{applied.output_bytes // 1024} KiB (resource_limits.output_kb)"
        )
    response = _response(stdout)
    logs: list[str] = (response.get("logs") or []) if response else []
    if logs:
        activity.logger.info("code node %s printed:\n%s", ctx.node_id, "\n".join(logs))
    if response is None:
        raise _crash(process.returncode, stderr, cpu=cpu, memory_mb=applied.memory_mb)
    if response.get("ok"):
        return response.get("result")
    raise PermanentNodeError(_failure_message(response, memory_mb=applied.memory_mb) + _tail(logs))


def _response(stdout: bytes) -> dict[str, Any] | None:
    try:
        response = json.loads(stdout) if stdout else None
    except ValueError:
        return None
    return response if isinstance(response, dict) else None


def _failure_message(response: dict[str, Any], *, memory_mb: int) -> str:
    kind = response.get("kind")
    line = response.get("line")
    at = f" at line {line}" if line else ""
    message = str(response.get("message") or "")
    if kind == "syntax":
        return f"syntax error in code{at}: {message}"
    if kind == "rejected":
        return f"code rejected by the sandbox{at}: {message}"
    if kind == "blocked":
        return f"code blocked{at}: {message}"
    if kind == "memory":
        return f"code exceeded its memory limit of {memory_mb} MB{at}"
    if kind == "output":
        return f"code returned a value that is not JSON: {message}"
    error_type = response.get("type") or "Exception"
    return (
        f"code raised {error_type}{at}: {message}" if message else f"code raised {error_type}{at}"
    )


def _tail(logs: list[str]) -> str:
    if not logs:
        return ""
    tail = " | ".join(logs[-_LOG_TAIL_LINES:])
    if len(tail) > _LOG_TAIL_CHARS:
        tail = "…" + tail[-_LOG_TAIL_CHARS:]
    return f" (last printed: {tail})"


def _crash(
    returncode: int | None, stderr: bytes, *, cpu: int, memory_mb: int
) -> PermanentNodeError | RetryableNodeError:
    """The error of a child that ended without an answer."""
    if returncode == -signal.SIGXCPU:
        return PermanentNodeError(f"code exceeded its time limit of {cpu} s (CPU time)")
    text = stderr.decode("utf-8", "replace").strip()
    if "MemoryError" in text:
        return PermanentNodeError(f"code exceeded its memory limit of {memory_mb} MB")
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if returncode == -signal.SIGKILL:
            # Past the hard CPU limit (a second after SIGXCPU) or the kernel's OOM killer.
            return PermanentNodeError(
                f"code was killed ({name}): over its time limit of {cpu} s or out of memory"
            )
        return PermanentNodeError(f"the code sandbox crashed ({name})")
    # No answer and no signal: the sandbox itself could not start; it may on another worker.
    return RetryableNodeError(
        f"the code sandbox failed (exit status {returncode}): {text[-1000:] or 'no output'}"
    )
