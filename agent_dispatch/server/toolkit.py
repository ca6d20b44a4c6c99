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
            # Raised from inside a nursery (heartbeat, progress): unwrap a lone user error.
            user_error = _only_dispatch_error(group)
            if user_error is not None:
                return cast(dict[str, Any], error_result(user_error))
            if not isinstance(group, ExceptionGroup):  # Cancelled and friends: not ours to eat
                raise
            return cast(dict[str, Any], error_result(_internal_error(fn.__name__, group)))
        except Exception as exc:
            return cast(dict[str, Any], error_result(_internal_error(fn.__name__, exc)))

    return wrapper


def _internal_error(tool: str, exc: Exception) -> DispatchError:
    """A bug of ours reaches the caller as an envelope saying so, not as a bare failure."""
    log.error("%s failed unexpectedly", tool, exc_info=exc)
    leaf: BaseException = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
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


def _only_dispatch_error(group: BaseExceptionGroup[BaseException]) -> DispatchError | None:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    if len(leaves) == 1 and isinstance(leaves[0], DispatchError):
        return leaves[0]
    return None
