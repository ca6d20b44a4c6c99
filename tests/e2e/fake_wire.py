"""The Anthropic Messages API on the wire, for the fake: SSE and JSON bodies (pure),
request parsing, and one HTTP/1.1 server connection (h11 over a trio stream)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import h11
import trio

from tests.e2e.fake_script import ApiError, Message, RecordedRequest, TextBlock, ToolUseBlock

# ---------------------------------------------------------------- wire format (pure)


def error_json(error: ApiError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error.error_type, "message": error.message}}


def block_json(block: TextBlock | ToolUseBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def message_json(msg_id: str, model: str, message: Message) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model or "claude-fake",
        "content": [block_json(b) for b in message.content],
        "stop_reason": message.effective_stop_reason,
        "stop_sequence": None,
        "usage": dataclasses.asdict(message.usage),
    }


def _halves(s: str) -> list[str]:
    """``s`` in two pieces: the real API streams text and JSON in fragments."""
    mid = len(s) // 2
    return [s[:mid], s[mid:]] if mid else [s]


def stream_events(msg_id: str, model: str, message: Message) -> Iterator[tuple[str, Any]]:
    """The SSE events of ``message``, as (event name, data) pairs."""

    def event(kind: str, **fields: Any) -> tuple[str, Any]:
        return kind, {"type": kind, **fields}

    start = message_json(msg_id, model, message)
    start.update(content=[], stop_reason=None)
    start["usage"]["output_tokens"] = 1  # the final count comes in message_delta
    yield event("message_start", message=start)
    for index, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in _halves(block.text)]
        else:
            opening = {**block_json(block), "input": {}}
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


def sse(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def parse_request(head: h11.Request, raw: bytes, received_at: float = 0.0) -> RecordedRequest:
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
    return RecordedRequest(method, path, query, headers, body, raw, received_at)


# ---------------------------------------------------------------- HTTP/1.1 I/O (h11)


class Exchange:
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
                return parse_request(head, bytes(body), trio.current_time())
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
