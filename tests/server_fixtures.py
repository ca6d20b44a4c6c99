"""Fixtures for the MCP server tests; load with `pytest_plugins = ("tests.server_fixtures",)`.

- `ws`: a Workspace (config with agents alpha and beta, jobs dir, fake-claude log); the
  services its fronts started are killed at teardown.
- `serve_mode`: "standalone" and "relay", for the tests of a real `serve` process.
- `runner`: the ScriptedRunner behind `served` (script it, read its `calls`).
- `served`: an in-memory client, once per client mode, and the Dispatcher behind it,
  whose runs go to `runner`: no child processes.
- `tools`: the client of `served` as a `Tools` caller.
- `real_tools`: the same over ClaudeRunner and the fake claude (`ws.runs()` records
  each child): for the wiring down to a real child, one test per dispatch path.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import mcp
import pytest

from agent_dispatch.runtime.scripted import ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from tests.relay_support import stop_services
from tests.server_support import (
    MODES,
    SERVE_MODES,
    Tools,
    Workspace,
    in_memory_server,
)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """The workspace; any service a test's front started in it is killed at teardown."""
    runtime = Path(tempfile.mkdtemp(prefix="adrt-", dir="/tmp"))  # short: a socket path
    ws = Workspace.create(tmp_path, runtime)
    try:
        yield ws
    finally:
        stop_services(runtime)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(params=SERVE_MODES)
def serve_mode(request: pytest.FixtureRequest) -> str:
    """How a real `serve` process runs: the in-process server, or the front and a service."""
    mode: str = request.param
    return mode


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture(params=MODES)
async def served(
    request: pytest.FixtureRequest, ws: Workspace, runner: ScriptedRunner
) -> AsyncIterator[tuple[Tools, Dispatcher]]:
    """An in-memory client (default and legacy JSON-RPC mode) and the Dispatcher behind it."""
    async with (
        in_memory_server(ws, runner) as (dispatcher, server),
        mcp.Client(server, mode=request.param) as client,
    ):
        yield Tools(client, request.param), dispatcher


@pytest.fixture
def tools(served: tuple[Tools, Dispatcher]) -> Tools:
    return served[0]


@pytest.fixture(params=MODES)
async def real_tools(request: pytest.FixtureRequest, ws: Workspace) -> AsyncIterator[Tools]:
    """Like `tools`, but every run is a real child: the fake claude, via ClaudeRunner."""
    async with (
        in_memory_server(ws) as (_, server),
        mcp.Client(server, mode=request.param) as client,
    ):
        yield Tools(client, request.param)
