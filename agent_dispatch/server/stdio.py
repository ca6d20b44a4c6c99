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
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import trio

from agent_dispatch.server.registered import registered
from agent_dispatch.server.session import load_app, max_line, serve_session
from agent_dispatch.server.signals import until_signalled
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
    await until_signalled(partial(_serve, store, env))


async def _serve(store: ConfigStore, env: Mapping[str, str] | None) -> None:
    # Recovery of stale jobs runs in the background: the handshake does not wait for it.
    async with (
        Dispatcher.open(store, env=env, policy=TOOLS) as dispatcher,
        registered(dispatcher, "standalone", store.path, os.environ if env is None else env),
    ):
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
