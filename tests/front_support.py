"""The Front with the real SDK behind it, over in-memory streams.

The SDK side (`run_session` over `build_server`) starts only when a test
releases it, so "before the SDK runs" is a fact of the test, not a race.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from agent_dispatch.server.app import run_session
from agent_dispatch.server.front import Front
from tests.server_support import PROTOCOL_VERSION, Workspace, in_memory_server

CLIENT = {"name": "test", "version": "1"}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def initialize(version: str = PROTOCOL_VERSION, **params: Any) -> dict[str, Any]:
    body = {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT, **params}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": body}


def request(rid: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


class Wire:
    """The client's end: JSON-RPC lines out to the Front, lines back from it."""

    def __init__(self, send: trio.testing.MemorySendStream, receive: Any) -> None:
        self._send, self._receive = send, receive
        self._buffer = b""

    async def send(self, *messages: dict[str, Any]) -> None:
        await self._send.send_all(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def send_raw(self, data: bytes) -> None:
        await self._send.send_all(data)

    async def close(self) -> None:
        await self._send.aclose()

    async def recv(self) -> dict[str, Any] | None:
        """The next message, or None at EOF."""
        while b"\n" not in self._buffer:
            data = await self._receive.receive_some()
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message


class Harness:
    def __init__(self, wire: Wire, front: Front, sdk: trio.Event) -> None:
        self.wire, self.front, self._sdk = wire, front, sdk

    def start_sdk(self) -> None:
        self._sdk.set()


@asynccontextmanager
async def harness(ws: Workspace) -> AsyncIterator[Harness]:
    c2s_send, c2s_receive = trio.testing.memory_stream_one_way_pair()
    s2c_send, s2c_receive = trio.testing.memory_stream_one_way_pair()
    released = trio.Event()
    front = Front(c2s_receive, s2c_send, on_broken=lambda: None)
    under_test = Harness(Wire(c2s_send, s2c_receive), front, released)

    async def serve() -> None:
        await released.wait()
        async with in_memory_server(ws) as (_, server):
            await run_session(server, front.source, front.sink)
        await s2c_send.aclose()  # the client sees EOF once the session is over

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(front.pump)
            nursery.start_soon(serve)
            yield under_test
