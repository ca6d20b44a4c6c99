"""`agent-dispatch serve`: the MCP server process on stdin/stdout, under trio.

Nothing here imports the mcp SDK: it loads in a worker thread while the
Dispatcher opens and recovers, and the wire is read by `front.py` (vetted
lines, bounded requests in flight). The process owns its children: EOF, SIGINT
and SIGTERM all end the Dispatcher's nursery, and with it every child's group.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from types import ModuleType

import trio

from agent_dispatch.errors import DispatchError
from agent_dispatch.models import Settings
from agent_dispatch.server.front import Front
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.policy import TOOLS
from agent_dispatch.storage.config import ConfigStore, config_path

log = logging.getLogger("agent_dispatch.server.stdio")


def main() -> int:
    """The `serve` command, also reached without the CLI parser (launch.py)."""
    configure_logging()
    trio.run(serve_stdio, ConfigStore(config_path()))
    return 0


def configure_logging() -> None:
    """Log to stderr only; must run before MCPServer() (which calls basicConfig)."""
    logging.basicConfig(
        level=os.environ.get("AGENT_DISPATCH_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


async def serve_stdio(store: ConfigStore, *, env: Mapping[str, str] | None = None) -> None:
    """Serve MCP on stdin/stdout until EOF, SIGINT or SIGTERM; children die with us.

    It is the process's main function: it owns SIGINT and SIGTERM, and leaves them
    ignored on return, when the children are dead and the process is exiting.
    """
    # The receiver spans the Dispatcher's exit too: its jobs' children die in there. It
    # restores on exit what it found, and it finds "ignore": a signal that comes once
    # the cleanup is over (a second Ctrl-C, a late SIGTERM) cannot turn a clean exit
    # into a traceback or a kill. Nothing awaits between the two calls.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as guard:
            serving = trio.CancelScope()
            guard.start_soon(_cancel_on_signal, signals, serving)
            with serving:
                await _serve(store, env)
            guard.cancel_scope.cancel()


async def _serve(store: ConfigStore, env: Mapping[str, str] | None) -> None:
    # Recovery of stale jobs runs in the background: the handshake does not wait for it.
    async with Dispatcher.open(store, env=env, policy=TOOLS) as dispatcher:
        with trio.CancelScope() as session:
            async with _claim_stdio() as (rx, tx), trio.open_nursery() as wire:
                front = Front(rx, tx, on_broken=session.cancel, max_line=_max_line(store))
                wire.start_soon(front.pump)
                with _startup_heap():
                    sdk = await _import_sdk()
                    server = sdk.build_server(dispatcher, store)
                await sdk.run_session(server, front.source, front.sink)
                wire.cancel_scope.cancel()


def _max_line(store: ConfigStore) -> int:
    """The line cap from the config; a broken config is reported per call, not here."""
    try:
        mib = store.load().settings.max_message_mib
    except DispatchError:
        mib = Settings().max_message_mib
    return mib * 1024 * 1024


async def _import_sdk() -> ModuleType:
    """Import the SDK (server/app.py) in a thread: the Dispatcher's recovery and the
    Front's vetting run meanwhile, and a signal still ends the process at once."""
    return await trio.to_thread.run_sync(
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


@asynccontextmanager
async def _claim_stdio() -> AsyncIterator[tuple[trio.lowlevel.FdStream, trio.lowlevel.FdStream]]:
    """Move the wire off fds 0/1 so no child or stray print can touch it."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    try:
        async with trio.lowlevel.FdStream(wire_in) as rx, trio.lowlevel.FdStream(wire_out) as tx:
            yield rx, tx
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    # Keep draining after the first signal: a second Ctrl-C or SIGTERM during the
    # shutdown must not fall back to the default action and orphan the children.
    async for signum in signals:
        name = signal.Signals(signum).name
        if scope.cancel_called:
            log.info("received %s: already shutting down", name)
        else:
            log.info("received %s: shutting down", name)
            scope.cancel()
