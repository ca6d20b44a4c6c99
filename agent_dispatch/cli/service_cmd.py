"""`service start|status|stop|run`: the per-user service that serves every session (#16).

The CLI speaks to the service only through its socket (agent_dispatch.rendezvous:
a status request) and signals; it never imports the server. `run` execs the
service module in this process, so its pid is the one `start` reports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from cyclopts import App

from agent_dispatch import __version__, handshake, rendezvous
from agent_dispatch.cli.common import JsonFlag, emit, emit_json
from agent_dispatch.errors import DispatchError

service_app = App(
    name="service",
    help="The per-user service that runs every session's dispatches (start, status, stop, run).",
)

SERVICE_MODULE = "agent_dispatch.server.service"
QUERY_TIMEOUT = 5.0  # seconds for a status answer
START_TIMEOUT = 15.0  # seconds for a started service to accept
STOP_TIMEOUT = 30.0  # seconds for a stopped service to cancel its jobs and go


class ServiceError(DispatchError):
    default_hint = "See the service log: `agent-dispatch service status` names it."


def query_status(
    env: Mapping[str, str] | None = None, timeout: float = QUERY_TIMEOUT
) -> handshake.Status | None:
    """The running service's status, None when none answers on the setup's socket."""
    path = rendezvous.socket_path(env)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
            sock.sendall(handshake.encode_status_request(__version__, os.getpid()))
            data = b""
            while b"\n" not in data and len(data) <= handshake.MAX_REPLY_BYTES:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except OSError as exc:
            raise ServiceError(f"the service at {path} did not answer: {exc}") from None
    try:
        reply = handshake.parse_status(data.partition(b"\n")[0])
    except ValueError as exc:
        raise ServiceError(f"the service at {path} answered oddly: {exc}") from None
    if isinstance(reply, handshake.Refusal):
        raise ServiceError(f"the service at {path} refused the status request: {reply.reason}")
    return reply


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def describe(status: handshake.Status) -> str:
    """One line: version, pid, uptime, sessions and jobs."""
    draining = ", draining" if status.draining else ""
    return (
        f"version {status.version}, pid {status.pid}, up {_uptime(status.uptime)}, "
        f"{status.sessions} session(s), {status.running} job(s) running, "
        f"{status.queued} queued{draining}"
    )


@service_app.command(name="status")
def status(*, json: JsonFlag = False) -> int:
    """Show the service of this setup: version, pid, uptime, sessions, running and
    queued jobs, its socket and log. Exits 1 when none runs.

    Parameters
    ----------
    json
        Print the status as JSON.
    """
    found = query_status()
    paths = {"socket": str(rendezvous.socket_path()), "log": str(rendezvous.log_path())}
    if json:
        body: dict[str, Any] = {"running": found is not None}
        if found is not None:
            body |= {
                "version": found.version,
                "pid": found.pid,
                "uptime_seconds": found.uptime,
                "sessions": found.sessions,
                "jobs_running": found.running,
                "jobs_queued": found.queued,
                "draining": found.draining,
                "outdated": handshake.newer(__version__, found.version),
            }
        emit_json(body | paths)
        return 0 if found is not None else 1
    if found is None:
        emit("service not running (a session starts it on demand)")
    else:
        emit(f"service running: {describe(found)}")
        if handshake.newer(__version__, found.version):
            emit(f"  older than this install ({__version__}): agent-dispatch service stop")
    emit(f"  socket  {paths['socket']}")
    emit(f"  log     {paths['log']}")
    return 0 if found is not None else 1


@service_app.command(name="start")
def start() -> int:
    """Start this setup's service in the background, unless one runs; wait until it accepts."""
    found = query_status()
    if found is not None:
        emit(f"service already running: {describe(found)}")
        return 0
    log = rendezvous.log_path()
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(log, "ab") as errors:
        child = subprocess.Popen(  # noqa: S603 - this Python, our own module
            [sys.executable, "-m", SERVICE_MODULE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = query_status()
        if found is not None:
            emit(f"service started: {describe(found)}")
            return 0
        if child.poll() not in (None, 0):
            break
        time.sleep(0.05)
    raise ServiceError(
        f"the service did not start within {START_TIMEOUT:g} s",
        f"See its log: {log}",
    )


def _is_ours(pid: int) -> bool:
    """The pid is a live process of this user (status answered over our 0700 socket)."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: the socket's peer check already vouched for it


@service_app.command(name="stop")
def stop() -> int:
    """Stop this setup's service: its running jobs are cancelled (and recorded so)."""
    found = query_status()
    if found is None:
        emit("service not running")
        return 0
    if not _is_ours(found.pid):
        raise ServiceError(
            f"the service's pid {found.pid} is not a process of yours",
            f"Check `ps -p {found.pid}`; remove {rendezvous.socket_path()} if it is stale.",
        )
    os.kill(found.pid, signal.SIGTERM)
    path = rendezvous.socket_path()
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not path.exists() and not _alive(found.pid):
            emit(f"service stopped (pid {found.pid})")
            return 0
        time.sleep(0.05)
    raise ServiceError(
        f"the service (pid {found.pid}) did not stop within {STOP_TIMEOUT:g} s",
        f"kill -9 {found.pid}, then remove {path}",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # our own child (start; stop) is reaped here
        if done == pid:
            return False
    return True


@service_app.command(name="run")
def run() -> int:
    """Run the service in the foreground (what `start` and `serve` run in the background)."""
    os.execv(sys.executable, [sys.executable, "-m", SERVICE_MODULE])  # noqa: S606
