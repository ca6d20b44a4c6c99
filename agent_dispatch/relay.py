"""`agent-dispatch serve`: the thin front between Claude Code and the user's service.

Claude Code starts `serve` for every session, and every `claude -p` child we start
starts it again: so this process stays small and quick (stdlib only, no trio, no
msgspec, no mcp SDK). It finds the setup's service on its Unix socket, starting it
when nothing answers (one starter at a time, under a lock, so ten fronts at once
make one service), says hello with this caller's context (environment, working
directory, pid, version), then copies bytes both ways without reading them: stdin
to the socket, the socket to stdout, chunk by chunk.

The wire before MCP is in `rendezvous`. A service older than this front, or one on
its way out, refuses ("outdated", "draining"): the front waits for it to go and
starts a fresh one. Stdin EOF shuts the socket's write side (the service ends this
session only: the jobs it started go on); the service closing the socket ends the
front with status 0. SIGTERM, SIGINT and a vanished reader end it quietly too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager

from agent_dispatch import handshake, rendezvous

# What this module imports is what every `claude -p` child waits for (see rendezvous):
# no typing, dataclasses or pathlib, and subprocess only when a service must be started.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Mapping
    from typing import IO, NoReturn

START_TIMEOUT = 10.0  # seconds for a service we started to accept, and for the start lock
DRAIN_TIMEOUT = 30.0  # seconds for a refusing ("outdated", "draining") service to go away
REPLY_TIMEOUT = 10.0  # seconds for the service's answer to our hello
_POLL = 0.02  # seconds between looks while waiting on another process
_CHUNK = 65536
_RETRIES = 3  # rounds of "refused, waited, started over" before giving up
_GONE = (errno.ENOENT, errno.ECONNREFUSED)  # nothing listens at the path


class RelayError(Exception):
    """Why the front cannot reach a service; printed to stderr, exit status 1."""


class Session:
    """A welcomed connection and whatever the service sent right after its welcome."""

    __slots__ = ("early", "paths", "sock", "welcome")

    def __init__(
        self,
        sock: socket.socket,
        welcome: handshake.Welcome,
        early: bytes,
        paths: rendezvous.ServicePaths,
    ) -> None:
        self.sock = sock
        self.welcome = welcome
        self.early = early
        self.paths = paths


def main(version: str, env: Mapping[str, str] | None = None) -> int:
    """The `serve` command: relay stdin/stdout to the service; the exit status."""
    _quiet_signals()
    try:
        env = dict(os.environ if env is None else env)
        try:
            session = connect(env, version)
        except RelayError as exc:
            sys.stderr.write(f"agent-dispatch serve: {exc}\n")
            return 1
        entry = rendezvous.register_front(session.paths, version, env)
        try:
            return pump(session, stdin=0, stdout=1)
        finally:
            if entry is not None:  # a front ended by a signal leaves it: readers drop it
                with contextlib.suppress(OSError):
                    os.unlink(entry)
    finally:
        # The interpreter's exit puts the default handlers back, under which a late
        # SIGINT would end the front by that signal: ignored from here to the end.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)


def _quiet_signals() -> None:
    """SIGTERM and SIGINT end the front at once, status 0: the service ends the session
    when our socket closes. (SIGPIPE is already ignored by Python: a write to a gone
    reader raises BrokenPipeError, which ends the front quietly too.)"""

    def leave(signum: int, frame: object) -> NoReturn:
        os._exit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, leave)


# -- finding, starting and greeting the service --------------------------------------


def connect(env: Mapping[str, str], version: str) -> Session:
    """A welcomed session with the setup's service, started when none answers."""
    try:
        paths = rendezvous.ServicePaths(env)
        hello = handshake.encode_hello(version, os.getpid(), _cwd(), env)
    except (OSError, ValueError) as exc:
        raise RelayError(str(exc)) from None
    path = paths.socket
    for _ in range(_RETRIES):
        sock = dial(path) or start_service(env, paths)
        inode = _inode(path)  # of the socket we reached (or its successor: then we retry)
        reply, early = greet(sock, hello)
        if isinstance(reply, handshake.Welcome):
            return Session(sock, reply, early, paths)
        sock.close()
        if reply.code not in ("outdated", "draining"):
            raise RelayError(f"the service refused this front ({reply.code}): {reply.reason}")
        wait_gone(path, inode, reply)
    raise RelayError(
        f"the service at {path} kept refusing this front; stop it with "
        "`agent-dispatch service stop` and try again"
    )


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed under us
        return os.environ.get("PWD", "/")


