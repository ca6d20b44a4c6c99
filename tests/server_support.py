"""Helpers for the MCP server tests (the fixtures live in tests/server_fixtures.py).

- `Workspace`: a config, a jobs dir, a fake-claude log dir and two agent
  projects under one tmp dir, plus the environment that points at them.
- `in_memory_server`: a Dispatcher and the MCP server built over it (its runs go to a
  given Runner, by default ClaudeRunner with the fake claude).
- `Tools`: a thin wrapper over `mcp.Client.call_tool` that returns the
  structured answer and checks it matches the JSON text.
- `StdioServer`: `agent-dispatch serve` as a real child process, driven by a
  minimal hand-rolled JSON-RPC client (we need its pid, its stdin and its
  exit status, which `mcp.Client` keeps to itself).

Test modules load the fixtures (`ws`, `served`, `tools`) with
`pytest_plugins = ("tests.server_fixtures",)` and import what else they need from here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcp
import trio
import yaml
from mcp.client.stdio import StdioServerParameters
from mcp.server.mcpserver import MCPServer
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import TextContent

from agent_dispatch.models import DispatchRequest, DispatchResult
from agent_dispatch.runtime.runner import Runner
from agent_dispatch.server.app import build_server
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.policy import TOOLS
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import Job, JobStore, new_job_id
from tests.fake_claude import fake_env, read_runs

# `agent-dispatch serve`, run by this interpreter (python -m works without the venv's bin on
# PATH): the front relaying to the sandbox's service, or the in-process server.
SERVE_ARGV = [sys.executable, "-m", "agent_dispatch", "serve"]
SERVE_MODES = ("standalone", "relay")
PROTOCOL_VERSION = "2025-06-18"
MODES = ("auto", "legacy")


def serve_argv(serve_mode: str) -> list[str]:
    assert serve_mode in SERVE_MODES, serve_mode
    return [*SERVE_ARGV, "--standalone"] if serve_mode == "standalone" else SERVE_ARGV


@dataclass
class Workspace:
    """One tmp dir holding everything a server under test reads and writes."""

    root: Path
    config: Path
    jobs: Path
    log: Path
    alpha: Path  # the project directory of agent "alpha"
    beta: Path  # ... of agent "beta"
    runtime: Path  # XDG_RUNTIME_DIR: where the sandbox's service puts its socket
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, runtime: Path | None = None) -> Workspace:
        """`runtime`: a short dir (a socket path must stay under ~100 bytes); by default
        one under `root`, which for a long tmp path means rendezvous's /tmp fallback."""
        ws = cls(
            root=root,
            config=root / "cfg" / "agents.yaml",
            jobs=root / "jobs",
            log=root / "log",
            alpha=root / "alpha",
            beta=root / "beta",
            runtime=runtime or root / "run",
        )
        ws.runtime.mkdir(mode=0o700, exist_ok=True)
        for d in (ws.log, ws.alpha, ws.beta, ws.config.parent):
            d.mkdir(parents=True)
        (ws.alpha / "CLAUDE.md").write_text("# Alpha\n\nThe alpha service: billing and invoices.\n")
        (ws.beta / "README.md").write_text("# Beta\n\nBeta renders the web frontend.\n")
        ws.write_config()
        return ws

    def config_dict(self, **settings: Any) -> dict[str, Any]:
        return {
            "agents": {
                "alpha": {"directory": str(self.alpha), "description": "billing"},
                "beta": {"directory": str(self.beta), "description": "frontend"},
            },
            "groups": {
                "team": {
                    "description": "the product team",
                    "shared_context": "We ship on Fridays.",
                    "members": [
                        {"agent": "alpha", "use_for": "money"},
                        {"agent": "ghost", "use_for": "haunting"},
                    ],
                }
            },
            "settings": {**self.settings, **settings},
        }

    def write_config(self, **settings: Any) -> None:
        """(Re)write agents.yaml: agents alpha and beta, group team (alpha + a dangling ghost)."""
        self.write_raw(yaml.safe_dump(self.config_dict(**settings)).encode())

    def write_raw(self, data: bytes) -> None:
        # A new inode and size each time, so the store's mtime/size check always sees it.
        tmp = self.config.with_name(".agents.yaml.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.config)

    def env(self, **extra: str) -> dict[str, str]:
        """The server's environment: the fake claude first on PATH, our config and jobs dir."""
        env = fake_env(self.log)
        env.pop("AGENT_DISPATCH_DEPTH", None)
        env.pop("AGENT_DISPATCH_CLAUDE", None)
        env.update(extra)  # a test may set those two (a nested caller's depth, say)
        env["AGENT_DISPATCH_CONFIG"] = str(self.config)
        env["AGENT_DISPATCH_JOBS_DIR"] = str(self.jobs)
        env["XDG_RUNTIME_DIR"] = str(self.runtime)
        env["XDG_CACHE_HOME"] = str(self.root / "cache")
        return env

    def runs(self) -> list[dict[str, Any]]:
        return read_runs(self.log)

    def job_files(self) -> list[Path]:
        return sorted(self.jobs.glob("*.json")) if self.jobs.exists() else []


@asynccontextmanager
async def in_memory_server(
    ws: Workspace, runner: Runner | None = None
) -> AsyncIterator[tuple[Dispatcher, MCPServer]]:
    """The server over a Dispatcher whose runs go to `runner` (default: the fake claude)."""
    store = ConfigStore(ws.config)
    async with Dispatcher.open(
        store, env=ws.env(), jobs=JobStore(ws.jobs), runner=runner, policy=TOOLS
    ) as dispatcher:
        yield dispatcher, build_server(dispatcher, store)


@dataclass
class Reply:
    """One tools/call answer: the structured payload and whether it is an error."""

    is_error: bool
    data: Any
    text: str

    @property
    def envelope(self) -> dict[str, str]:
        """The `{"error", "hint"}` envelope; fails the test when this is not one."""
        assert self.is_error, f"expected an error envelope, got {self.data!r}"
        assert isinstance(self.data, dict), self.text
        assert set(self.data) == {"error", "hint"}, self.data
        assert self.data["error"].strip(), self.data
        assert self.data["hint"].strip(), self.data
        return self.data

    @property
    def ok(self) -> Any:
        assert not self.is_error, f"expected success, got {self.text}"
        return self.data


@dataclass
class Tools:
    """Call tools by name with keyword arguments."""

    client: mcp.Client
    mode: str

    async def __call__(self, tool: str, /, **args: Any) -> Reply:
        return await self.call(tool, args)

    async def call(
        self, tool: str, args: dict[str, Any], progress: ProgressFnT | None = None
    ) -> Reply:
        result = await self.client.call_tool(tool, args, progress_callback=progress)
        text = "".join(c.text for c in result.content if isinstance(c, TextContent))
        data = result.structured_content
        if data is not None:
            assert json.loads(text) == data, "the JSON text must mirror structuredContent"
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None
        return Reply(is_error=bool(result.is_error), data=data, text=text)


async def start_job(tools: Tools, agent: str, task: str) -> str:
    """dispatch_async; the new job's id (it is pending when the answer comes)."""
    out = (await tools("dispatch_async", agent=agent, task=task)).ok
    assert out["status"] == "pending" and out["agent"] == agent
    job_id: str = out["job_id"]
    return job_id


async def status(tools: Tools, job_id: str) -> dict[str, Any]:
    out: dict[str, Any] = (await tools("dispatch_status", job_id=job_id)).ok
    return out


class ProgressLog:
    """A progress callback for `mcp.Client`.

    The client's JSON-RPC dispatcher runs each progress callback in a task of its
    own, so callbacks may run out of order, and after `call_tool` returned. Wait
    for them with `wait_for`; `messages` orders them by the server's step number
    (the wire order is checked with the raw client in test_server_stdio.py).
    """

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []
        self._changed = trio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        """Until `count` notifications arrived. Callers bound it with `trio.fail_after`."""
        while len(self.seen) < count:
            await self._changed.wait()

    @property
    def ordered(self) -> list[tuple[float, float | None, str | None]]:
        return sorted(self.seen, key=lambda item: item[0])

    @property
    def messages(self) -> list[str | None]:
        return [m for _, _, m in self.ordered]


# -- over real stdio --------------------------------------------------------------------


def stdio_params(ws: Workspace, serve_mode: str, **extra_env: str) -> StdioServerParameters:
    """For `mcp.Client(...)`: the stdio client passes only a minimal environment itself."""
    argv = serve_argv(serve_mode)
    return StdioServerParameters(
        command=argv[0], args=argv[1:], env=ws.env(**extra_env), cwd=str(ws.root)
    )


class RpcError(Exception):
    pass


class StdioServer:
    """`agent-dispatch serve` as a child process, spoken to in JSON-RPC lines."""

    def __init__(self, proc: trio.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.notifications: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []  # every answer, in arrival order
        self._responses: dict[int, dict[str, Any]] = {}
        self._answered: dict[int, trio.Event] = {}
        self._changed = trio.Event()
        self._next_id = 0
        self.eof = trio.Event()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        try:
            while chunk := await self.proc.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(json.loads(line))
        except trio.ClosedResourceError:
            pass  # we hung up (disconnect)
        self.eof.set()
        self._changed.set()

    def _dispatch(self, msg: dict[str, Any] | list[dict[str, Any]]) -> None:
        if isinstance(msg, list):  # a batch answer
            for item in msg:
                self._dispatch(item)
            return
        if "id" in msg and ("result" in msg or "error" in msg):
            self.replies.append(msg)
            self._responses[msg["id"]] = msg
            self._answered.setdefault(msg["id"], trio.Event()).set()
        else:
            self.notifications.append(msg)
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        """Until the next message arrives (or EOF)."""
        if self.eof.is_set():
            raise RpcError(f"server closed stdout:\n{self.stderr()}")
        await self._changed.wait()

    async def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(data)

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps({"jsonrpc": "2.0", **msg}).encode() + b"\n")

    async def start_request(self, method: str, params: dict[str, Any]) -> int:
        """Send a request; its answer comes from `response(id)`."""
        self._next_id += 1
        rid = self._next_id
        self._answered.setdefault(rid, trio.Event())
        await self.send({"id": rid, "method": method, "params": params})
        return rid

    async def response(self, rid: int) -> dict[str, Any]:
        event = self._answered[rid]
        while not event.is_set():
            if self.eof.is_set():
                raise RpcError(f"server closed stdout before answering {rid}:\n{self.stderr()}")
            await self._changed.wait()
        msg = self._responses[rid]
        if "error" in msg:
            raise RpcError(msg["error"])
        result: dict[str, Any] = msg["result"]
        return result

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.response(await self.start_request(method, params))

    async def initialize(self) -> dict[str, Any]:
        result = await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        )
        await self.send({"method": "notifications/initialized"})
        return result

    async def start_call(
        self, name: str, arguments: dict[str, Any], *, progress_token: int | str | None = None
    ) -> int:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if progress_token is not None:
            params["_meta"] = {"progressToken": progress_token}
        return await self.start_request("tools/call", params)

    async def call_raw(self, name: str, arguments: str) -> dict[str, Any]:
        """tools/call with `arguments` spliced in as raw JSON text (NaN, Infinity ...)."""
        self._next_id += 1
        rid = self._next_id
        self._answered.setdefault(rid, trio.Event())
        head = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call"})[:-1]
        line = f'{head}, "params": {{"name": {json.dumps(name)}, "arguments": {arguments}}}}}'
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")
        return await self.response(rid)

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        return await self.response(await self.start_call(name, arguments))

    def progress(self, token: int | str) -> list[str]:
        """Messages of the progress notifications for `token`, in arrival order."""
        return [
            n["params"].get("message")
            for n in self.notifications
            if n.get("method") == "notifications/progress"
            and n["params"].get("progressToken") == token
        ]

    async def disconnect(self) -> None:
        """Hang up like a client that died: close both pipes."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        await self.proc.stdout.aclose()
        await self.proc.stdin.aclose()

    async def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.aclose()

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    async def wait(self) -> int:
        return await self.proc.wait()


@asynccontextmanager
async def stdio_server(
    ws: Workspace, serve_mode: str, **extra_env: str
) -> AsyncIterator[StdioServer]:
    """Start `agent-dispatch serve` (`serve_mode`: "standalone" or "relay"), initialize
    the session; kill it on the way out."""
    stderr_path = ws.root / f"server-stderr-{len(list(ws.root.glob('server-stderr-*')))}.log"
    with open(stderr_path, "wb") as stderr:
        proc = await trio.lowlevel.open_process(
            serve_argv(serve_mode),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=ws.env(**extra_env),
            cwd=ws.root,
        )
    server = StdioServer(proc, stderr_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server._read)
            with trio.fail_after(10):
                await server.initialize()
            yield server
            nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()


def blocked(ws: Workspace, name: str, *extra: str) -> tuple[str, Path]:
    """A task the fake blocks on until `release` is created."""
    release = ws.root / f"release-{name}"
    return "\n".join([f"job {name}", f"@fake wait_file={release}", *extra]), release


async def dead_pid() -> int:
    proc = await trio.lowlevel.open_process(["true"])
    await proc.wait()
    return proc.pid


def job_record(agent: str, *, days_ago: float, status: str = "done", **fields: Any) -> Job:
    """A job record as a server (this process) would have written it `days_ago`."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days_ago * 86400))
    finished = status in ("done", "failed", "cancelled")
    return Job(
        id=new_job_id(),
        agent=agent,
        task="old work",
        status=status,  # type: ignore[arg-type]
        created_at=stamp,
        started_at=stamp,
        completed_at=stamp if finished else None,
        result=DispatchResult(agent=agent, success=True, result="old") if finished else None,
        owner_pid=os.getpid(),
        request=DispatchRequest(agent=agent, task="old work"),
        **fields,
    )


def pids_of(run: dict[str, Any]) -> list[int]:
    """A fake run's leader pid and its grandchildren."""
    return [run["pid"], *run["grandchildren"]]


def only(items: Iterator[Any] | list[Any]) -> Any:
    items = list(items)
    assert len(items) == 1, items
    return items[0]
