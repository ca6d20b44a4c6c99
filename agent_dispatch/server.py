"""The MCP server: tools as thin adapters over Dispatcher, plus the stdio transport on trio.

A tool body parses its arguments, calls one Dispatcher (or registry) function
and shapes the answer. Errors the user can act on become the
`{"error", "hint"}` envelope with `isError: true`.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import trio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from agent_dispatch import __version__
from agent_dispatch.config import ConfigStore
from agent_dispatch.dispatcher import Dispatcher
from agent_dispatch.errors import DispatchError, InvalidArgument
from agent_dispatch.toolkit import error_result
from agent_dispatch.tools_agents import register_agent_tools
from agent_dispatch.tools_dispatch import register_dispatch_tools
from agent_dispatch.tools_jobs import register_job_tools

log = logging.getLogger("agent_dispatch.server")

INSTRUCTIONS = """\
Delegate work to Claude Code agents that live in other project directories.
Each agent runs `claude -p` in its own project, with that project's CLAUDE.md,
MCP servers and tools. Pick the tool by the shape of the work:
- One question or task for one agent: dispatch (cached; response_format="json"
  for a machine-readable answer, return_ref=true to keep a long answer out of
  your context and read it later with fetch_result).
- A follow-up in the same conversation: dispatch_session with the session_id
  of an earlier result (a timed-out run is resumable the same way).
- Several independent tasks at once: dispatch_parallel (optionally with an
  aggregate agent that merges the answers).
- A long task whose progress you want to watch: dispatch_stream.
- Two agents that must agree on something: dispatch_dialogue.
- Work that may take minutes while you do something else: dispatch_async,
  then dispatch_wait / dispatch_status; dispatch_cancel stops it.
Start with list_agents (or list_groups) to see who is available. Failed
dispatches come back with error_type and a hint naming the fix.
"""


class _Server(MCPServer):
    """MCPServer whose argument validation failures are the usual error envelope."""

    _parameters: dict[str, frozenset[str]] | None = None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        known = (await self._known_parameters()).get(name)
        unknown = sorted(set(arguments) - known) if known is not None else []
        if unknown:  # the SDK would drop them silently: `timeout=60` must not mean "default"
            return error_result(
                InvalidArgument(
                    f"{name}: unknown argument(s): {', '.join(unknown)}",
                    f"{name} takes: {', '.join(sorted(known or ())) or 'no arguments'}.",
                )
            )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            return error_result(_invalid_arguments(name, exc.__cause__))


    async def _known_parameters(self) -> dict[str, frozenset[str]]:
        if self._parameters is None:
            self._parameters = {
                tool.name: frozenset(tool.input_schema.get("properties", {}))
                for tool in await self.list_tools()
            }
        return self._parameters


def _invalid_arguments(tool: str, exc: ValidationError) -> InvalidArgument:
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or "arguments"
        problems.append(f"{where}: {err['msg']}")
    return InvalidArgument(
        f"{tool}: invalid arguments: {'; '.join(problems)}",
        f"Check the parameter types of {tool} in tools/list (numbers must be finite).",
    )


def build_server(dispatcher: Dispatcher, store: ConfigStore) -> MCPServer:
    """The composition root of the MCP surface: every tool closes over one Dispatcher."""
    server = _Server(name="agent-dispatch", instructions=INSTRUCTIONS, version=__version__)
    register_agent_tools(server, dispatcher, store)
    register_dispatch_tools(server, dispatcher)
    register_job_tools(server, dispatcher)
    return server


# -- stdio on trio -----------------------------------------------------------------


class _LineReader:
    """stdin as the async iterator of text lines that mcp's stdio_server expects."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        buffer = bytearray()
        while True:
            data = await self._stream.receive_some(65536)
            if not data:
                if buffer:
                    yield buffer.decode("utf-8", "replace")
                return
            buffer += data
            while (nl := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[: nl + 1])
                del buffer[: nl + 1]
                yield line.decode("utf-8", "replace")


class _Writer:
    """stdout for mcp's stdio_server; a client that hung up ends the session like EOF."""

    def __init__(self, stream: trio.lowlevel.FdStream, session: trio.CancelScope) -> None:
        self._stream = stream
        self._session = session

    async def write(self, text: str) -> None:
        try:
            await self._stream.send_all(text.encode("utf-8"))
        except trio.BrokenResourceError:
            log.info("the client closed stdout: shutting down")
            self._session.cancel()

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


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


async def serve_stdio(store: ConfigStore, *, env: Mapping[str, str] | None = None) -> None:
    """Serve MCP on stdin/stdout until EOF, SIGINT or SIGTERM; children die with us."""
    # The receiver spans the Dispatcher's exit too: its jobs' children die in there.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as guard:
            serving = trio.CancelScope()
            guard.start_soon(_cancel_on_signal, signals, serving)
            with serving:
                await _serve(store, env)
            guard.cancel_scope.cancel()


async def _serve(store: ConfigStore, env: Mapping[str, str] | None) -> None:
    async with Dispatcher.open(store, env=env) as dispatcher:
        try:
            dispatcher.recover_jobs()
        except DispatchError as exc:  # a broken config or job dir: serve, and say so per call
            log.warning("job recovery skipped: %s", exc.message)
        server = build_server(dispatcher, store)
        lowlevel = server._lowlevel_server  # run_stdio_async would claim fds in a thread
        with trio.CancelScope() as session:
            async with (
                _claim_stdio() as (rx, tx),
                stdio_server(
                    stdin=cast(Any, _LineReader(rx)), stdout=cast(Any, _Writer(tx, session))
                ) as (read_stream, write_stream),
            ):
                options = lowlevel.create_initialization_options()
                await lowlevel.run(read_stream, write_stream, options)


def configure_logging() -> None:
    """Log to stderr only; must run before MCPServer() (which calls basicConfig)."""
    logging.basicConfig(
        level=os.environ.get("AGENT_DISPATCH_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
