"""The Front between the wire and the SDK: bounded lines, bounded requests in flight.

The SDK side is a stand-in that answers only when a test says so, so "the SDK
is busy" is a fact of the test, not a race; the tests at the end put the real
SDK behind the Front (`tests.front_support.harness`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from agent_dispatch.server.front import Front
from tests.front_support import INITIALIZED, harness, initialize
from tests.front_support import request as rpc
from tests.server_support import Workspace

pytest_plugins = ("tests.server_fixtures",)  # ws


def request(rid: int | str, method: str = "ping") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method}).encode() + b"\n"


class StandIn:
    """The SDK's side: takes the lines the Front passes, answers on demand."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.received: list[dict[str, Any]] = []

    async def run(self) -> None:
        async for text in self.front.source:
            self.received.append(json.loads(text))

    async def answer(self, rid: int | str) -> None:
        await self.front.sink.write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {}}) + "\n")


class Client:
    def __init__(self, send: trio.testing.MemorySendStream, receive: Any) -> None:
        self.send, self._receive = send, receive
        self._buffer = b""

    async def recv(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            self._buffer += await self._receive.receive_some()
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message


@asynccontextmanager
async def front(**options: Any) -> AsyncIterator[tuple[Client, StandIn]]:
    c2s_send, c2s_receive = trio.testing.memory_stream_one_way_pair()
    s2c_send, s2c_receive = trio.testing.memory_stream_one_way_pair()
    the_front = Front(c2s_receive, s2c_send, on_broken=lambda: None, **options)
    stand_in = StandIn(the_front)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(the_front.pump)
            nursery.start_soon(stand_in.run)
            yield Client(c2s_send, s2c_receive), stand_in
            nursery.cancel_scope.cancel()


async def test_a_client_that_writes_without_reading_stops_being_read_at_the_limit() -> None:
    async with front(max_in_flight=3) as (client, sdk):
        await client.send.send_all(b"".join(request(i) for i in range(50)))
        await trio.testing.wait_all_tasks_blocked()
        assert [m["id"] for m in sdk.received] == [0, 1, 2]
        assert sdk.front.in_flight == 3
        await sdk.answer(1)  # one answered: one more comes in, no more
        await trio.testing.wait_all_tasks_blocked()
        assert [m["id"] for m in sdk.received] == [0, 1, 2, 3]
        for rid in (0, 2, 3):
            await sdk.answer(rid)
        await trio.testing.wait_all_tasks_blocked()
        assert len(sdk.received) == 7


async def test_a_cancelled_request_frees_its_place_though_the_sdk_never_answers_it() -> None:
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "0"}}
    async with front(max_in_flight=1) as (client, sdk):
        await client.send.send_all(request(0) + json.dumps(cancel).encode() + b"\n" + request(1))
        await trio.testing.wait_all_tasks_blocked()
        assert [m.get("id") for m in sdk.received] == [0, None, 1]  # no answer was needed
        assert sdk.front.in_flight == 1  # request 1
        await sdk.answer(0)  # an answer the SDK should not send frees nothing twice
        assert sdk.front.in_flight == 1
        await client.send.send_all(request(2))
        await trio.testing.wait_all_tasks_blocked()
        assert len(sdk.received) == 3


async def test_notifications_and_answers_to_the_sdk_are_never_held_back() -> None:
    async with front(max_in_flight=1) as (client, sdk):
        await client.send.send_all(request(0))
        note = json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
        await client.send.send_all(note.encode() + b"\n")
        await trio.testing.wait_all_tasks_blocked()
        assert len(sdk.received) == 2 and sdk.front.in_flight == 1


async def test_an_oversized_line_is_answered_and_the_next_one_served() -> None:
    async with front(max_line=1000) as (client, sdk):
        big = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"x": "y" * 5000}}
        await client.send.send_all(json.dumps(big).encode() + b"\n" + request(6))
        reply = await client.recv()
        assert reply["id"] == 5 and reply["error"]["code"] == -32600
        assert "exceeds the limit of 1000 bytes" in reply["error"]["message"]
        await trio.testing.wait_all_tasks_blocked()
        assert [m["id"] for m in sdk.received] == [6]


async def test_a_line_that_breaks_json_decoders_is_answered_and_serving_goes_on() -> None:
    async with front() as (client, sdk):
        await client.send.send_all(b"[" * 1000 + b"\n" + b"[" * 100_000 + b"]\n" + request(1))
        first, second = await client.recv(), await client.recv()
        assert first["error"]["code"] == second["error"]["code"] == -32700
        await trio.testing.wait_all_tasks_blocked()
        assert [m["id"] for m in sdk.received] == [1]


# -- with the real SDK behind the Front -----------------------------------------------------


async def test_the_handshake_is_the_sdks_and_the_opening_method_is_logged(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent_dispatch.server.front")
    async with harness(ws) as h:
        await h.wire.send(initialize(), INITIALIZED, rpc(2, "tools/list"))
        await trio.testing.wait_all_tasks_blocked()
        assert h.front.in_flight == 2  # read and passed on; nothing answered before the SDK
        h.start_sdk()
        assert (await h.wire.recv() or {}).get("id") == 1
        listed = await h.wire.recv()
        assert listed is not None and "dispatch" in {t["name"] for t in listed["result"]["tools"]}
        await h.wire.close()
        assert await h.wire.recv() is None
    assert "the client opened with initialize" in caplog.messages


HOSTILE = [  # in order: answered with these ids and codes by the Front, not the SDK
    b"garbage\n",
    b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"dispatch",'
    # a lone surrogate, which Node's JSON.stringify sends
    b'"arguments":{"agent":"alpha","task":"\\udc80"}}}\n',
    b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":"x"}\n',
    b"{}\n",
    b"\n",  # blank: nothing to answer
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}\n',
]


@pytest.mark.parametrize("sdk_running", [False, True], ids=["before-the-sdk-runs", "serving"])
async def test_lines_that_are_not_json_rpc_are_answered_not_dropped(
    ws: Workspace, sdk_running: bool
) -> None:
    async with harness(ws) as h:

        async def open_session() -> None:
            h.start_sdk()
            await h.wire.send(initialize(), INITIALIZED)
            assert (await h.wire.recv() or {}).get("id") == 1

        if sdk_running:
            await open_session()
        await h.wire.send_raw(b"".join(HOSTILE))
        replies = [await h.wire.recv() for _ in range(4)]
        assert [(r or {}).get("id") for r in replies] == [None, 7, 8, None]
        codes = [(r or {})["error"]["code"] for r in replies]
        assert codes == [-32700, -32700, -32602, -32600]
        assert "surrogate" in (replies[1] or {})["error"]["message"]
        if not sdk_running:
            await open_session()
        await h.wire.send(rpc(9, "tools/call", name="list_agents", arguments={}))
        answer = await h.wire.recv()  # nothing else came first: the notification got no reply
        assert answer is not None and answer["id"] == 9 and "result" in answer
        await h.wire.close()
        assert await h.wire.recv() is None


async def test_a_client_that_closed_its_end_ends_the_session() -> None:
    c2s_send, c2s_receive = trio.testing.memory_stream_one_way_pair()
    s2c_send, s2c_receive = trio.testing.memory_stream_one_way_pair()
    calls = []
    the_front = Front(c2s_receive, s2c_send, on_broken=lambda: calls.append(1))
    await s2c_receive.aclose()
    await c2s_send.send_all(b"garbage\n")  # its error reply meets the closed end
    await c2s_send.aclose()
    with trio.fail_after(10):
        await the_front.pump()
    assert calls == [1]
