"""One MCP session over any pair of byte streams, on a given Dispatcher.

The stdio server runs one over stdin/stdout; the per-user service (server/service.py)
runs one per connection, all on its one Dispatcher. Nothing here imports the mcp SDK:
`load_app` imports it (server/app.py) in a worker thread, and `Front` vets the wire
in front of it while it loads.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import trio

from agent_dispatch import offload
from agent_dispatch.errors import DispatchError
from agent_dispatch.models import Settings
from agent_dispatch.server.front import Front
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore

__all__ = ["McpApp", "load_app", "max_line", "serve_session"]


class McpApp:
    """The loaded SDK and the server built on one Dispatcher; serves any number of
    sessions, one after another or at once."""

    def __init__(self, sdk: ModuleType, server: Any) -> None:
        self._sdk = sdk
        self._server = server

    async def run(self, front: Front) -> None:
        """Serve the session the front reads until its source ends."""
        await self._sdk.run_session(self._server, front.source, front.sink)


async def load_app(dispatcher: Dispatcher, store: ConfigStore) -> McpApp:
    """Import the SDK in a thread and build the server (the startup heap is frozen after)."""
    with _startup_heap():
        sdk = await _import_sdk()
        server = sdk.build_server(dispatcher, store)
    return McpApp(sdk, server)


async def serve_session(
    rx: trio.abc.ReceiveStream,
    tx: trio.abc.SendStream,
    app: Callable[[], Awaitable[McpApp]],
    *,
    line_limit: int,
) -> None:
    """Serve one MCP session over (rx, tx) until the client's EOF or a broken wire.

    The Front reads and vets the wire from the start; `app()` is awaited meanwhile
    (it may still be loading the SDK). Jobs the session starts run in the
    Dispatcher's nursery, not here: they outlive the session.
    """
    with trio.CancelScope() as session:
        async with trio.open_nursery() as wire:
            front = Front(rx, tx, on_broken=session.cancel, max_line=line_limit)
            wire.start_soon(front.pump)
            mcp = await app()
            await mcp.run(front)
            wire.cancel_scope.cancel()


def max_line(store: ConfigStore) -> int:
    """The line cap from the config; a broken config is reported per call, not here."""
    try:
        mib = store.load().settings.max_message_mib
    except DispatchError:
        mib = Settings().max_message_mib
    return mib * 1024 * 1024


async def _import_sdk() -> ModuleType:
    """Import the SDK (server/app.py) in a thread: the Dispatcher's recovery and the
    Front's vetting run meanwhile, and a signal still ends the process at once."""
    return await offload.run_sync(
        importlib.import_module, "agent_dispatch.server.app", abandon_on_cancel=True
    )


@contextmanager
def _startup_heap() -> Iterator[None]:
    """No collections while the SDK builds its models (nothing of it is garbage), then
    freeze that heap: full collections would otherwise walk it for 50-80 ms mid-session."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
