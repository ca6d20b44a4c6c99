"""Shared pieces of the MCP tools: the error envelope and result shaping."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import types
import typing
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, cast

import msgspec
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
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


def output_schema(answer: Any) -> dict[str, Any]:
    """The outputSchema of a tool answering `answer`, a Struct or a union of Structs:
    msgspec's JSON Schema with an object root, as MCP requires, and one `$defs`."""
    arms = typing.get_args(answer) if isinstance(answer, types.UnionType) else (answer,)
    if len(arms) == 1:
        schema = msgspec.json.schema(arms[0])
        ref = schema.pop("$ref", None)
        if ref is not None:  # the Struct's own definition becomes the root
            schema = {**schema["$defs"][ref.removeprefix("#/$defs/")], **schema}
    else:
        schema = either(*arms).extra_json_schema or {}
    return _hoisted({"type": "object", **schema})


def either(*answers: Any) -> msgspec.Meta:
    """The schema of a value that is one of several untagged Structs. msgspec's own schema
    refuses such a union (it could not decode it back); an answer is only ever encoded."""
    return msgspec.Meta(extra_json_schema={"anyOf": [msgspec.json.schema(a) for a in answers]})


def _hoisted(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every nested `$defs` moved to the root, where its `#/$defs/` refs point."""
    defs: dict[str, Any] = {}

    def lift(node: Any) -> Any:
        if isinstance(node, list):
            return [lift(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$defs" in node:
            defs.update(lift(node["$defs"]))
        return {key: lift(value) for key, value in node.items() if key != "$defs"}

    out = cast(dict[str, Any], lift(schema))
    return {**out, "$defs": defs} if defs else out


class Toolbox:
    """The tools of one server, each registered from an async function that returns a
    Struct (its return annotation is the answer type). The tool publishes that type's JSON
    Schema as its outputSchema and answers with the Struct as plain JSON; a DispatchError
    becomes the error envelope (an isError result, which clients do not validate).

    The SDK derives outputSchema only from pydantic-readable annotations, so the tool
    function it sees is annotated `dict[str, Any]` (its JSON text and structuredContent
    are built exactly as for any dict) and the schema is set on the tool's metadata,
    which the SDK reads live (`FuncMetadata`)."""

    def __init__(self) -> None:
        self.tools: list[Tool] = []

    def tool(self, fn: Callable[P, Awaitable[msgspec.Struct]]) -> Callable[P, Awaitable[Any]]:
        hints = typing.get_type_hints(fn)
        encoded = tool_errors(_encoding(fn))
        plain = {**hints, "return": dict[str, Any]}
        encoded.__annotations__ = plain
        signature = inspect.signature(fn, eval_str=True)
        encoded.__signature__ = signature.replace(  # type: ignore[attr-defined]
            return_annotation=dict[str, Any]
        )
        tool = Tool.from_function(encoded)
        tool.fn_metadata.output_schema = output_schema(hints["return"])
        self.tools.append(tool)
        return encoded


def _encoding(fn: Callable[P, Awaitable[msgspec.Struct]]) -> Callable[P, Awaitable[dict[str, Any]]]:
    @functools.wraps(fn)
    async def encode(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        return cast(dict[str, Any], msgspec.to_builtins(await fn(*args, **kwargs)))

    return encode


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


class JsonResult(DispatchResult, kw_only=True, omit_defaults=True):
    """A successful response_format="json" result: `parsed_result` is always there, null
    meaning "did not parse", not "absent"."""

    parsed_result: Any = msgspec.UNSET


def result_answer(result: DispatchResult, response_format: str = "") -> DispatchResult:
    """`result` as a tool answers with it (see `present`)."""
    shown = present(result)
    if response_format == "json" and result.success:
        return JsonResult(**msgspec.structs.asdict(shown))
    return shown


def progress_reporter(ctx: Context) -> Callable[[ProgressEvent], Awaitable[None]]:
    step = 0

    async def report(event: ProgressEvent) -> None:
        nonlocal step
        step += 1
        await ctx.report_progress(step, None, event.message)

    return report
