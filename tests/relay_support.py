"""Helpers for the front's tests: a sandbox of its own, and a fake service.

- `Sandbox`: the environment of a setup under a tmp dir (config, jobs, XDG_RUNTIME_DIR,
  XDG_CACHE_HOME), so no test ever meets the real user's service.
- `FakeService`: a thread that listens on the sandbox's socket and speaks the
  rendezvous handshake, then hands each welcomed connection to a handler (by default
  an echo). It records every hello it read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent_dispatch import handshake, rendezvous

FRONT_ARGV = [sys.executable, "-m", "agent_dispatch", "serve"]


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return rendezvous.socket_path(self.env)

    @property
    def log(self) -> Path:
        return rendezvous.log_path(self.env)


@contextlib.contextmanager
def sandbox(root: Path, base: dict[str, str] | None = None) -> Iterator[Sandbox]:
    """A setup under `root`; its runtime dir is a short private dir under /tmp (a
    socket path must stay under ~100 bytes), removed on the way out."""
    runtime = tempfile.mkdtemp(prefix="adrt-", dir="/tmp")
    env = dict(os.environ if base is None else base)
    for name in [n for n in env if n.startswith("AGENT_DISPATCH_")]:
        del env[name]
    env.update(
        XDG_RUNTIME_DIR=runtime,
        XDG_CACHE_HOME=str(root / "cache"),
        AGENT_DISPATCH_CONFIG=str(root / "cfg" / "agents.yaml"),
        AGENT_DISPATCH_JOBS_DIR=str(root / "jobs"),
    )
    try:
        yield Sandbox(root, env)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


Handler = Callable[[socket.socket], None]


def echo(conn: socket.socket) -> None:
    """Send back every byte until EOF, then close (the service ending the session)."""
    while chunk := conn.recv(65536):
        conn.sendall(chunk)


@dataclass
class FakeService:
    """A service stand-in on `path`; `reply(hello)` picks the answer to each hello."""

    path: Path
    reply: Callable[[handshake.Hello], bytes] = field(
        default=lambda hello: handshake.encode_welcome("0.1.0", os.getpid())
    )
    handler: Handler = echo
    hellos: list[handshake.Hello] = field(default_factory=list)
    served: threading.Event = field(default_factory=threading.Event)  # a session ended

    def __post_init__(self) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.fspath(self.path))
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn:
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(1)
                if not chunk:
                    return
                line += chunk
            hello = handshake.parse_hello(line)
            self.hellos.append(hello)
            answer = self.reply(hello)
            conn.sendall(answer)
            if b'"welcome"' in answer:
                self.handler(conn)
        self.served.set()

    def close(self, *, unlink: bool = True) -> None:
        self.listener.close()
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def front(box: Sandbox, argv: list[str] = FRONT_ARGV) -> subprocess.Popen[bytes]:
    """`agent-dispatch serve` (the front) in the sandbox, pipes on all three streams."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=box.env,
        cwd=box.root,
    )


def services_of(runtime: str | os.PathLike[str]) -> list[int]:
    """Pids of the services of a sandbox: `agent-dispatch service run` processes whose
    environment has XDG_RUNTIME_DIR=`runtime`."""
    wanted = f"XDG_RUNTIME_DIR={os.fspath(runtime)}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            # `service run` execs `python -m agent_dispatch.server.service`
            if argv[1:3] != [b"-m", b"agent_dispatch.server.service"] and argv[1:5] != [
                b"-m",
                b"agent_dispatch",
                b"service",
                b"run",
            ]:
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return pids


def stop_services(runtime: str | os.PathLike[str], grace: float = 5.0) -> None:
    """End the sandbox's services: SIGTERM (a service ends its jobs' children), then,
    after `grace` seconds, SIGKILL to each service's whole process group."""
    pids = services_of(runtime)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)  # other processes' exits: nothing to wait on but the clock
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # started with start_new_session: pgid == pid


def _zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except (OSError, IndexError):
        return True
