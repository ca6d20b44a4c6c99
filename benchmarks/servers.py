"""The two servers under test, their sandboxes, and an MCP session over real stdio.

Each server runs in a `Sandbox`: its own HOME, config file, jobs directory,
agent project directories and a `bin/` whose `claude` is the minimal fake, put
first on PATH. The harness talks to it with the mcp 2.x client in
`mode="legacy"` (the initialize handshake both servers speak).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from agent_dispatch import __version__, handshake, rendezvous
from benchmarks.events import EventLog

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
FAKE = BENCH_DIR / "fake_claude_min.sh"
OURS_PYTHON = ROOT / ".venv" / "bin" / "python"
ORIGINAL_VENV = BENCH_DIR / ".venv-original"
ORIGINAL_VERSION = "0.16.0"

# Used when `python -m agent_dispatch serve` is not available (no cli.py yet).
_SERVE_SNIPPET = (
    "import trio; from agent_dispatch.server.stdio import serve_stdio, configure_logging; "
    "from agent_dispatch.storage.config import ConfigStore, config_path; "
    "configure_logging(); trio.run(serve_stdio, ConfigStore(config_path()))"
)
# Records the server's pid (for RSS) and execs it, so the pid is the server's.
_PID_WRAPPER = 'echo $$ > "$BENCH_PIDFILE"; exec "$@"'


@dataclass(frozen=True)
class System:
    """One server implementation: a name and the argv that serves MCP on stdio."""

    name: str
    argv: tuple[str, ...]
    config_extra: Mapping[str, Any] = field(default_factory=dict)


def ours(python: Path = OURS_PYTHON) -> System:
    """Our server: the `serve` command when the CLI has one, else serve_stdio directly."""
    argv: tuple[str, ...] = (str(python), "-m", "agent_dispatch", "serve")
    usable = False
    if (ROOT / "agent_dispatch" / "__main__.py").exists():
        try:
            probe = subprocess.run(
                [*argv, "--help"], cwd=ROOT, capture_output=True, timeout=30, check=False
            )
            usable = probe.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            pass
    if not usable:
        argv = (str(python), "-c", _SERVE_SNIPPET)
    return System("ours", argv)


def original(venv: Path = ORIGINAL_VENV) -> System:
    """agent-dispatch 0.16.0 from PyPI, installed by scripts/bench."""
    exe = venv / "bin" / "agent-dispatch"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} is missing: run scripts/bench once to install it")
    return System("original", (str(exe), "serve"))


class Sandbox:
    """A throwaway HOME, config, jobs dir and agent projects for one server."""

    def __init__(self, root: Path, system: System, run_id: str, *, agents: int = 1) -> None:
        self.root = root
        self.system = system
        self.run_id = run_id
        self.home = root / "home"
        self.bin = root / "bin"
        self.jobs = root / "jobs"
        self.config = root / "agents.yaml"
        self.log = root / "server.log"
        self.pidfile = root / "server.pid"
        # Our `serve` is a front to a per-setup service: its socket, lock and log stay
        # in the sandbox too (XDG_RUNTIME_DIR must exist, else /tmp/agent-dispatch-UID).
        self.runtime = root / "run"
        self.cache = root / "cache"
        self.agents = [f"a{i}" for i in range(agents)]
        for path in (self.home, self.bin):
            path.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(mode=0o700, exist_ok=True)
        for name in self.agents:
            (root / "projects" / name).mkdir(parents=True, exist_ok=True)
        claude = self.bin / "claude"
        if not claude.exists():  # a copy, so the repo file's mode bits do not matter
            shutil.copyfile(FAKE, claude)
            claude.chmod(0o755)

    def write_config(self, max_concurrency: int) -> None:
        """The same agents and limit in both servers' (compatible) YAML."""
        lines = ["agents:"]
        for name in self.agents:
            lines += [
                f"  {name}:",
                f"    directory: {self.root / 'projects' / name}",
                "    description: benchmark agent",
                "    timeout: 300",
            ]
        lines += ["settings:", f"  max_concurrency: {max_concurrency}"]
        lines += [
            f"  {key}: {json.dumps(value)}" for key, value in self.system.config_extra.items()
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def env(
        self,
        *,
        latency_ms: int,
        events: Path | None = None,
        stdin_wait: bool = False,
    ) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": str(self.root),
            "AGENT_DISPATCH_CONFIG": str(self.config),
            "AGENT_DISPATCH_JOBS_DIR": str(self.jobs),
            "AGENT_DISPATCH_USAGE_LOG": str(self.root / "usage.jsonl"),
            "AGENT_DISPATCH_LOG_LEVEL": "WARNING",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CACHE_HOME": str(self.cache),
            "BENCH_LATENCY_MS": str(latency_ms),
            "BENCH_PIDFILE": str(self.pidfile),
            "BENCH_RUN_ID": self.run_id,
        }
        if events is not None:
            env["BENCH_EVENTS"] = str(events)
        if stdin_wait:
            env["BENCH_STDIN_WAIT"] = "1"
        return env


