"""`agent-dispatch service run`: the per-user service (issue #16).

One process per setup (agent_dispatch.rendezvous names its socket, lock and log)
owns the one Dispatcher: one limiter for every caller, the cache, the job store
and the running jobs. Thin fronts connect over a Unix socket; each connection
sends a hello (the caller's env and cwd), gets a welcome and is then one MCP
session (server/session.py), a task in the service's nursery, run for that
caller (service/caller.py). A session's end never ends the jobs it started.

It exits after `settings.service_idle_seconds` with no connection and no job; on
SIGTERM/SIGINT (jobs cancelled and recorded so); or, asked by a newer front,
after draining: it stops accepting, lets its jobs finish, then exits.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import trio

from agent_dispatch import __version__, exception_groups, handshake, offload, rendezvous
from agent_dispatch.errors import ConfigError
from agent_dispatch.models import Settings
from agent_dispatch.runtime.runner import Runner
from agent_dispatch.server.registered import registered
from agent_dispatch.server.service_socket import (
    PrefixedStream,
    acquire_lock,
    bind_socket,
    lock_holder,
    peer_uid,
    read_line,
    remove_stale_socket,
    unlink_if_ours,
)
from agent_dispatch.server.session import McpApp, load_app, max_line, serve_session
from agent_dispatch.server.signals import until_signalled
from agent_dispatch.service.caller import CallerContext, caller_context
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.policy import TOOLS
from agent_dispatch.storage.config import ConfigStore

__all__ = ["HELLO_TIMEOUT", "ServiceRunning", "main", "serve_service"]

log = logging.getLogger("agent_dispatch.server.service")

HELLO_TIMEOUT = 10.0  # seconds a new connection has to send its hello
LOG_BYTES = 1024 * 1024  # the log file rotates past this size, keeping two old ones
LOG_BACKUPS = 2


class ServiceRunning(Exception):
    """Another service of this setup holds the lock (or answers on the socket)."""

    def __init__(self, pid: int | None, socket: Path) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"a service for this setup already runs ({who}, socket {socket})")
        self.pid = pid


def main(env: Mapping[str, str] | None = None) -> int:
    """The `service run` command: serve in the foreground until idle, drained or
    signalled. A second service of the same setup says one runs and exits 0."""
    env = dict(os.environ if env is None else env)
    try:
        sock, lock = rendezvous.socket_path(env), rendezvous.lock_path(env)
        lock_fd = acquire_lock(lock)
        if lock_fd is not None:
            configure_logging(rendezvous.log_path(env), env)
    except OSError as exc:  # an unsafe runtime directory says how to fix it
        print(f"agent-dispatch service: error: {exc}", file=sys.stderr)
        return 1
    if lock_fd is None:
        print(f"agent-dispatch service: {ServiceRunning(lock_holder(lock), sock)}", file=sys.stderr)
        return 0
    store = ConfigStore(rendezvous.config_file(env))
    log.info("service %s starting (pid %d, socket %s)", __version__, os.getpid(), sock)
    try:
        trio.run(until_signalled, lambda: serve_service(store, env=env, lock_fd=lock_fd))
    except BaseException as exc:
        running = exception_groups.first(exc, ServiceRunning)
        if running is None:
            log.exception("service failed")
            raise
        print(f"agent-dispatch service: {running}", file=sys.stderr)
    finally:
        os.close(lock_fd)
    log.info("service stopped")
    return 0


def configure_logging(path: Path, env: Mapping[str, str]) -> None:
    """Log to the setup's file, size-capped (LOG_BYTES, LOG_BACKUPS old files)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(env.get("AGENT_DISPATCH_LOG_LEVEL", "INFO").upper())


