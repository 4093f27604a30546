"""What one node's activity used of the worker: CPU seconds and peak memory.

Measured by the activity wrapper (:mod:`activities._registry`) around every node function:

* CPU: a node type written as a plain function runs in a thread of its own, and its CPU time
  is that thread's (exact). An ``async`` node type shares the worker's event loop, so its CPU
  time is the process's over the node's run: exact when it ran alone, an upper bound when
  other nodes ran at the same time. CPU of child processes the node waited for (the
  ``code.python`` sandbox, tesseract) is added either way.
* Memory: the worker process's resident set (RSS) at its highest while the node ran, sampled
  every :data:`SAMPLE_SECONDS` by one thread shared by all running nodes (and at the start
  and end of each). It is the worker's footprint while the node ran — what sizing a worker
  needs — not memory the node alone allocated.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

SAMPLE_SECONDS = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_statm: tuple[int, int] | None = None
"""(pid, file descriptor) of ``/proc/<pid>/statm``, opened once: every node reads it twice, and
a positioned read of an open file costs a fraction of opening it again."""


def _statm_fd() -> int:
    global _statm
    pid = os.getpid()
    if _statm is None or _statm[0] != pid:  # first use, or a forked child (its own file)
        _statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
    return _statm[1]


def rss_bytes() -> int:
    """The worker process's resident set size now (0 where it cannot be read)."""
    try:
        return int(os.pread(_statm_fd(), 256, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        # Not Linux: the lifetime peak is the best there is.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(eq=False)  # compared and hashed by identity: the sampler keeps a set of them
class Measurement:
    """One node run being measured; read :attr:`cpu_seconds` and :attr:`peak_rss_bytes` after
    :meth:`stop`."""

    in_thread: bool = False
    """Whether the node's own thread reports its CPU (:meth:`run_in_thread`)."""
    cpu_seconds: float = 0.0
    peak_rss_bytes: int = 0
    _start_process: float = field(default_factory=time.process_time)
    _start_children: float = field(default_factory=_children_cpu)
    _thread_cpu: float | None = None

    def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function`` (in the node's own thread) counting that thread's CPU time."""
        start = time.thread_time()
        try:
            return function(*args)
        finally:
            self._thread_cpu = time.thread_time() - start

    def sample(self, rss: int) -> None:
        """Note the process's RSS now."""
        if rss > self.peak_rss_bytes:
            self.peak_rss_bytes = rss

    def stop(self) -> None:
        """Stop measuring (the sampler forgets this node)."""
        _SAMPLER.forget(self)
        self.sample(rss_bytes())
        own = (
            self._thread_cpu
            if self._thread_cpu is not None
            else time.process_time() - self._start_process
        )
        self.cpu_seconds = max(own, 0.0) + max(_children_cpu() - self._start_children, 0.0)


class _Sampler:
    """One thread sampling the RSS for every node running, asleep while none runs."""

    def __init__(self) -> None:
        self._running: set[Measurement] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, measurement: Measurement) -> None:
        with self._lock:
            self._running.add(measurement)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="tideflow-rss-sampler", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def forget(self, measurement: Measurement) -> None:
        with self._lock:
            self._running.discard(measurement)

    def _loop(self) -> None:
        while True:
            with self._lock:
                running = list(self._running)
            if not running:
                self._wake.clear()
                self._wake.wait(60)
                continue
            rss = rss_bytes()
            for measurement in running:
                measurement.sample(rss)
            time.sleep(SAMPLE_SECONDS)


_SAMPLER = _Sampler()


def measure() -> Measurement:
    """Start measuring a node run; call :meth:`Measurement.stop` when it ends."""
    measurement = Measurement()
    measurement.sample(rss_bytes())
    _SAMPLER.watch(measurement)
    return measurement
