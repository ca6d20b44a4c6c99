"""Between the wire and the SDK: every line vetted, requests in flight bounded.

`serve` reads the wire itself instead of handing fd 0 to the SDK: a line that
is not JSON-RPC, too deep or too long gets its JSON-RPC error reply here (the
SDK would drop it unanswered, or stall on it), and a client that writes
without reading meets a full pipe once `MAX_IN_FLIGHT` requests wait for the
SDK, instead of a server that grows without bound. Everything else passes to
the SDK untouched and in order. Nothing here imports the SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from agent_dispatch.server import wire

log = logging.getLogger("agent_dispatch.server.front")

_QUEUE = 8  # lines read ahead of the SDK; the reader blocks beyond that
# Requests the SDK is working on; the reader stops reading beyond that, so a client that
# writes without reading gets a full pipe, not a server that grows without bound.
MAX_IN_FLIGHT = 64


class Front:
    """Between the wire and the SDK: reads and vets every line (`wire.vet`).

    `pump()` reads the wire into a queue the SDK iterates (`source`); the SDK
    writes through `sink`. `on_broken` is called when the client's end of the
    wire is gone (the session should end).
    """

    def __init__(
        self,
        rx: trio.abc.ReceiveStream,
        tx: trio.abc.SendStream,
        *,
        on_broken: Callable[[], None],
        max_line: int = wire.DEFAULT_MAX_LINE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._rx, self._tx = rx, tx
        self._on_broken = on_broken
        self._max_line = max_line
        self._in_flight = _InFlight(max_in_flight)
        self._opened = False
        self._send_lock = trio.Lock()
        self._queue_in, self._queue_out = trio.open_memory_channel[str](_QUEUE)
        self.source = self._queue_out
        self.sink = _Sink(self)

    @property
    def in_flight(self) -> int:
        """Requests the SDK has and has not answered yet."""
        return self._in_flight.count

    async def pump(self) -> None:
        """Read the wire until EOF; the SDK sees EOF once it has read everything before it.

        Every line is vetted first: what the SDK would drop unanswered (not
        JSON-RPC, too deep, too long) is answered here with the JSON-RPC error,
        and nothing a line holds can end the session.
        """
        splitter = wire.LineSplitter(self._max_line)
        async with self._queue_in:
            while data := await self._rx.receive_some(65536):
                for frame in splitter.feed(data):
                    await self._take(frame)
            for frame in splitter.end():
                await self._take(frame)

    async def _take(self, frame: wire.Frame) -> None:
        if isinstance(frame, wire.Oversized):
            log.warning("a message of %d bytes exceeds the limit", frame.size)
            verdict: wire.Verdict = wire.oversized_reply(frame, self._max_line)
        else:
            verdict = wire.vet(frame.data)
        if isinstance(verdict, wire.Drop):
            log.debug("dropped %s", verdict.reason)
        elif isinstance(verdict, wire.Reply):
            await self._write(_encode(verdict.message))
        else:
            await self._forward(verdict)

    async def _forward(self, verdict: wire.Forward) -> None:
        if not self._opened:
            self._opened = True
            log.debug("the client opened with %s", verdict.message.get("method"))
        if verdict.request is not None:
            await self._in_flight.admit(verdict.request)  # blocks the reader while the SDK is full
        if verdict.cancels is not None:
            self._in_flight.settle(verdict.cancels)  # the SDK never answers a cancelled request
        await self._queue_in.send(verdict.text)

    async def _from_sdk(self, text: str) -> None:
        head = _head(text)
        if head is not None and head.method is None and head.id is not None:
            self._in_flight.settle(head.id)
        await self._write(text)

    async def _write(self, text: str) -> None:
        async with self._send_lock:
            try:
                await self._tx.send_all(text.encode("utf-8"))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.info("the client closed stdout: shutting down")
                self._on_broken()


class _InFlight:
    """Requests handed to the SDK and not answered yet, bounded: `admit` waits for room.

    Keyed as the SDK correlates ids ("7" is 7); a duplicate id counts twice.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ids: dict[wire.RequestId, int] = {}
        self.count = 0
        self._room = trio.Event()

    async def admit(self, rid: wire.RequestId) -> None:
        while self.count >= self._limit:
            self._room = trio.Event()
            await self._room.wait()
        key = wire.request_key(rid)
        self._ids[key] = self._ids.get(key, 0) + 1
        self.count += 1

    def settle(self, rid: wire.RequestId) -> None:
        key = wire.request_key(rid)
        held = self._ids.get(key, 0)
        if held == 0:
            return
        if held == 1:
            del self._ids[key]
        else:
            self._ids[key] = held - 1
        self.count -= 1
        self._room.set()


class _Sink:
    """The SDK's stdout: its writer task calls write() then flush() per message."""

    def __init__(self, front: Front) -> None:
        self._front = front

    async def write(self, text: str) -> None:
        await self._front._from_sdk(text)

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


class _Head(msgspec.Struct):
    """What the Front needs of the SDK's own messages: is it an answer, to which id."""

    id: str | int | None = None
    method: str | None = None


_HEAD = msgspec.json.Decoder(_Head)


def _head(text: str) -> _Head | None:
    try:
        return _HEAD.decode(text)  # skips the rest without building it
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _encode(message: dict[str, Any] | list[dict[str, Any]]) -> str:
    return msgspec.json.encode(message).decode("utf-8") + "\n"