async def serve_service(
    store: ConfigStore,
    *,
    env: Mapping[str, str] | None = None,
    runner: Runner | None = None,
    version: str = __version__,
    lock_fd: int | None = None,
    task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the setup `env` names until idle or drained; cancel it to stop (its jobs
    are cancelled and recorded so). Takes the setup's lock unless `lock_fd` holds it.

    Raises:
      ServiceRunning: another service of this setup runs.
      OSError: the runtime directory is unsafe (PermissionError) or the socket cannot bind.
    """
    env = dict(os.environ if env is None else env)
    sock = await offload.run_sync(rendezvous.socket_path, env)
    owned_fd = None
    if lock_fd is None:
        lock = await offload.run_sync(rendezvous.lock_path, env)
        owned_fd = lock_fd = await offload.run_sync(acquire_lock, lock)
        if lock_fd is None:
            raise ServiceRunning(await offload.run_sync(lock_holder, lock), sock)
    try:
        if not await offload.run_sync(remove_stale_socket, sock):
            raise ServiceRunning(None, sock)
        raw, inode = await offload.run_sync(bind_socket, sock)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
        try:
            async with (
                Dispatcher.open(store, env=env, policy=TOOLS, runner=runner) as dispatcher,
                registered(dispatcher, "service", store.path, env, version=version),
            ):
                async with trio.open_nursery() as nursery:
                    service = Service(dispatcher, store, nursery, version=version)
                    nursery.start_soon(service.load_app)
                    nursery.start_soon(service.accept, listener, sock, inode)
                    task_status.started(service)
                    await service.run_until_done()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
            unlink_if_ours(sock, inode)
    finally:
        if owned_fd is not None:
            os.close(owned_fd)


class Service:
    """The running service: its sessions, its drain and its idle clock."""

    def __init__(
        self, dispatcher: Dispatcher, store: ConfigStore, nursery: trio.Nursery, *, version: str
    ) -> None:
        self.dispatcher = dispatcher
        self.version = version
        self.sessions = 0  # welcomed MCP sessions
        self._connections = 0  # any open connection, a hello still on its way too
        self.draining = False
        self._store = store
        self._nursery = nursery
        self._started = trio.current_time()
        self._changed = trio.Event()  # replaced each time a connection comes or goes
        self._done = trio.Event()
        self._accepting = trio.CancelScope()
        self._app: McpApp | None = None
        self._app_ready = trio.Event()
        self.listening = trio.Event()  # the accept loop is up (tests)
        self.closed = trio.Event()  # the listener is closed and the socket gone

    # -- lifecycle -------------------------------------------------------------

    async def load_app(self) -> None:
        """Import the SDK and build the server once; sessions that come first wait."""
        self._app = await load_app(self.dispatcher, self._store)
        self._app_ready.set()

    async def _get_app(self) -> McpApp:
        await self._app_ready.wait()
        if self._app is None:  # pragma: no cover - set before the event
            raise RuntimeError("the MCP app is not loaded")
        return self._app

    async def accept(self, listener: trio.SocketListener, sock: Path, inode: int) -> None:
        with self._accepting:
            self.listening.set()
            await trio.serve_listeners(self._connection, [listener], handler_nursery=self._nursery)
        # Cancelled: drained (or shutting down). Nobody new may connect to us from here.
        with trio.CancelScope(shield=True):
            await listener.aclose()
        unlink_if_ours(sock, inode)
        self.closed.set()

    async def run_until_done(self) -> None:
        """Return when the service should exit: idle long enough, or drained."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._idle_watch)
            await self._done.wait()
            nursery.cancel_scope.cancel()

    def _idle_seconds(self) -> float:
        try:
            return self._store.load().settings.service_idle_seconds
        except ConfigError:
            return Settings().service_idle_seconds

    async def _idle_watch(self) -> None:
        while True:
            while self._connections:
                await self._changed.wait()
            await self.dispatcher.wait_no_jobs()
            if self._connections:
                continue
            changed = self._changed
            idle = await offload.run_sync(self._idle_seconds)
            if idle <= 0:
                await changed.wait()
                continue
            with trio.move_on_after(idle):
                await changed.wait()
                continue
            log.info("idle for %g s with no connection and no job: exiting", idle)
            self._accepting.cancel()  # the socket goes first: a new front starts a new service
            self._done.set()
            return

    def drain(self, why: str) -> None:
        """Stop accepting, let the running jobs finish, then exit."""
        if self.draining:
            return
        self.draining = True
        log.info("draining (%s): no new sessions; exiting once the jobs are done", why)
        self._accepting.cancel()
        self._nursery.start_soon(self._exit_when_no_jobs)

    async def _exit_when_no_jobs(self) -> None:
        await self.dispatcher.wait_no_jobs()
        self._done.set()

    def _bump(self, delta: int) -> None:
        self._connections += delta
        self._changed.set()
        self._changed = trio.Event()

    def status(self) -> handshake.Status:
        queued = self.dispatcher.queued_jobs()
        return handshake.Status(
            version=self.version,
            pid=os.getpid(),
            uptime=round(trio.current_time() - self._started, 3),
            sessions=self.sessions,
            running=self.dispatcher.running_jobs() - queued,
            queued=queued,
            draining=self.draining,
        )

    # -- one connection ----------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        self._bump(+1)
        try:
            async with stream:
                await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("a front went away mid-handshake")
        except Exception:
            # One connection's failure must not end the service and every other session.
            log.exception("a session failed")
        finally:
            self._bump(-1)

    async def _handle(self, stream: trio.SocketStream) -> None:
        uid = peer_uid(stream)
        if uid != os.getuid():
            log.warning(
                "refused a connection from uid %d (this service is uid %d)", uid, os.getuid()
            )
            return
        line = rest = b""
        with trio.move_on_after(HELLO_TIMEOUT) as timer:
            try:
                line, rest = await read_line(stream, handshake.MAX_HELLO_BYTES)
            except ValueError as exc:
                await self._refuse(stream, "bad_hello", str(exc))
                return
        if timer.cancelled_caught:
            await self._refuse(stream, "bad_hello", f"hello: none within {HELLO_TIMEOUT:g} s")
            return
        try:
            hello = handshake.parse_hello(line)
        except handshake.UnsupportedProtocol as exc:
            await self._refuse(stream, "protocol", str(exc))
            return
        except ValueError as exc:
            await self._refuse(stream, "bad_hello", str(exc))
            return
        if hello.status:
            await stream.send_all(handshake.encode_status(self.status()))
            return
        if self.draining:
            reason = "this service is finishing its jobs and exiting; start a new one"
            await self._refuse(stream, "draining", reason)
            return
        if handshake.newer(hello.version, self.version):
            reason = f"this service runs {self.version}, older than the front's {hello.version}"
            await self._refuse(stream, "outdated", reason)
            self.drain(f"a front of version {hello.version} connected")
            return
        await stream.send_all(handshake.encode_welcome(self.version, os.getpid()))
        await self._session(PrefixedStream(stream, rest), hello)

    async def _session(self, wire: PrefixedStream, hello: handshake.Hello) -> None:
        log.info("session from pid %d (%s) opened", hello.pid, hello.cwd)
        self.sessions += 1
        try:
            limit = await offload.run_sync(max_line, self._store)
            with caller_context(CallerContext(env=dict(hello.env), cwd=hello.cwd)):
                await serve_session(wire, wire, self._get_app, line_limit=limit)
        finally:
            self.sessions -= 1
            log.info("session from pid %d closed", hello.pid)

    async def _refuse(self, stream: trio.SocketStream, code: str, reason: str) -> None:
        log.info("refused a front (%s): %s", code, reason)
        await stream.send_all(handshake.encode_refusal(code, reason))


if __name__ == "__main__":  # `python -m agent_dispatch.server.service`: `service run`
    sys.exit(main())