def dial(path: str) -> socket.socket | None:
    """A connection to the service at `path`, or None when nothing listens there
    (no socket file, or a stale one left by a service that died)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        if exc.errno in _GONE:
            return None
        raise RelayError(f"cannot connect to the service at {path}: {exc}") from None
    return sock


def start_service(env: Mapping[str, str], paths: rendezvous.ServicePaths) -> socket.socket:
    """Start the service (unless another front did meanwhile) and connect to it.

    The fronts that find no service queue on a start lock: the first starts it and
    waits until it accepts, the others then find it. The service holds its own lock
    (`rendezvous.lock_path`) for its whole life: while a service that refused us
    drains (its socket gone, its jobs finishing) that lock stays taken, and we wait
    for it to be free before starting the successor, which could not run before.
    """
    path, log = paths.socket, paths.log
    now = time.monotonic()
    with _start_lock(paths.start_lock, now + START_TIMEOUT + DRAIN_TIMEOUT):
        drained_by = time.monotonic() + DRAIN_TIMEOUT
        child: subprocess.Popen[bytes] | None = None
        accept_by = 0.0
        spawned = 0
        while True:
            sock = dial(path)
            if sock is not None:
                return sock  # ours, or one another front started while we queued
            now = time.monotonic()
            if child is not None and child.poll() is None:
                if now >= accept_by:
                    raise RelayError(
                        f"the service did not accept on {path} within {START_TIMEOUT:g} s; "
                        f"its log: {log}"
                    )
            elif child is not None and child.returncode != 0:
                raise RelayError(
                    f"the service exited with status {child.returncode} as it started; "
                    f"its log: {log}"
                )
            elif _lock_free(paths.lock) and spawned < _RETRIES:
                child, spawned = _spawn(env, log), spawned + 1
                accept_by = time.monotonic() + START_TIMEOUT
            elif now >= drained_by:
                raise RelayError(
                    f"a service of this setup still runs without accepting on {path} after "
                    f"{DRAIN_TIMEOUT:g} s (draining: finishing its jobs before it exits); "
                    "try again when they are done, or stop it with `agent-dispatch service stop`"
                )
            time.sleep(_POLL)


def _lock_free(lock: str) -> bool:
    """Whether no service holds the setup's service lock (a probe: taken and let go)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise RelayError(f"cannot open the service lock {lock}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock, if it took it
    return True


@contextmanager
def _start_lock(lock: str, deadline: float) -> Iterator[None]:
    """Hold the setup's start lock (beside the socket), waiting until `deadline`."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise RelayError(f"cannot open the start lock {lock}: {exc}") from None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RelayError(
                        f"another front held {lock} too long while starting the service"
                    ) from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock


def _spawn(env: Mapping[str, str], log: str) -> subprocess.Popen[bytes]:
    """`python -m agent_dispatch service run`, detached: its own session, no stdin,
    output to the service log (it outlives this front and its terminal)."""
    import subprocess  # here: a front that finds its service running never needs it

    argv = [sys.executable, "-m", "agent_dispatch", "service", "run"]
    with _log_file(log) as out:
        try:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=dict(env),
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            raise RelayError(f"cannot start the service ({' '.join(argv)}): {exc}") from None


@contextmanager
def _log_file(log: str) -> Iterator[IO[bytes] | int]:
    import subprocess

    try:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        out = open(log, "ab")
    except OSError:
        yield subprocess.DEVNULL  # no log then, rather than no service
        return
    with out:
        yield out


def greet(sock: socket.socket, hello: bytes) -> tuple[handshake.Welcome | handshake.Refusal, bytes]:
    """Send the hello, read the one-line reply; the reply and any bytes after it."""
    buffer = b""
    try:
        sock.settimeout(REPLY_TIMEOUT)
        sock.sendall(hello)
        while b"\n" not in buffer:
            if len(buffer) > handshake.MAX_REPLY_BYTES:
                break
            chunk = sock.recv(_CHUNK)
            if not chunk:
                raise RelayError("the service closed the connection before answering the hello")
            buffer += chunk
        sock.settimeout(None)
    except TimeoutError:
        sock.close()
        raise RelayError(
            f"the service did not answer the hello within {REPLY_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        sock.close()
        raise RelayError(f"the handshake with the service failed: {exc}") from None
    line, _, early = buffer.partition(b"\n")
    try:
        return handshake.parse_reply(line + b"\n"), early
    except ValueError as exc:
        sock.close()
        raise RelayError(f"the service's answer is not understood: {exc}") from None


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def wait_gone(path: str, inode: int | None, refusal: handshake.Refusal) -> None:
    """Until the refusing service's socket `inode` has left `path` (removed, or
    replaced by a successor's)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if inode is None or _inode(path) != inode:
            return
        time.sleep(_POLL)
    raise RelayError(
        f"the service refused this front ({refusal.code}: {refusal.reason}) and was still "
        f"running after {DRAIN_TIMEOUT:g} s, finishing its jobs; try again when they are "
        "done, or stop it with `agent-dispatch service stop`"
    )


# -- the relay --------------------------------------------------------------------------


def pump(session: Session, *, stdin: int, stdout: int) -> int:
    """Copy stdin -> socket (a thread) and socket -> stdout (here) until the service
    closes the socket; 0. Bytes go through unread, each chunk as soon as it comes."""
    sock = session.sock
    upstream = threading.Thread(target=_upstream, args=(stdin, sock), daemon=True)
    upstream.start()
    try:
        _write_all(stdout, session.early)
        while chunk := sock.recv(_CHUNK):
            _write_all(stdout, chunk)
    except OSError:  # the client stopped reading (EPIPE), or the socket broke
        pass
    finally:
        sock.close()
    return 0


def _upstream(stdin: int, sock: socket.socket) -> None:
    try:
        while chunk := os.read(stdin, _CHUNK):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)  # EOF: the service ends this session
    except OSError:
        # The service went away (pump sees that and ends), or stdin broke: hang up.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
