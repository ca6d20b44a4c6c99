"""Decoding the Claude CLI's json / stream-json stdout (sans-IO).

Everything read from the child is untrusted: bytes are decoded with
replacement, lone surrogate escapes are neutralised before msgspec sees them,
and a malformed field is dropped rather than losing a paid answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from agent_dispatch.models import MAX_TOOL_INPUT_BYTES, ProgressEvent

_PROGRESS_CAP = 20_000
_TOOL_NAME_CAP = 100
# One decoder for everything; float_hook turns out-of-range numbers into inf
# (then dropped by the field checks) instead of failing the whole object.
_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(float_hook=float)
_SURROGATE_CHAR_RE = re.compile("[\ud800-\udfff]")
# A \uXXXX surrogate escape with its run of backslashes (odd run = a real escape).
_SURROGATE_ESCAPE_RE = re.compile(
    r"(\\+)u(d[89ab][0-9a-f]{2})(\\ud[c-f][0-9a-f]{2})?|(\\+)u(d[c-f][0-9a-f]{2})",
    re.IGNORECASE,
)
_NOT_JSON = object()
_WHOLE_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)
_INNER_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n[ \t]*```", re.DOTALL)


# -- decoding --------------------------------------------------------------------


class CliOutput(msgspec.Struct, kw_only=True):
    """A lenient view of the CLI's result object: malformed fields become None/empty."""

    subtype: str | None = None
    is_error: bool = False
    result: str | None = None
    session_id: str | None = None
    total_cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    permission_denials: list[str] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)
    api_error_status: int | None = None
    terminal_reason: str | None = None
    structured_output: Any = None


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced, so it always re-encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_CHAR_RE.sub("\ufffd", text)
    return text


