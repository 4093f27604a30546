"""Waiting in tests without sleeping blindly: poll until a condition holds, with a deadline."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest


async def eventually(
    probe: Callable[[], Any],
    check: Callable[[Any], bool] = bool,
    what: str = "the condition",
    *,
    timeout: float = 60.0,
    every: float = 0.05,
) -> Any:
    """Call ``probe`` (plain or async) until ``check`` accepts its value, and return that value;
    fail the test with the last value after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if check(value):
            return value
        if loop.time() > deadline:
            pytest.fail(f"{what}: still {value!r} after {timeout:.0f}s")
        await asyncio.sleep(every)
