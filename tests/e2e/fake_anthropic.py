"""A scriptable fake of the Anthropic Messages API on 127.0.0.1, for the real CLI.

The real ``claude`` CLI runs fully offline when ``ANTHROPIC_BASE_URL`` points
here. One agent turn is one ``POST /v1/messages`` (streaming SSE, or plain JSON
when the body has no ``"stream": true``); a tool round trip is two of them, the
second carrying a ``tool_result`` block.

Usage in a test (``fake_api`` is the conftest fixture, already serving)::

    fake_api.script([tool_use("Bash", {"command": "touch x"}), text("done")])
    fake_api.script(tool_round_trip(tool_use(...), text("done")))  # or any
    fake_api.script(lambda request: ...)                           # function
    fake_api.script([text("late", hold=release)])  # sent once `release.set()`
    ... run the CLI with ANTHROPIC_BASE_URL=fake_api.base_url ...
    assert "hello" in fake_api.main_requests[0].user_text

Only *main* requests (by default: ``POST /v1/messages`` offering ``tools``, the
agent's own turns) consume the script. Anything else the CLI may send (title
generation, quota probes) gets ``default``, a short text, so it never eats the
script. Every request, main or not, is recorded in ``requests``.

The reply vocabulary lives in ``fake_script``, the wire format in ``fake_wire``;
this module re-exports the vocabulary so tests import from one place.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable, Sequence

import h11
import trio

from tests.e2e.fake_script import (
    ApiError,
    Drop,
    Message,
    RecordedRequest,
    Reply,
    Responder,
    TextBlock,
    ToolUseBlock,
    Usage,
    api_error,
    offers_tools,
    text,
    tool_round_trip,
    tool_use,
)
from tests.e2e.fake_wire import (
    Exchange,
    error_json,
    message_json,
    sse,
    stream_events,
)

__all__ = ["ApiError", "Drop", "FakeAnthropic", "Message", "RecordedRequest", "Reply"]
__all__ += ["Responder", "TextBlock", "ToolUseBlock", "Usage"]
__all__ += ["api_error", "offers_tools", "text", "tool_round_trip", "tool_use"]


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
        await self.wait_until(lambda: any(matches(r) for r in self.requests))
        return next(r for r in self.requests if matches(r))

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checking it as each request arrives
        (e.g. ``lambda: len(fake.main_requests) >= 4``). Callers bound the wait."""
        while not condition():
            await self._changed.wait()

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on an ephemeral 127.0.0.1 port; report the base URL once listening."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        host, port = listeners[0].socket.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        task_status.started(self.base_url)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        exchange = Exchange(stream)
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

    async def _respond(self, exchange: Exchange, request: RecordedRequest) -> bool:
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
        return await exchange.send_json(404, error_json(error))

    async def _reply(self, exchange: Exchange, request: RecordedRequest, reply: Reply) -> bool:
        if reply.delay:
            await trio.sleep(reply.delay)  # the server simulating latency
        if reply.hold is not None:
            await reply.hold.wait()  # the test decides when this reply goes out
        msg_id = f"msg_fake_{uuid.uuid4().hex[:20]}"
        if isinstance(reply, ApiError):
            return await exchange.send_json(reply.status, error_json(reply))
        if isinstance(reply, Drop):
            if reply.mid_stream and request.streaming:
                await exchange.start_stream()
                empty = Message(content=(), stop_reason="end_turn")
                name, event = next(stream_events(msg_id, request.model, empty))
                await exchange.send_data(sse(name, event))
            return False
        message = self._number_tool_calls(reply)
        if not request.streaming:
            return await exchange.send_json(200, message_json(msg_id, request.model, message))
        await exchange.start_stream()
        for name, event in stream_events(msg_id, request.model, message):
            await exchange.send_data(sse(name, event))
        return await exchange.end()

    def _number_tool_calls(self, message: Message) -> Message:
        blocks = tuple(
            dataclasses.replace(b, id=f"toolu_fake_{next(self._tool_ids)}")
            if isinstance(b, ToolUseBlock) and b.id is None
            else b
            for b in message.content
        )
        return dataclasses.replace(message, content=blocks)