def _fix_surrogate_escape(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        slashes, pair = m.group(1), m.group(3)
        if len(slashes) % 2 == 1 and pair is not None:
            return m.group(0)  # a valid surrogate pair
        head = slashes[:-1] + "\\ufffd" if len(slashes) % 2 == 1 else f"{slashes}u{m.group(2)}"
        return head + ("\\ufffd" if pair is not None else "")
    slashes = m.group(4)
    if len(slashes) % 2 == 1:
        return slashes[:-1] + "\\ufffd"
    return m.group(0)


def decode_json(text: str, default: Any = None) -> Any:
    """Decode one JSON document, or return `default` when it is not one."""
    if "\\u" in text or "\\U" in text:
        # msgspec rejects lone surrogate escapes outright; neutralise them first.
        text = _SURROGATE_ESCAPE_RE.sub(_fix_surrogate_escape, text)
    try:
        return _DECODER.decode(text)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return default


def _str(value: object) -> str | None:
    return clean_text(value) if isinstance(value, str) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _denial_names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names = []
    for item in value:
        name = item.get("tool_name") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip():
            names.append(clean_text(name))
    return names


def _error_list(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    out = []
    for item in items:
        text = item.get("message") if isinstance(item, dict) else item
        if isinstance(text, str) and text.strip():
            out.append(clean_text(text))
    return out


def _output_from(obj: Mapping[str, Any]) -> CliOutput:
    subtype = _str(obj.get("subtype"))
    is_error = obj.get("is_error")
    if not isinstance(is_error, bool):
        is_error = subtype is not None and subtype.startswith("error")
    return CliOutput(
        subtype=subtype,
        is_error=is_error,
        result=_str(obj.get("result")),
        session_id=_str(obj.get("session_id")),
        total_cost_usd=_float(obj.get("total_cost_usd")),
        duration_ms=_int(obj.get("duration_ms")),
        num_turns=_int(obj.get("num_turns")),
        permission_denials=_denial_names(obj.get("permission_denials")),
        errors=_error_list(obj.get("errors")),
        api_error_status=_int(obj.get("api_error_status")),
        terminal_reason=_str(obj.get("terminal_reason")),
        structured_output=obj.get("structured_output"),
    )


def _result_in(value: Any) -> CliOutput | None:
    """The result object in one decoded document (an object, or a --verbose array)."""
    if isinstance(value, dict):
        return _output_from(value) if value.get("type") == "result" else None
    if isinstance(value, list):
        for item in reversed(value):
            if isinstance(item, dict) and item.get("type") == "result":
                return _output_from(item)
    return None


def _lines_from_end(data: bytes) -> Iterator[bytes]:
    """Non-empty stripped lines, last first, without splitting a big buffer up front."""
    end = len(data)
    while end > 0:
        start = data.rfind(b"\n", 0, end) + 1
        line = data[start:end].strip()
        if line:
            yield line
        end = start - 1


def _result_in_line(line: bytes) -> CliOutput | None:
    if b"result" not in line:  # cheap filter before decoding
        return None
    return _result_in(decode_json(line.decode("utf-8", "replace")))


def has_result(stdout: bytes) -> bool:
    """Whether `stdout` already holds a complete result object (json or stream-json)."""
    end = len(stdout)
    for _ in range(2):  # the result is the last line; allow one stray line after it
        while end > 0 and stdout[end - 1 : end].isspace():
            end -= 1
        if end <= 0:
            return False
        start = stdout.rfind(b"\n", 0, end) + 1
        if _result_in_line(stdout[start:end]) is not None:
            return True
        end = start
    return False


def parse_output(stdout: bytes) -> CliOutput | None:
    """The result object from json output (object or array) or stream-json (last result line)."""
    for line in _lines_from_end(stdout):
        found = _result_in_line(line)
        if found is not None:
            return found
    if stdout.count(b"\n", 0, len(stdout.rstrip())) > 0:  # e.g. pretty-printed JSON
        return _result_in(decode_json(stdout.decode("utf-8", "replace")))
    return None


class StreamParser:
    """Incremental stream-json decoding: progress events out, session id and result kept."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.result: CliOutput | None = None

    def feed_line(self, line: bytes) -> list[ProgressEvent]:
        """Decode one stdout line; return its progress events (possibly none)."""
        line = line.strip()
        if not line.startswith(b"{") or line.startswith(b'{"type":"stream_event"'):
            return []
        msg = decode_json(line.decode("utf-8", "replace"))
        if not isinstance(msg, dict):
            return []
        kind = msg.get("type")
        if self.session_id is None:
            self.session_id = _str(msg.get("session_id"))
        if kind == "assistant":
            return _assistant_events(msg.get("message"))
        if kind == "system" and msg.get("subtype") == "api_retry":
            return [ProgressEvent("retry", _retry_message(msg))]
        if kind == "result":
            self.result = _output_from(msg)
            if self.result.session_id:
                self.session_id = self.result.session_id
        return []


def _assistant_events(message: object) -> list[ProgressEvent]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    events = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text = _str(block.get("text"))
            if text and text.strip():
                events.append(ProgressEvent("text", bound_text(text, _PROGRESS_CAP)))
        elif block.get("type") == "tool_use":
            events.append(_tool_use_event(block))
    return events


def _tool_use_event(block: Mapping[str, Any]) -> ProgressEvent:
    name = _str(block.get("name"))
    tool = name[:_TOOL_NAME_CAP] if name else None
    tool_input, dropped = _bounded_input(block.get("input"))
    return ProgressEvent(
        "tool_use",
        f"Using tool: {tool or '?'}",
        tool=tool,
        tool_input=tool_input,
        tool_input_dropped=dropped,
    )


def _bounded_input(value: Any) -> tuple[Any, bool]:
    """(input, dropped): a tool's input when it is at most MAX_TOOL_INPUT_BYTES as JSON."""
    if value is None:
        return None, False
    try:
        size = len(msgspec.json.encode(value))
    except (msgspec.MsgspecError, RecursionError, ValueError, TypeError, OverflowError):
        return None, True  # (what decode_json made always encodes; never keep what does not)
    return (value, False) if size <= MAX_TOOL_INPUT_BYTES else (None, True)


def _retry_message(msg: Mapping[str, Any]) -> str:
    text = "API retry"
    attempt, most = _int(msg.get("attempt")), _int(msg.get("max_retries"))
    if attempt is not None:
        text += f" {attempt}" + (f"/{most}" if most is not None else "")
    delay = _float(msg.get("retry_delay_ms"))
    if delay is not None:
        text += f" in {delay / 1000:.1f}s"
    status = _int(msg.get("error_status"))
    if status is not None:
        text += f" (status {status})"
    return text


def parse_json_reply(text: str) -> tuple[bool, Any]:
    """(ok, value): `text` as one JSON value, tolerating ``` / ```json fences."""
    body = clean_text(text).strip()
    candidates = [body]
    fence = _WHOLE_FENCE_RE.fullmatch(body)
    if fence:
        candidates.insert(0, fence.group(1))
    else:
        blocks = _INNER_FENCE_RE.findall(body)
        if len(blocks) == 1:  # prose around a single fenced block
            candidates.append(blocks[0])
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate:
            continue
        value = decode_json(candidate, _NOT_JSON)
        if value is not _NOT_JSON:
            return True, value
    return False, None


def bound_text(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap] + "… [truncated]"
