"""The per-user service in this process (on a ScriptedRunner), and a front's end of
its socket: the hello, then JSON-RPC lines (issue #16)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from agent_dispatch import handshake, offload, rendezvous
from agent_dispatch.runtime.scripted import ScriptedRunner
from agent_dispatch.server.service import Service, serve_service
from agent_dispatch.storage.config import ConfigStore
from tests.front_support import INITIALIZED, initialize

VERSION = "0.1.0"


def write_config(env: dict[str, str], *, limit: int = 1, idle: float = 900) -> None:
    """Agents backend (timeout 3600 s) and web, `limit` slots, `idle` s to the idle exit."""
    root = Path(env["AGENT_DISPATCH_CONFIG"]).parent
    for name in ("backend", "web"):
        (root / name).mkdir(exist_ok=True)
    Path(env["AGENT_DISPATCH_CONFIG"]).write_text(
        f"agents:\n"
        f"  backend: {{directory: {root / 'backend'}, timeout: 3600}}\n"
        f"  web: {{directory: {root / 'web'}}}\n"
        f"settings:\n  max_concurrency: {limit}\n  service_idle_seconds: {idle}\n"
    )


class Running:
    """A service started by `running_service`: `exited` is set once serve_service returned."""

    def __init__(self, service: Service, exited: trio.Event) -> None:
        self.service = service
        self.exited = exited


@asynccontextmanager
async def running_service(
    env: dict[str, str], runner: ScriptedRunner, *, version: str = VERSION
) -> AsyncIterator[Running]:
    store = ConfigStore(Path(env["AGENT_DISPATCH_CONFIG"]))
    exited = trio.Event()

    async def serve(task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve_service(
                store, env=env, runner=runner, version=version, task_status=task_status
            )
        finally:
            exited.set()

    # Blocking calls run inline (offload.inline): with the autojump clock, a deadline
    # must never pass while a worker thread writes a record or takes the lock.
    with offload.inline():
        async with trio.open_nursery() as nursery:
            service = await nursery.start(serve)
            await service.listening.wait()
            yield Running(service, exited)
            nursery.cancel_scope.cancel()


class Conn:
    """A front's end of one connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""
        self._next = 100

    async def send_line(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_line(self) -> bytes:
        """The next line, b"" at EOF."""
        while b"\n" not in self._buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    async def hello(
        self, env: dict[str, str] | None = None, *, version: str = VERSION, cwd: str = "/"
    ) -> handshake.Welcome | handshake.Refusal:
        env = {"PATH": "/usr/bin"} if env is None else env
        await self.send_line(handshake.encode_hello(version, os.getpid(), cwd, env))
        return handshake.parse_reply(await self.read_line())

    async def send(self, *messages: dict[str, Any]) -> None:
        await self.stream.send_all(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def recv(self) -> dict[str, Any] | None:
        line = await self.read_line()
        if not line:
            return None
        message: dict[str, Any] = json.loads(line)
        return message

    async def start_mcp(self) -> None:
        await self.send(initialize())
        reply = await self.recv()
        assert reply is not None and reply.get("id") == 1, reply
        await self.send(INITIALIZED)

    async def call(self, name: str, **arguments: Any) -> Any:
        """tools/call; the structured answer (notifications on the way are skipped)."""
        self._next += 1
        rid = self._next
        params = {"name": name, "arguments": arguments}
        await self.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})
        while True:
            reply = await self.recv()
            assert reply is not None, "the service closed the session"
            if reply.get("id") == rid:
                assert "result" in reply, reply
                return reply["result"]["structuredContent"]

    async def end(self) -> None:
        """EOF from the front (SHUT_WR), then read until the service closes."""
        await self.stream.send_eof()
        while await self.stream.receive_some():
            pass
        await self.stream.aclose()


@asynccontextmanager
async def connected(env: dict[str, str]) -> AsyncIterator[Conn]:
    stream = await trio.open_unix_socket(os.fspath(rendezvous.socket_path(env)))
    async with stream:
        yield Conn(stream)


@asynccontextmanager
async def session(
    env: dict[str, str], caller_env: dict[str, str] | None = None
) -> AsyncIterator[Conn]:
    """A welcomed, initialized MCP session for a caller with `caller_env`."""
    async with connected(env) as conn:
        reply = await conn.hello(caller_env)
        assert isinstance(reply, handshake.Welcome), reply
        await conn.start_mcp()
        yield conn


async def status(env: dict[str, str]) -> handshake.Status:
    async with connected(env) as conn:
        await conn.send_line(handshake.encode_status_request(VERSION, os.getpid()))
        reply = handshake.parse_status(await conn.read_line())
    assert isinstance(reply, handshake.Status), reply
    return reply


__all__ = ["Conn", "Running", "connected", "running_service", "session", "status"]
