"""Fixtures for the MCP server tests; load with `pytest_plugins = ("tests.server_fixtures",)`.

- `ws`: a Workspace (config with agents alpha and beta, jobs dir, fake-claude log).
- `served`: an in-memory MCP client, once per client mode, and the Dispatcher behind it.
- `tools`: the client of `served` as a `Tools` caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import mcp
import pytest

from agent_dispatch.service.dispatcher import Dispatcher
from tests.server_support import MODES, Tools, Workspace, in_memory_server


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path)


@pytest.fixture(params=MODES)
async def served(
    request: pytest.FixtureRequest, ws: Workspace
) -> AsyncIterator[tuple[Tools, Dispatcher]]:
    """An in-memory client (default and legacy JSON-RPC mode) and the Dispatcher behind it."""
    async with (
        in_memory_server(ws) as (dispatcher, server),
        mcp.Client(server, mode=request.param) as client,
    ):
        yield Tools(client, request.param), dispatcher


@pytest.fixture
def tools(served: tuple[Tools, Dispatcher]) -> Tools:
    return served[0]
