"""Shared pieces of the MCP tools: the error envelope and result shaping."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, cast

import msgspec
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent

from agent_dispatch import exception_groups
from agent_dispatch.errors import DispatchError, InvalidArgument
from agent_dispatch.models import DispatchResult, ProgressEvent
from agent_dispatch.server.remedies import present

P = ParamSpec("P")
log = logging.getLogger("agent_dispatch.tools")


GENERIC_HINT = "Check the arguments against this tool's description (see tools/list)."


def error_result(exc: DispatchError) -> CallToolResult:
    envelope = exc.envelope()
    if not envelope["hint"].strip():  # the envelope always tells the caller what to do next
        envelope["hint"] = GENERIC_HINT
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(envelope))],
        structured_content=envelope,
        is_error=True,
    )


def tool_errors(
    fn: Callable[P, Awaitable[dict[str, Any]]],
) -> Callable[P, Awaitable[dict[str, Any]]]:
    """Turn a DispatchError raised by a tool body into the error envelope."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        try:
            return await fn(*args, **kwargs)
        except DispatchError as exc:
            return cast(dict[str, Any], error_result(exc))
        except BaseExceptionGroup as group:
            return cast(dict[str, Any], error_result(_group_error(fn.__name__, group)))
        except Exception as exc:
            return cast(dict[str, Any], error_result(_internal_error(fn.__name__, exc)))

    return wrapper


def _group_error(tool: str, group: BaseExceptionGroup[BaseException]) -> DispatchError:
    """The MCP edge for what a tool's nursery (heartbeat, progress) raised: a lone user
    error is that error; bugs of ours are an internal error; anything else, Cancelled
    among them, is re-raised: not ours to eat."""
    if isinstance(only := exception_groups.sole(group), DispatchError):
        return only
    bugs, not_ours = exception_groups.split(group, Exception)
    if not_ours is not None or not isinstance(bugs, Exception):
        raise group
    return _internal_error(tool, bugs)


def _internal_error(tool: str, exc: Exception) -> DispatchError:
    """A bug of ours reaches the caller as an envelope saying so, not as a bare failure."""
    log.error("%s failed unexpectedly", tool, exc_info=exc)
    leaf = exception_groups.sole(exc) or exc
    return DispatchError(
        f"{tool}: internal error: {type(leaf).__name__}: {leaf}",  # DispatchError bounds it
        "This is a bug in agent-dispatch, not in your arguments: the server's log (stderr)"
        " has the traceback. Nothing else was affected; other calls still work.",
    )


def json_argument(field: str, text: str, hint: str) -> Any:
    """Decode a tool argument the caller sent as a JSON string.

    Anything the decoder refuses is the argument's problem, never ours: malformed
    JSON, nesting too deep for the parser (RecursionError), an integer longer than
    Python converts (ValueError). The SDK's own pre-parse of JSON strings already
    leaves such strings alone; this is the same rule for the arguments we decode.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"{field}: not valid JSON ({exc.msg} at position {exc.pos})"
        raise InvalidArgument(message, hint) from None
    except RecursionError:
        raise InvalidArgument(f"{field}: JSON nested too deeply to decode", hint) from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer ..."
        raise InvalidArgument(f"{field}: JSON not decodable: {exc}", hint) from None


def result_dict(result: DispatchResult, response_format: str = "") -> dict[str, Any]:
    out = cast(dict[str, Any], msgspec.to_builtins(present(result)))
    if response_format == "json" and result.success:
        out.setdefault("parsed_result", None)  # null means "did not parse", not "absent"
    return out


def progress_reporter(ctx: Context) -> Callable[[ProgressEvent], Awaitable[None]]:
    step = 0

    async def report(event: ProgressEvent) -> None:
        nonlocal step
        step += 1
        await ctx.report_progress(step, None, event.message)

    return report
