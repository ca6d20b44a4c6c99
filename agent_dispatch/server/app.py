"""The MCP server: tools as thin adapters over Dispatcher, and one session over JSON-RPC lines.

This is the module that imports the mcp SDK (most of a second); `stdio.py` runs
the process around it and `front.py` vets the wire in front of it.

A tool body parses its arguments, calls one Dispatcher (or registry) function
and shapes the answer. Errors the user can act on become the
`{"error", "hint"}` envelope with `isError: true`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from agent_dispatch import __version__
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.server.tasks import DispatchTasks
from agent_dispatch.server.toolkit import Toolbox, error_result
from agent_dispatch.server.tools_agents import register_agent_tools
from agent_dispatch.server.tools_dispatch import register_dispatch_tools
from agent_dispatch.server.tools_jobs import register_job_tools
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore

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
        tools = await self._known_parameters()
        known = tools.get(name)
        if known is None:
            return error_result(
                InvalidArgument(
                    f"unknown tool {name[:100]!r}",
                    f"This server's tools: {', '.join(sorted(tools))}.",
                )
            )
        unknown = sorted(set(arguments) - known)
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
    box = Toolbox()
    register_agent_tools(box, dispatcher, store)
    register_dispatch_tools(box, dispatcher)
    register_job_tools(box, dispatcher)
    return _Server(
        name="agent-dispatch",
        instructions=INSTRUCTIONS,
        version=__version__,
        tools=box.tools,
        extensions=[DispatchTasks(dispatcher, box.tools)],
    )


# -- sessions ----------------------------------------------------------------------


class LineSource(Protocol):
    def __aiter__(self) -> AsyncIterator[str]: ...


class LineSink(Protocol):
    async def write(self, text: str) -> None: ...

    async def flush(self) -> None: ...


async def run_session(server: MCPServer, stdin: LineSource, stdout: LineSink) -> None:
    """Serve one MCP session over JSON-RPC lines until `stdin` ends."""
    lowlevel = server._lowlevel_server  # run_stdio_async would claim fds in a thread
    options = lowlevel.create_initialization_options()
    async with stdio_server(stdin=cast(Any, stdin), stdout=cast(Any, stdout)) as (reader, writer):
        await lowlevel.run(reader, writer, options)
