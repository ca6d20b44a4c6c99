"""The early handshake: answered before the SDK is up, replayed to it, checked against it.

The wire is a pair of in-memory streams; the SDK side is the real MCP server
(`run_session` over `build_server`), started only when a test releases it, so
"before the SDK is ready" is a fact of the test, not a race.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from agent_dispatch.server import early
from agent_dispatch.server.app import record_handshake, run_session
from agent_dispatch.server.early import HANDSHAKE_FILE, Front, Handshake, load_handshake
from tests.server_support import PROTOCOL_VERSION, Workspace, in_memory_server

pytest_plugins = ("tests.server_fixtures",)  # ws

CLIENT = {"name": "test", "version": "1"}


def initialize(version: str = PROTOCOL_VERSION, **params: Any) -> dict[str, Any]:
    body = {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT, **params}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": body}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


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
        self.broken = 0

    def start_sdk(self) -> None:
        self._sdk.set()


@asynccontextmanager
async def harness(ws: Workspace, handshake: Handshake | None) -> AsyncIterator[Harness]:
    c2s_send, c2s_receive = trio.testing.memory_stream_one_way_pair()
    s2c_send, s2c_receive = trio.testing.memory_stream_one_way_pair()
    released = trio.Event()
    box: list[Harness] = []

    def broken() -> None:
        box[0].broken += 1

    front = Front(c2s_receive, s2c_send, handshake, on_broken=broken)
    box.append(Harness(Wire(c2s_send, s2c_receive), front, released))

    async def serve() -> None:
        await released.wait()
        front.sdk_ready()
        async with in_memory_server(ws) as (_, server):
            await run_session(server, front.source, front.sink)
        await s2c_send.aclose()  # the client sees EOF once the session is over

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(front.pump)
            nursery.start_soon(serve)
            yield box[0]


def recorded() -> Handshake:
    handshake = load_handshake()
    assert handshake is not None, (
        "handshake.json does not fit the installed versions: run scripts/gen-handshake"
    )
    return handshake


async def test_the_record_is_what_the_sdk_answers_now(ws: Workspace) -> None:
    on_disk = json.loads(HANDSHAKE_FILE.read_text())
    assert await record_handshake() == on_disk, "stale: run scripts/gen-handshake"
    async with in_memory_server(ws) as (_, live):  # what serve records: its own server
        assert await record_handshake(live) == on_disk


def test_installed_mcp_reads_the_version_metadata_reports() -> None:
    import importlib.metadata

    assert early.installed_mcp() == importlib.metadata.version("mcp")


async def test_handshake_is_answered_before_the_sdk_and_the_sdk_sees_it_too(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    handshake = recorded()
    async with harness(ws, handshake) as h:
        await h.wire.send(initialize(), INITIALIZED, request(2, "tools/list"))
        await h.wire.send(request(3, "tools/call", name="list_agents", arguments={}))
        first, second = await h.wire.recv(), await h.wire.recv()  # the SDK is not running yet
        assert first == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": handshake.initialize(PROTOCOL_VERSION)[1],
        }
        assert second == {
            "jsonrpc": "2.0",
            "id": 2,
            "result": handshake.answer(PROTOCOL_VERSION, "tools/list"),
        }
        assert first["result"]["protocolVersion"] == PROTOCOL_VERSION
        h.start_sdk()
        # The call queued during startup is served by an SDK that took the replayed
        # handshake as its own (else: "Invalid request parameters"); its duplicate
        # answers to the replays never reach the client.
        call = await h.wire.recv()
        assert call is not None and call["id"] == 3
        assert [a["name"] for a in call["result"]["structuredContent"]["agents"]] == [
            "alpha",
            "beta",
        ]
        await h.wire.send(request(4, "tools/list"))
        again = await h.wire.recv()
        assert again == {"jsonrpc": "2.0", "id": 4, "result": second["result"]}
        await h.wire.close()
        assert await h.wire.recv() is None
    assert h.front.answered_early == ["initialize", "tools/list"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not h.front.stale.is_set()


async def test_a_stale_tool_list_is_corrected_with_list_changed(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    real = recorded()
    answers = list(real.answers)
    index = real.versions[PROTOCOL_VERSION]["tools/list"]
    answers[index] = {"tools": real.answer(PROTOCOL_VERSION, "tools/list")["tools"][:1]}
    stale = msgspec.structs.replace(real, answers=answers)
    async with harness(ws, stale) as h:
        await h.wire.send(initialize(), INITIALIZED, request(2, "tools/list"))
        await h.wire.recv()
        early_list = await h.wire.recv()
        assert early_list is not None and len(early_list["result"]["tools"]) == 1
        h.start_sdk()
        assert await h.wire.recv() == {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
        }
        await h.wire.send(request(3, "tools/list"))
        fresh = await h.wire.recv()
        assert fresh is not None and fresh["result"] == real.answer(PROTOCOL_VERSION, "tools/list")
        await h.wire.close()
        assert await h.wire.recv() is None
    assert "the SDK's tools/list differs from the one answered early" in caplog.messages
    assert h.front.stale.is_set()  # serve re-records the user's record on this


async def test_the_capability_to_correct_the_lists_is_declared(ws: Workspace) -> None:
    result = recorded().initialize(PROTOCOL_VERSION)[1]
    for kind in ("tools", "prompts", "resources"):
        assert result["capabilities"][kind]["listChanged"] is True


async def test_the_other_lists_a_client_fetches_are_answered_early_too(ws: Workspace) -> None:
    handshake = recorded()
    lists = ["prompts/list", "resources/list", "resources/templates/list"]
    async with harness(ws, handshake) as h:
        await h.wire.send(initialize(), INITIALIZED)
        await h.wire.send(*(request(rid, method) for rid, method in enumerate(lists, 2)))
        await h.wire.send(request(9, "prompts/list", cursor="x"))  # paging is the SDK's
        await h.wire.recv()
        for rid, method in enumerate(lists, 2):
            answer = await h.wire.recv()
            expected = handshake.answer(PROTOCOL_VERSION, method)
            assert answer == {"jsonrpc": "2.0", "id": rid, "result": expected}
        h.start_sdk()
        paged = await h.wire.recv()
        assert paged is not None and paged["id"] == 9
        await h.wire.close()
        assert await h.wire.recv() is None
    assert h.front.answered_early == ["initialize", *lists]


async def test_a_stale_prompt_list_is_corrected_with_its_own_notification(ws: Workspace) -> None:
    real = recorded()
    answers = [*real.answers, {"prompts": [{"name": "gone"}]}]
    versions = {v: {**m, "prompts/list": len(answers) - 1} for v, m in real.versions.items()}
    stale = msgspec.structs.replace(real, answers=answers, versions=versions)
    async with harness(ws, stale) as h:
        await h.wire.send(initialize(), INITIALIZED, request(2, "prompts/list"))
        await h.wire.recv()
        await h.wire.recv()
        h.start_sdk()
        assert await h.wire.recv() == {
            "jsonrpc": "2.0",
            "method": "notifications/prompts/list_changed",
        }
        await h.wire.close()
        assert await h.wire.recv() is None


async def test_an_unknown_revision_is_negotiated_as_the_sdk_does(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    handshake = recorded()
    async with harness(ws, handshake) as h:
        await h.wire.send(initialize("1999-01-01"), INITIALIZED, request(2, "tools/list"))
        answer = await h.wire.recv()
        assert answer is not None and answer["result"]["protocolVersion"] == handshake.latest
        await h.wire.recv()
        h.start_sdk()
        await h.wire.close()
        assert await h.wire.recv() is None  # the SDK agreed: nothing to correct
    assert h.front.answered_early == ["initialize", "tools/list"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "opening",
    [
        request(1, "tools/list"),  # no handshake: the 2026 stateless era, or a confused client
        initialize(clientInfo={"name": "no version"}),  # the SDK's to refuse
        {"jsonrpc": "2.0", "id": None, "method": "initialize", "params": initialize()["params"]},
    ],
    ids=["no-initialize", "bad-params", "null-id"],
)
async def test_anything_but_a_plain_handshake_waits_for_the_sdk(
    ws: Workspace, opening: dict[str, Any]
) -> None:
    async def exchange(handshake: Handshake | None) -> tuple[list[str], list[dict[str, Any]]]:
        async with harness(ws, handshake) as h:
            await h.wire.send(opening, INITIALIZED, request(2, "tools/list"))
            await trio.testing.wait_all_tasks_blocked()  # the Front has read all three
            h.start_sdk()
            await h.wire.close()
            replies = []
            while (message := await h.wire.recv()) is not None:
                replies.append(message)
        return h.front.answered_early, replies

    answered, replies = await exchange(recorded())
    assert answered == []
    assert (answered, replies) == await exchange(None)  # the Front was transparent


async def test_without_a_record_everything_waits_for_the_sdk(ws: Workspace) -> None:
    async with harness(ws, None) as h:
        await h.wire.send(initialize(), INITIALIZED, request(2, "tools/list"))
        await trio.testing.wait_all_tasks_blocked()
        h.start_sdk()
        assert (await h.wire.recv() or {}).get("id") == 1
        assert (await h.wire.recv() or {}).get("id") == 2
        await h.wire.close()
        assert await h.wire.recv() is None
    assert h.front.answered_early == []


async def test_a_client_gone_during_the_handshake_ends_the_session(ws: Workspace) -> None:
    c2s_send, c2s_receive = trio.testing.memory_stream_one_way_pair()
    s2c_send, s2c_receive = trio.testing.memory_stream_one_way_pair()
    calls = []
    front = Front(c2s_receive, s2c_send, recorded(), on_broken=lambda: calls.append(1))
    await s2c_receive.aclose()
    await c2s_send.send_all(json.dumps(initialize()).encode() + b"\n")
    await c2s_send.aclose()
    with trio.fail_after(10):
        await front.pump()
    assert calls == [1]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.update(mcp="0.0.1"),
        lambda d: d.update(agent_dispatch="0.0.1"),
        lambda d: d.update(latest="2000-01-01"),
        lambda d: d["versions"]["2025-06-18"].pop("initialize"),
        lambda d: d["versions"]["2025-06-18"].update({"tools/list": 99}),
        lambda d: d.pop("answers"),
    ],
    ids=[
        "other-mcp",
        "other-agent-dispatch",
        "latest-missing",
        "initialize-missing",
        "index-out-of-range",
        "malformed",
    ],
)
def test_a_record_that_does_not_fit_is_not_used(tmp_path: Path, tamper: Any) -> None:
    data = json.loads(HANDSHAKE_FILE.read_text())
    tamper(data)
    path = tmp_path / "handshake.json"
    path.write_text(json.dumps(data))
    assert load_handshake(path) is None


def test_a_missing_or_garbled_record_is_not_used(tmp_path: Path) -> None:
    assert load_handshake(tmp_path / "missing.json") is None
    (tmp_path / "garbled.json").write_text("{not json")
    assert load_handshake(tmp_path / "garbled.json") is None


def test_the_packaged_record_wins_when_it_fits(tmp_path: Path) -> None:
    assert early.choose_handshake({"XDG_CACHE_HOME": str(tmp_path)}) == (recorded(), None)


def test_else_the_users_record_is_used_and_kept_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(early, "HANDSHAKE_FILE", tmp_path / "not-packaged.json")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}
    user = tmp_path / "cache" / "agent-dispatch" / "handshake.json"
    assert early.choose_handshake(env) == (None, user)  # serve records one
    early.save_record(user, HANDSHAKE_FILE.read_bytes())
    assert early.choose_handshake(env) == (recorded(), user)  # and refreshes it when stale
    assert user.stat().st_mode & 0o777 == 0o600
    assert early.user_record_path({"HOME": str(tmp_path)}) == (
        tmp_path / ".cache" / "agent-dispatch" / "handshake.json"
    )


def test_a_record_that_cannot_be_saved_costs_only_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    early.save_record(blocker / "agent-dispatch" / "handshake.json", b"{}")  # no raise
    assert blocker.read_text() == ""


@pytest.mark.parametrize("sdk_ready", [False, True], ids=["during-startup", "serving"])
async def test_lines_that_are_not_json_rpc_are_answered_not_dropped(
    ws: Workspace, sdk_ready: bool
) -> None:
    async with harness(ws, recorded()) as h:
        if sdk_ready:
            h.start_sdk()
        await h.wire.send(initialize(), INITIALIZED)
        assert (await h.wire.recv() or {}).get("id") == 1
        raw = [  # in order: answered with these ids and codes
            b"garbage\n",
            b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"dispatch",'
            # a lone surrogate, which Node's JSON.stringify sends
            b'"arguments":{"agent":"alpha","task":"\\udc80"}}}\n',
            b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":"x"}\n',
            b"{}\n",
            b"\n",  # blank: nothing to answer
            b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}\n',
        ]
        await h.wire.send_raw(b"".join(raw))
        replies = [await h.wire.recv() for _ in range(4)]
        assert [(r or {}).get("id") for r in replies] == [None, 7, 8, None]
        codes = [(r or {})["error"]["code"] for r in replies]
        assert codes == [-32700, -32700, -32602, -32600]
        assert "surrogate" in (replies[1] or {})["error"]["message"]
        h.start_sdk()
        await h.wire.send(request(9, "tools/call", name="list_agents", arguments={}))
        answer = await h.wire.recv()  # nothing else came first: the notification got no reply
        assert answer is not None and answer["id"] == 9 and "result" in answer
        await h.wire.close()
        assert await h.wire.recv() is None
