"""A scriptable fake of the Anthropic Messages API on 127.0.0.1, for the real CLI.

The real ``claude`` CLI runs fully offline when ``ANTHROPIC_BASE_URL`` points
here. One agent turn is one ``POST /v1/messages`` (streaming SSE, or plain JSON
when the body has no ``"stream": true``); a tool round trip is two of them, the
second carrying a ``tool_result`` block.

Usage in a test (``fake_api`` is the conftest fixture, already serving)::

    fake_api.script([tool_use("Bash", {"command": "touch x"}), text("done")])
    fake_api.script(tool_round_trip(tool_use(...), text("done")))  # or any
    fake_api.script(lambda request: ...)                           # function
    ... run the CLI with ANTHROPIC_BASE_URL=fake_api.base_url ...
    assert "hello" in fake_api.main_requests[0].user_text

Only *main* requests (by default: ``POST /v1/messages`` offering ``tools``, the
agent's own turns) consume the script. Anything else the CLI may send (title
generation, quota probes) gets ``default``, a short text, so it never eats the
script. Every request, main or not, is recorded in ``requests``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import h11
import trio

__all__ = ["ApiError", "Drop", "FakeAnthropic", "Message", "RecordedRequest", "Reply"]
__all__ += ["Responder", "TextBlock", "ToolUseBlock", "Usage"]
__all__ += ["api_error", "text", "tool_round_trip", "tool_use"]

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


@dataclass(frozen=True, kw_only=True)
class Drop:
    """Close the connection without a complete response; ``mid_stream``: on a
    streaming request, after the SSE headers and ``message_start``."""

    delay: float = 0.0
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
    body: str, *, input_tokens: int = 10, output_tokens: int = 5, delay: float = 0.0
) -> Message:
    """A plain text reply."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return Message(content=(TextBlock(body),), usage=usage, delay=delay)


def tool_use(
    name: str,
    input: dict[str, Any],
    *,
    preamble: str | None = None,
    tool_use_id: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    delay: float = 0.0,
) -> Message:
    """A reply asking the CLI to run one tool, after ``preamble`` text if given."""
    call = ToolUseBlock(name, input, tool_use_id)
    blocks = (call,) if preamble is None else (TextBlock(preamble), call)
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return Message(content=blocks, usage=usage, delay=delay)


def api_error(
    status: int, message: str | None = None, *, error_type: str | None = None, delay: float = 0.0
) -> ApiError:
    """An HTTP error; the error type defaults to the real API's for ``status``."""
    etype = error_type or _ERROR_TYPES.get(status, "api_error")
    body = message or f"fake {etype} ({status})"
    return ApiError(status=status, error_type=etype, message=body, delay=delay)


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


# ---------------------------------------------------------------- the server


class FakeAnthropic:
    """The fake API: its script, its record of requests, and its server task.

    Start it with ``base_url = await nursery.start(fake.serve)``; it serves until
    that nursery is cancelled.
    """

    def __init__(
        self,
        responder: Responder | Sequence[Reply] | None = None,
        *,
        default: Reply | None = None,
        is_main: Callable[[RecordedRequest], bool] = offers_tools,
    ) -> None:
        self.default: Reply = default or text("OK.", input_tokens=5, output_tokens=2)
        self.is_main = is_main
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._responder: Responder = lambda _request: self.default
        self._changed = trio.Event()
        self._tool_ids = itertools.count(1)
        if responder is not None:
            self.script(responder)

    def script(self, responder: Responder | Sequence[Reply]) -> None:
        """Decide how main requests are answered: a function of the request, or
        replies in order (then ``default`` once they run out)."""
        if callable(responder):
            self._responder = responder
            return
        queue = list(responder)

        def next_in_queue(_request: RecordedRequest) -> Reply:
            return queue.pop(0) if queue else self.default

        self._responder = next_in_queue

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_messages]

    @property
    def main_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if self.is_main(r)]

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool] | None = None
    ) -> RecordedRequest:
        """The first request matching ``predicate`` (default: a main one), waiting
        for it if need be. Callers bound the wait (``trio.fail_after``)."""
        matches = predicate or self.is_main
        while True:
            for request in self.requests:
                if matches(request):
                    return request
            await self._changed.wait()

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on an ephemeral 127.0.0.1 port; report the base URL once listening."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        host, port = listeners[0].socket.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        task_status.started(self.base_url)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        exchange = _Exchange(stream)
        try:
            # HTTP/1.1 keep-alive: the CLI reuses its connection across turns.
            while (request := await exchange.read_request()) is not None:
                self.requests.append(request)
                self._changed.set()
                self._changed = trio.Event()
                if not await self._respond(exchange, request) or not exchange.next_cycle():
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return  # the client went away (killed CLI, timeout): nobody to answer
        finally:
            await stream.aclose()

    async def _respond(self, exchange: _Exchange, request: RecordedRequest) -> bool:
        """Answer one request; False when the connection must close."""
        if self.is_main(request):
            return await self._reply(exchange, request, self._responder(request))
        if request.is_messages:
            return await self._reply(exchange, request, self.default)
        if request.method == "POST" and request.path == "/v1/messages/count_tokens":
            return await exchange.send_json(200, {"input_tokens": 100})
        if request.method == "HEAD" or (request.method, request.path) == ("GET", "/"):
            return await exchange.send_json(200, None)
        error = api_error(404, f"fake: no route for {request.method} {request.path}")
        return await exchange.send_json(404, _error_json(error))

    async def _reply(self, exchange: _Exchange, request: RecordedRequest, reply: Reply) -> bool:
        if reply.delay:
            await trio.sleep(reply.delay)  # the server simulating latency
        msg_id = f"msg_fake_{uuid.uuid4().hex[:20]}"
        if isinstance(reply, ApiError):
            return await exchange.send_json(reply.status, _error_json(reply))
        if isinstance(reply, Drop):
            if reply.mid_stream and request.streaming:
                await exchange.start_stream()
                empty = Message(content=(), stop_reason="end_turn")
                name, event = next(_stream_events(msg_id, request.model, empty))
                await exchange.send_data(_sse(name, event))
            return False
        message = self._number_tool_calls(reply)
        if not request.streaming:
            return await exchange.send_json(200, _message_json(msg_id, request.model, message))
        await exchange.start_stream()
        for name, event in _stream_events(msg_id, request.model, message):
            await exchange.send_data(_sse(name, event))
        return await exchange.end()

    def _number_tool_calls(self, message: Message) -> Message:
        blocks = tuple(
            dataclasses.replace(b, id=f"toolu_fake_{next(self._tool_ids)}")
            if isinstance(b, ToolUseBlock) and b.id is None
            else b
            for b in message.content
        )
        return dataclasses.replace(message, content=blocks)


