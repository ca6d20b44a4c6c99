"""The JSON-RPC wire, sans IO: framing lines and vetting each one before the SDK sees it.

The mcp SDK drops, without a word, every line it cannot validate (a batch, a
float id, a nesting deeper than its parser allows, ...); a client waiting on
that request waits forever. So every line is judged here first, by the rules
the SDK applies, and whatever the SDK would drop is answered here with the
JSON-RPC error (section 5: every request that is not a valid notification gets
a response, with id null where its id cannot be used). Nothing one line holds
can raise out of this module: a line's problems are that line's answer.

`LineSplitter` finds lines in linear time and never holds more than the cap of
one line: an oversized line is skipped as it streams past, keeping only its
ends to find the id to answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

DEFAULT_MAX_LINE = 32 * 1024 * 1024
# mcp 2.3's JSON parser gives up near 200 levels; no tool argument needs more than a few.
MAX_DEPTH = 64
_ENDS = 4096  # bytes kept of each end of an oversized line, to find its id

INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
PARSE_ERROR = -32700

RequestId = str | int
_JSON_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Line:
    data: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    size: int
    id: RequestId | None  # found at either end of the line, when it shows plainly


Frame = Line | Oversized


class LineSplitter:
    """Bytes in, frames out (h11's receive buffer, for newline-delimited JSON).

    The newline search resumes where the last one stopped, so a line costs
    time linear in its length however it is chunked; a line longer than
    `max_line` is dropped as it arrives and reported as `Oversized`.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max = max_line
        self._buffer = bytearray()
        self._scanned = 0  # no newline in buffer[:_scanned]
        self._skipping = False  # inside an oversized line
        self._skipped = 0
        self._head = b""
        self._tail = b""

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while start < len(data):
            if self._skipping:
                nl = data.find(b"\n", start)
                end = len(data) if nl < 0 else nl
                self._skip(data[start:end])
                if nl < 0:
                    break
                frames.append(self._end_skip())
                start = nl + 1
                continue
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl
            if len(self._buffer) + end - start > self._max:
                self._begin_skip(data[start:end])
                if nl >= 0:
                    frames.append(self._end_skip())
                    start = nl + 1
                    continue
                break
            if nl < 0:
                self._buffer += data[start:]
                break
            self._buffer += data[start:nl]
            frames.append(Line(bytes(self._buffer)))
            self._buffer.clear()
            start = nl + 1
        return frames

    def end(self) -> list[Frame]:
        """At EOF: the last line, if it had no newline."""
        if self._skipping:
            return [self._end_skip()]
        if self._buffer:
            line = Line(bytes(self._buffer))
            self._buffer.clear()
            return [line]
        return []

    def _begin_skip(self, more: bytes | bytearray) -> None:
        self._skipping = True
        self._skipped = len(self._buffer)
        self._head = bytes(self._buffer[:_ENDS])
        self._tail = bytes(self._buffer[-_ENDS:])
        self._buffer.clear()
        self._skip(more)

    def _skip(self, chunk: bytes | bytearray) -> None:
        if len(self._head) < _ENDS:
            self._head += chunk[: _ENDS - len(self._head)]
        self._tail = (self._tail + chunk[-_ENDS:])[-_ENDS:]
        self._skipped += len(chunk)

    def _end_skip(self) -> Oversized:
        frame = Oversized(self._skipped, _head_id(self._head) or _tail_id(self._tail))
        self._skipping, self._skipped, self._head, self._tail = False, 0, b"", b""
        return frame


# What a vetted line is: forwarded to the SDK, answered here, or dropped (never answered).
@dataclass(frozen=True, slots=True)
class Forward:
    text: str
    message: dict[str, Any]
    request: RequestId | None  # the id the SDK will answer, for a request
    cancels: RequestId | None  # the request a notifications/cancelled names


@dataclass(frozen=True, slots=True)
class Reply:
    message: dict[str, Any] | list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str


Verdict = Forward | Reply | Drop


def vet(data: bytes) -> Verdict:
    """Judge one line (without its newline) as the SDK would, before it gets there."""
    text = data.decode("utf-8", "replace")
    if not text.strip(_JSON_WHITESPACE):  # Python's strip() would also eat \x1c-\x1f
        return Drop("blank line")
    try:
        message = _decode(text)
    except ValueError as exc:
        return Reply(error(_head_id(data[:_ENDS]), PARSE_ERROR, f"Parse error: {exc}"))
    if isinstance(message, list):
        return _batch(message)
    return _vet_message(text, message)


def oversized_reply(frame: Oversized, max_line: int) -> Reply:
    return Reply(
        error(
            frame.id,
            INVALID_REQUEST,
            f"Invalid Request: a message of {frame.size} bytes exceeds the limit of "
            f"{max_line} bytes (settings.max_message_mib)",
        )
    )


def error(rid: RequestId | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def request_key(rid: RequestId) -> RequestId:
    """The SDK's correlation key: "7" and 7 are one id (mcp's coerce_request_id)."""
    if isinstance(rid, str):
        try:
            return int(rid)
        except ValueError:
            return rid
    return rid


def usable_id(value: object) -> RequestId | None:
    """An id the SDK accepts (a string or an integer, never a bool), else None."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def _vet_message(text: str, message: Any) -> Verdict:
    if not isinstance(message, dict):
        return Reply(error(None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC object"))
    has_id = "id" in message
    rid = usable_id(message.get("id"))
    method = message.get("method")
    if "method" not in message and has_id and ("result" in message or "error" in message):
        # The client answering a request of ours: the SDK's to match, never ours to answer.
        if message.get("jsonrpc") != "2.0" or (rid is None and message.get("id") is not None):
            return Drop("a malformed response")
        return _within_depth(text, message, Forward(text, message, None, None))
    if "method" in message and not has_id:  # a notification: never answered, even in error...
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
            why = _request_problem({**message, "id": 0})[1]  # ...but this is none (section 5)
            return Reply(error(None, INVALID_REQUEST, why))
        if not _params_ok(message):
            return Drop(f"a notification with malformed params ({method})")
        cancels = _cancelled_id(message) if method == "notifications/cancelled" else None
        return _within_depth(text, message, Forward(text, message, None, cancels))
    code, why = _request_problem(message)
    if code or rid is None:
        return Reply(error(rid, code, why))
    return _within_depth(text, message, Forward(text, message, rid, None), reply_to=rid)


def _request_problem(message: dict[str, Any]) -> tuple[int, str]:
    """(the error code, why) for a request the SDK would not take; (0, "") for one it takes."""
    if message.get("jsonrpc") != "2.0":
        return INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'
    if usable_id(message.get("id")) is None:
        return INVALID_REQUEST, "Invalid Request: the id must be a string or an integer"
    if not isinstance(message.get("method"), str):
        return INVALID_REQUEST, "Invalid Request: the method must be a string"
    if not _params_ok(message):
        return INVALID_PARAMS, "Invalid params: params must be an object"
    return 0, ""


def _params_ok(message: dict[str, Any]) -> bool:
    params = message.get("params")
    return params is None or isinstance(params, dict)


def _within_depth(
    text: str, message: dict[str, Any], verdict: Verdict, *, reply_to: RequestId | None = None
) -> Verdict:
    if text.count("[") + text.count("{") <= MAX_DEPTH or _depth(message) <= MAX_DEPTH:
        return verdict
    if reply_to is None and isinstance(verdict, Forward) and verdict.request is None:
        return Drop(f"a message nested deeper than {MAX_DEPTH} levels")
    return Reply(
        error(reply_to, INVALID_REQUEST, f"Invalid Request: nested deeper than {MAX_DEPTH} levels")
    )


def _batch(items: list[Any]) -> Verdict:
    """JSON-RPC batches, which MCP does not take: each request in one gets its error."""
    if not items:
        return Reply(error(None, INVALID_REQUEST, "Invalid Request: an empty batch"))
    why = "Invalid Request: batches are not supported (MCP removed them); send one per line"
    replies = []
    for item in items:
        is_notification = isinstance(item, dict) and "method" in item and "id" not in item
        if not is_notification:
            rid = usable_id(item.get("id")) if isinstance(item, dict) else None
            replies.append(error(rid, INVALID_REQUEST, why))
    return Reply(replies) if replies else Drop("a batch of notifications")


def _cancelled_id(message: dict[str, Any]) -> RequestId | None:
    params = message.get("params")
    return usable_id(params.get("requestId")) if isinstance(params, dict) else None


def _decode(text: str) -> Any:
    """The line as the SDK would read it. ValueError when it is not JSON it can use."""
    try:
        return msgspec.json.decode(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        problem = str(exc)
    # The SDK reads what Python's json reads: NaN, Infinity, integers past 64 bits...
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise ValueError(problem) from None
    try:  # ...but not text that is not Unicode (a lone surrogate), which it chokes on
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise ValueError("the text holds a lone surrogate, which is not Unicode") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    return message


def _depth(value: Any) -> int:
    """How deep the containers go, stopping once past MAX_DEPTH (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


_SCALAR_ID = r'"id"\s*:\s*("(?:[^"\\\r\n]|\\.){0,256}"|-?\d{1,32})'
_TAIL_ID_RE = re.compile(_SCALAR_ID.encode() + rb"\s*\}\s*$")


def _head_id(head: bytes) -> RequestId | None:
    """The top-level "id" of a JSON object that starts in `head`, when it shows there."""
    depth, key, i, n = 0, None, 0, len(head)
    while i < n:
        c = head[i]
        if c == 0x22:  # a string: a key when followed by ':' at depth 1
            end = _string_end(head, i)
            if end < 0:
                return None
            token = head[i : end + 1]
            j = end + 1
            while j < n and head[j] in b" \t\r":
                j += 1
            if depth == 1 and j < n and head[j] == 0x3A:
                key = token
            elif depth == 1 and key == b'"id"':
                return _scalar(token)
            i = end + 1
            continue
        if c in b"{[":
            depth += 1
        elif c in b"}]":
            depth -= 1
        elif depth == 1 and key == b'"id"' and (c == 0x2D or 0x30 <= c <= 0x39):
            j = i
            while j < n and head[j] in b"-0123456789":
                j += 1
            return _scalar(head[i:j]) if j < n else None
        elif c == 0x2C:
            key = None
        i += 1
    return None


def _tail_id(tail: bytes) -> RequestId | None:
    found = _TAIL_ID_RE.search(tail)
    return _scalar(found.group(1)) if found else None


def _string_end(data: bytes, start: int) -> int:
    i = start + 1
    while i < len(data):
        if data[i] == 0x5C:
            i += 2
            continue
        if data[i] == 0x22:
            return i
        i += 1
    return -1


def _scalar(token: bytes) -> RequestId | None:
    try:
        return usable_id(msgspec.json.decode(token))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
