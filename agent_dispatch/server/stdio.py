"""`agent-dispatch serve`: the MCP server process on stdin/stdout, under trio.

Nothing here imports the mcp SDK: it loads in a worker thread while the
Dispatcher opens and recovers, and the session (server/session.py) reads the
wire through `front.py` (vetted lines, bounded requests in flight). The process
owns its children: EOF, SIGINT and SIGTERM all end the Dispatcher's nursery, and
with it every child's group.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import trio

from agent_dispatch.server.session import load_app, max_line, serve_session
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
        async with _claim_stdio() as (rx, tx):
            await serve_session(
                rx, tx, partial(load_app, dispatcher, store), line_limit=max_line(store)
            )


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
