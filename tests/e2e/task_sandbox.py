"""Our ``serve`` front as Claude Code's MCP server, in a sandbox of its own, for the
MCP tasks tests and the task latency benchmark.

``dispatch_sandbox(root, project)`` gives an ``agents.yaml`` with one agent, ``alpha``,
working in ``project`` and run by the fake claude child (``tests/fake_claude.py``: its
``@fake sleep=N`` / ``@fake reply=...`` task lines decide what it does), a jobs dir, a
runtime dir for the front's service (stopped on leaving) and a log dir in which every
fake child records its pid and its end (``FAKE_CLAUDE_LOG``).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio
import yaml

from agent_dispatch.storage.jobs import Job
from tests.fake_claude import BIN_DIR, read_runs
from tests.relay_support import stop_services

__all__ = ["DISPATCH", "DispatchSandbox", "dispatch_sandbox"]

SERVER = "agent-dispatch"
DISPATCH = f"mcp__{SERVER}__dispatch"


@dataclass(frozen=True)
class DispatchSandbox:
    """Where one sandboxed server keeps its config, jobs, service and child records."""

    config: Path
    jobs: Path
    runtime: Path
    child_log: Path
    cache: Path

    @property
    def mcp_config(self) -> str:
        """``--mcp-config`` JSON: our front over stdio, run by this interpreter."""
        server = {
            "type": "stdio",
            "command": sys.executable,
            "args": ["-m", "agent_dispatch", "serve"],
            "env": {
                "AGENT_DISPATCH_CONFIG": str(self.config),
                "AGENT_DISPATCH_JOBS_DIR": str(self.jobs),
                "XDG_RUNTIME_DIR": str(self.runtime),
                "XDG_CACHE_HOME": str(self.cache),
                "FAKE_CLAUDE_PYTHON": sys.executable,
                "FAKE_CLAUDE_LOG": str(self.child_log),
            },
        }
        return json.dumps({"mcpServers": {SERVER: server}})

    def cli_args(self, *allowed_tools: str) -> list[str]:
        """The CLI's flags: only our server, ``allowed_tools`` allowed without asking."""
        return [
            f"--mcp-config={self.mcp_config}",
            "--strict-mcp-config",
            f"--allowedTools={','.join(allowed_tools)}",
        ]

    def jobs_on_disk(self) -> list[Job]:
        """Every job record, oldest first."""
        paths = sorted(self.jobs.glob("*.json")) if self.jobs.is_dir() else []
        found = [msgspec.json.decode(p.read_bytes(), type=Job) for p in paths]
        return sorted(found, key=lambda job: job.created_at)

    def children(self) -> list[dict[str, Any]]:
        """The fake children's own records (pid, pgid, prompt, ``end``), oldest first."""
        return read_runs(self.child_log)


@asynccontextmanager
async def dispatch_sandbox(
    root: Path, project: Path, *, grace_seconds: float
) -> AsyncIterator[DispatchSandbox]:
    """A sandbox under ``root`` whose tasks wait ``grace_seconds`` before becoming tasks;
    its service is stopped on leaving, whatever happened."""
    # The service's socket lives in the runtime dir: keep its path short.
    runtime = Path(tempfile.mkdtemp(prefix="adrt-", dir="/tmp"))
    sandbox = DispatchSandbox(
        config=root / "agents.yaml",
        jobs=root / "jobs",
        runtime=runtime,
        child_log=root / "children",
        cache=root / "cache",
    )
    sandbox.child_log.mkdir()
    settings = {"claude_path": f"{BIN_DIR}/claude", "task_grace_seconds": grace_seconds}
    agents = {"alpha": {"directory": str(project)}}
    sandbox.config.write_text(yaml.safe_dump({"agents": agents, "settings": settings}))
    try:
        yield sandbox
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop_services, runtime)
        shutil.rmtree(runtime, ignore_errors=True)