def payload(result: Any) -> dict[str, Any]:
    """A tool result as a dict: structuredContent, else the JSON text content."""
    structured = getattr(result, "structured_content", None)
    if isinstance(structured, dict) and set(structured) != {"result"}:
        return structured
    # The original returns JSON text (wrapped as {"result": text} in structuredContent).
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    text = "".join(texts)
    try:
        data = json.loads(text)
    except ValueError:
        return {"text": text, "is_error": bool(result.is_error)}
    if isinstance(data, dict):
        return data
    return {"items": data, "is_error": bool(result.is_error)}


class Session:
    """An MCP client session to one running server."""

    def __init__(self, sandbox: Sandbox, client: Client) -> None:
        self.sandbox = sandbox
        self.client = client
        self.pid: int | None = None
        self.events: EventLog | None = None

    @property
    def name(self) -> str:
        return self.sandbox.system.name

    async def call(self, tool: str, args: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
        """(seconds, payload) of one tools/call."""
        start = trio.current_time()
        result = await self.client.call_tool(tool, dict(args))
        elapsed = trio.current_time() - start
        return elapsed, payload(result)

    async def list_tools(self) -> list[str]:
        listed = await self.client.list_tools()
        return [tool.name for tool in listed.tools]

    def rss_mb(self) -> float:
        """The server process's resident set, in MiB (0 when unknown). For ours, the
        service's (where the dispatches and jobs live), not the thin front's."""
        if self.pid is None:
            return 0.0
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


@asynccontextmanager
async def serve(
    sandbox: Sandbox,
    *,
    latency_ms: int = 0,
    events: Path | None = None,
    stdin_wait: bool = False,
    wrap_pid: bool = True,
) -> AsyncIterator[Session]:
    """Start the sandbox's server over stdio; yields once tools/list answered."""
    argv = list(sandbox.system.argv)
    if wrap_pid:
        argv = ["/bin/sh", "-c", _PID_WRAPPER, "sh", *argv]
    params = StdioServerParameters(
        command=argv[0],
        args=argv[1:],
        env=sandbox.env(latency_ms=latency_ms, events=events, stdin_wait=stdin_wait),
        cwd=str(sandbox.root),
    )
    with _append(sandbox.log) as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode="legacy", cache=None) as client:
            session = Session(sandbox, client)
            await session.list_tools()  # primes the client's output-schema table too
            if wrap_pid:
                session.pid = await _read_pid(sandbox.pidfile)
                if sandbox.system.name == "ours":
                    env = sandbox.env(latency_ms=latency_ms)
                    session.pid = await trio.to_thread.run_sync(service_pid, env) or session.pid
            yield session


def service_pid(env: Mapping[str, str]) -> int | None:
    """The pid of the setup's running service (a status request on its socket), None
    when none answers: our `serve` is a front, the service does the work."""
    try:
        path = rendezvous.socket_path(env)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(os.fspath(path))
            sock.sendall(handshake.encode_status_request(__version__, os.getpid()))
            data = b""
            while b"\n" not in data and (chunk := sock.recv(65536)):
                data += chunk
        status = handshake.parse_status(data.partition(b"\n")[0])
    except (OSError, ValueError):
        return None
    return status.pid if isinstance(status, handshake.Status) else None


def _append(path: Path) -> TextIO:
    return open(path, "a")  # the caller's with-block closes it


async def _read_pid(path: Path) -> int | None:
    """The pid the wrapper wrote (it runs before the server's first answer, so at once)."""
    with trio.move_on_after(5):
        while True:  # a file another process writes: nothing to wait on
            try:
                return int(await trio.Path(path).read_text())
            except (OSError, ValueError):
                await trio.sleep(0.005)
    return None


async def stop_service(sandbox: Sandbox) -> str:
    """`agent-dispatch service stop` for the sandbox's setup (our front's service, if
    one runs); what it said. The original has no service: nothing to do."""
    if sandbox.system.name != "ours":
        return ""
    python = sandbox.system.argv[0] if sandbox.system.argv else str(OURS_PYTHON)
    env = sandbox.env(latency_ms=0)
    with trio.fail_after(30):
        done = await trio.run_process(
            [python, "-m", "agent_dispatch", "service", "stop"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return (done.stdout or done.stderr).decode(errors="replace").strip()


def server_log_tail(sandbox: Sandbox, lines: int = 20) -> str:
    try:
        return "\n".join(sandbox.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def clean(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