# ---------------------------------------------------------------- wire format (pure)


def _error_json(error: ApiError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error.error_type, "message": error.message}}


def _block_json(block: TextBlock | ToolUseBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def _message_json(msg_id: str, model: str, message: Message) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model or "claude-fake",
        "content": [_block_json(b) for b in message.content],
        "stop_reason": message.effective_stop_reason,
        "stop_sequence": None,
        "usage": dataclasses.asdict(message.usage),
    }


def _halves(s: str) -> list[str]:
    """``s`` in two pieces: the real API streams text and JSON in fragments."""
    mid = len(s) // 2
    return [s[:mid], s[mid:]] if mid else [s]


def _stream_events(msg_id: str, model: str, message: Message) -> Iterator[tuple[str, Any]]:
    """The SSE events of ``message``, as (event name, data) pairs."""

    def event(kind: str, **fields: Any) -> tuple[str, Any]:
        return kind, {"type": kind, **fields}

    start = _message_json(msg_id, model, message)
    start.update(content=[], stop_reason=None)
    start["usage"]["output_tokens"] = 1  # the final count comes in message_delta
    yield event("message_start", message=start)
    for index, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in _halves(block.text)]
        else:
            opening = {**_block_json(block), "input": {}}
            pieces = _halves(json.dumps(block.input))
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        yield event("content_block_start", index=index, content_block=opening)
        if index == 0:
            yield event("ping")
        for delta in deltas:
            yield event("content_block_delta", index=index, delta=delta)
        yield event("content_block_stop", index=index)
    stop = {"stop_reason": message.effective_stop_reason, "stop_sequence": None}
    yield event("message_delta", delta=stop, usage=dataclasses.asdict(message.usage))
    yield event("message_stop")


def _sse(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _parse_request(head: h11.Request, raw: bytes) -> RecordedRequest:
    path, _, query = head.target.decode("latin-1").partition("?")
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key, val = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {val}" if key in headers else val
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    method = head.method.decode("ascii")
    return RecordedRequest(method, path, query, headers, body, raw)


# ---------------------------------------------------------------- HTTP/1.1 I/O (h11)


class _Exchange:
    """One server connection: h11 state plus the socket, one request at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._conn = h11.Connection(h11.SERVER)

    async def read_request(self) -> RecordedRequest | None:
        """The next full request, or None when the client closed the connection."""
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                self._conn.receive_data(await self._stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return _parse_request(head, bytes(body))
            else:  # ConnectionClosed (or PAUSED, which a finished cycle never is)
                return None

    def next_cycle(self) -> bool:
        """Get ready for the next request; False when the connection must close."""
        if self._conn.our_state is not h11.DONE or self._conn.their_state is not h11.DONE:
            return False
        self._conn.start_next_cycle()
        return True

    async def _send(self, event: h11.Event) -> None:
        await self._stream.send_all(self._conn.send(event) or b"")

    async def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        request_id = ("request-id", f"req_fake_{uuid.uuid4().hex[:16]}")
        await self._send(h11.Response(status_code=status, headers=[*headers, request_id]))

    async def start_stream(self) -> None:
        """200 with an SSE body of unknown length (chunked)."""
        await self._start(
            200, [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        )

    async def send_data(self, data: bytes) -> None:
        await self._send(h11.Data(data=data))

    async def end(self) -> bool:
        await self._send(h11.EndOfMessage())
        return True

    async def send_json(self, status: int, payload: Any) -> bool:
        """A complete response; ``payload`` None sends an empty body."""
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        await self._start(status, headers)
        if body:
            await self.send_data(body)
        return await self.end()
