"""What a test scripts the fake Anthropic API with, and what it reads back.

Replies (``text``, ``tool_use``, ``api_error``, ``Drop``), how they are chosen
(``tool_round_trip``, or any function of the request), and ``RecordedRequest``,
the fake's record of one request. ``fake_anthropic`` re-exports all of it.

Every reply may be held back: ``delay`` seconds, and/or until ``hold`` (a
``trio.Event``) is set, which lets a test look at a CLI that is waiting on the
API (its pid, its open files) or keep several in flight at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import trio

__all__ = ["ApiError", "Drop", "Message", "RecordedRequest", "Reply", "Responder"]
__all__ += ["TextBlock", "ToolUseBlock", "Usage"]
__all__ += ["api_error", "offers_tools", "text", "tool_round_trip", "tool_use"]

# ---------------------------------------------------------------- replies


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Token counts the fake reports; the CLI prices them (cost, budget stop)."""

    input_tokens: int = 10
    output_tokens: int = 5
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ToolUseBlock:
    name: str
    input: dict[str, Any]
    id: str | None = None  # None: the fake numbers it (toolu_fake_1, toolu_fake_2, ...)


@dataclass(frozen=True, kw_only=True)
class Message:
    """A successful reply: an assistant message of text and tool_use blocks."""

    content: tuple[TextBlock | ToolUseBlock, ...]
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None  # None: "tool_use" with a tool block, else "end_turn"
    delay: float = 0.0  # seconds before the response starts (simulated latency)
    hold: trio.Event | None = None  # then wait for this before responding

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        has_tool = any(isinstance(b, ToolUseBlock) for b in self.content)
        return "tool_use" if has_tool else "end_turn"


@dataclass(frozen=True, kw_only=True)
class ApiError:
    """An HTTP error with the real API's body: ``{"type":"error","error":{...}}``."""

    status: int
    error_type: str
    message: str
    delay: float = 0.0
    hold: trio.Event | None = None


@dataclass(frozen=True, kw_only=True)
class Drop:
    """Close the connection without a complete response; ``mid_stream``: on a
    streaming request, after the SSE headers and ``message_start``."""

    delay: float = 0.0
    hold: trio.Event | None = None
    mid_stream: bool = False


Reply: TypeAlias = Message | ApiError | Drop

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def text(
    body: str,
    *,
    input_tokens: int = 10,
    output_tokens: int = 5,
    delay: float = 0.0,
    hold: trio.Event | None = None,
) -> Message:
    """A plain text reply."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return Message(content=(TextBlock(body),), usage=usage, delay=delay, hold=hold)


def tool_use(
    name: str,
    input: dict[str, Any],
    *,
    preamble: str | None = None,
    tool_use_id: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    delay: float = 0.0,
    hold: trio.Event | None = None,
) -> Message:
    """A reply asking the CLI to run one tool, after ``preamble`` text if given."""
    call = ToolUseBlock(name, input, tool_use_id)
    blocks = (call,) if preamble is None else (TextBlock(preamble), call)
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return Message(content=blocks, usage=usage, delay=delay, hold=hold)


def api_error(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    delay: float = 0.0,
    hold: trio.Event | None = None,
) -> ApiError:
    """An HTTP error; the error type defaults to the real API's for ``status``."""
    etype = error_type or _ERROR_TYPES.get(status, "api_error")
    body = message or f"fake {etype} ({status})"
    return ApiError(status=status, error_type=etype, message=body, delay=delay, hold=hold)


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when empty / not JSON
    raw_body: bytes
    received_at: float = 0.0  # trio.current_time() when the request was complete

    def _get(self, key: str, kind: type) -> Any:
        value = self.body.get(key) if isinstance(self.body, dict) else None
        return value if isinstance(value, kind) else kind()

    @property
    def is_messages(self) -> bool:
        """A Messages API call (an agent turn, or an auxiliary one)."""
        return self.method == "POST" and self.path == "/v1/messages"

    @property
    def streaming(self) -> bool:
        return self._get("stream", bool) is True

    @property
    def model(self) -> str:
        return str(self._get("model", str))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self._get("messages", list))

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self._get("tools", list))

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.tools if isinstance(t, dict)]

    @property
    def system_text(self) -> str:
        """The system prompt as text (the body has a string or text blocks)."""
        return _flatten(self.body.get("system") if isinstance(self.body, dict) else None)

    @property
    def user_text(self) -> str:
        """All text of the user side (prompt, reminders, tool results)."""
        user = [m for m in self.messages if m.get("role") == "user"]
        return "\n".join(_flatten(m.get("content")) for m in user)

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last user message (this turn's results)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                blocks = _blocks(message.get("content"))
                return [b for b in blocks if b.get("type") == "tool_result"]
        return []

    @property
    def has_tool_result(self) -> bool:
        return bool(self.tool_results)


def offers_tools(request: RecordedRequest) -> bool:
    """The default test for a main request: a messages call that offers tools."""
    return request.is_messages and bool(request.tools)


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _flatten(content: Any) -> str:
    """Text of a string, or of text and tool_result blocks, one per line."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in _blocks(content):
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_flatten(block.get("content")))
    return "\n".join(parts)


# ---------------------------------------------------------------- scripts

Responder: TypeAlias = Callable[[RecordedRequest], Reply]


def tool_round_trip(first: Reply, then: Reply) -> Responder:
    """``first`` for a request without a tool_result, ``then`` once it carries one."""

    def respond(request: RecordedRequest) -> Reply:
        return then if request.has_tool_result else first

    return respond
