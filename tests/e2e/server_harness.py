"""Driving the real ``agent-dispatch serve`` over stdio, and watching its children.

- ``served(...)``: the server as a child process behind an ``mcp.Client``, with
  its own agents.yaml and jobs dir, in the environment of one e2e test.
- ``ServerUnderTest.call``: one tool call, its structured answer, the wall time.
- ``ProgressLog``: MCP progress notifications of a call, in progress order.
- ``processes_in`` / ``claude_pid`` / ``wait_gone``: the processes that run in
  a project directory, read from /proc, so a test can prove none is left.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcp
import trio
import yaml
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import TextContent

# The server under test, `agent-dispatch serve --standalone`, run by this interpreter (the
# venv's python): the server in that process, so what it ran ends with it (checked below).
# Claude Code through the front and the service: test_claude_code_client.py.
SERVE_ARGS = ["-m", "agent_dispatch", "serve", "--standalone"]

# A bound on one tool call: a healthy dispatch through the server takes 1-3 s.
CALL_LIMIT_S = 60.0
# Processes that were SIGKILLed get this long to finish dying.
DEATH_LIMIT_S = 2.0


def agents_config(project: Path) -> dict[str, Any]:
    """Every agent works in ``project``; they differ in what they may do."""
    directory = str(project)
    return {
        "agents": {
            # default permission mode, no tool allowed beyond the read-only ones
            "worker": {"directory": directory, "description": "the e2e project", "timeout": 60},
            "builder": {"directory": directory, "allowed_tools": ["Bash"], "timeout": 60},
            "capped": {"directory": directory, "max_budget_usd": 0.0001, "timeout": 60},
            # a config timeout is not clamped to the tool's 10 s minimum
            "hasty": {"directory": directory, "timeout": 2},
        },
    }


@dataclass
class ServerUnderTest:
    """An MCP client connected to the real server, and where that server works."""

    client: mcp.Client
    project: Path
    config: Path
    calls: list[tuple[str, float]] = field(default_factory=list)  # (tool, wall seconds)

    async def call(self, tool: str, progress: ProgressLog | None = None, **args: Any) -> Any:
        """Call ``tool``; the structured answer. Fails the test on an error envelope."""
        start = time.monotonic()
        with trio.fail_after(CALL_LIMIT_S):
            result = await self.client.call_tool(tool, args, progress_callback=progress)
        wall = time.monotonic() - start
        self.calls.append((tool, wall))
        text = "".join(c.text for c in result.content if isinstance(c, TextContent))
        data = result.structured_content
        shown = json.dumps(data) if data is not None else text
        print(f"{tool}: {wall:.2f} s {shown[:300]}")
        assert not result.is_error, f"{tool} failed: {text}"
        assert data is not None, f"{tool}: no structured content: {text}"
        assert json.loads(text) == data, "the JSON text must mirror structuredContent"
        return data

    @property
    def last_wall_s(self) -> float:
        return self.calls[-1][1]

    def claude_pid(self) -> int:
        """The one claude process running in the project now."""
        return claude_pid(self.project)


def server_env(
    base: Mapping[str, str], *, config: Path, jobs: Path, claude: Path
) -> dict[str, str]:
    """The server's environment: the test's isolated claude env, our config and jobs."""
    env = {k: v for k, v in base.items() if not k.startswith("AGENT_DISPATCH_")}
    env.update(
        AGENT_DISPATCH_CONFIG=str(config),
        AGENT_DISPATCH_JOBS_DIR=str(jobs),
        AGENT_DISPATCH_CLAUDE=str(claude),  # the server finds the pinned CLI here
    )
    return env


@asynccontextmanager
async def served(
    root: Path, project: Path, claude: Path, env: Mapping[str, str]
) -> AsyncIterator[ServerUnderTest]:
    """``agent-dispatch serve --standalone`` in ``root`` with agents in ``project``, until
    the block ends.

    The server's stderr goes to ``root/server.log`` and is printed at the end
    (pytest shows it when the test fails).
    """
    config = root / "cfg" / "agents.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(agents_config(project)))
    full_env = server_env(env, config=config, jobs=root / "jobs", claude=claude)
    params = StdioServerParameters(
        command=sys.executable, args=SERVE_ARGS, env=full_env, cwd=str(root)
    )
    log = root / "server.log"
    try:
        with log.open("w") as errlog:
            async with mcp.Client(stdio_client(params, errlog=errlog)) as client:
                yield ServerUnderTest(client=client, project=project, config=config)
        # The server has exited: whatever it ran must be gone with it.
        await assert_no_processes(project)
    finally:
        if log.exists() and log.read_text().strip():
            print(f"--- server stderr ---\n{log.read_text()}")


@dataclass
class ProgressLog:
    """The progress notifications of one call (use as its ``progress_callback``).

    The client runs each callback in its own task, so arrival order is not call
    order; ``messages`` sorts by the progress number, which the server counts up.
    """

    events: list[tuple[float, str | None]] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.events.append((progress, message))
        self._changed.set()
        self._changed = trio.Event()

    @property
    def messages(self) -> list[str]:
        return [m or "" for _, m in sorted(self.events, key=lambda e: e[0])]

    async def wait_for(self, count: int) -> list[str]:
        """The messages once at least ``count`` have arrived (callers bound the wait)."""
        while len(self.events) < count:
            await self._changed.wait()
        return self.messages


# -- processes ------------------------------------------------------------------------


def processes_in(directory: Path) -> dict[int, str]:
    """Live processes whose working directory is ``directory`` or below: pid -> executable.

    Zombies have no cwd and are not listed: they are dead, only not yet reaped.
    """
    root = os.path.realpath(directory)
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            exe = os.readlink(f"/proc/{entry.name}/exe")
        except OSError:
            continue  # gone, a zombie, or a kernel thread
        if cwd == root or cwd.startswith(root + os.sep):
            found[int(entry.name)] = exe
    return found


def claude_pid(directory: Path) -> int:
    """The pid of the one claude process working in ``directory``.

    The server starts each claude as a session leader (its own process group);
    the tools claude runs are in that session but do not lead it.
    """
    leaders = [pid for pid in processes_in(directory) if _stat(pid)[3:4] == [str(pid)]]
    assert len(leaders) == 1, f"expected one claude in {directory}: {processes_in(directory)}"
    return leaders[0]


def stdin_of(pid: int) -> str:
    """What fd 0 of ``pid`` is: a path, or e.g. ``pipe:[1234]``."""
    return os.readlink(f"/proc/{pid}/fd/0")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ...
    Empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    return _stat(pid)[:1] not in ([], ["Z"], ["X"])


async def wait_gone(pids: list[int], seconds: float = DEATH_LIMIT_S) -> list[int]:
    """Wait (up to ``seconds``) for each pid to exit; the ones still alive after that."""
    with trio.move_on_after(seconds):
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                await trio.lowlevel.wait_readable(pidfd)  # readable once it has exited
            finally:
                os.close(pidfd)
    return [pid for pid in pids if is_alive(pid)]


async def assert_no_processes(directory: Path) -> None:
    """Nothing runs in ``directory`` (a SIGKILLed one may take a moment to die)."""
    left = await wait_gone(list(processes_in(directory)))
    assert not left, f"processes left in {directory}: {processes_in(directory)}"
