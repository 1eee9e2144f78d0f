"""Fixtures the unit tests of several packages share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from schema_registry.server import RunningRegistry, start_server
from schema_registry.server.store import MemoryLog


@pytest.fixture
async def registry() -> AsyncIterator[RunningRegistry]:
    """Our registry on a free port, schemas in memory: a real HTTP server for the clients."""
    running = await start_server(None, port=0, log_=MemoryLog())
    yield running
    await running.stop()
