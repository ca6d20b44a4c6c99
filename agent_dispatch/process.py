"""Run one child process in its own process group under trio.

The child is a session leader (``start_new_session=True``), so its process
group id is its pid, and every descendant that does not leave the group dies
with it. stdin is /dev/null; stdout and stderr are drained concurrently, each
capped, so a chatty child never blocks on a full pipe.

A run ends when the leader has exited and stdout is at EOF (or holds a
complete result, by ``is_complete``). A grandchild that keeps a pipe open gets
a short grace after the leader exits, then the whole group is killed. On the
deadline the group gets SIGTERM, then SIGKILL after ``grace``; on cancellation
the same happens in a shielded, time-bounded cleanup before Cancelled
propagates. A final ``killpg(SIGKILL)`` sweeps up grandchildren in every case.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec
import trio

__all__ = ["ChildOutcome", "run_child"]

_CHUNK = 65536
# After the leader exits: how long to wait for stdout EOF, and, once the group
# is killed, for both pipes to close, before giving up on a pipe held open by a
# process that left the group.
_EOF_WAIT = 0.25
# Extra time the shielded cleanup allows for reaping after SIGKILL.
_REAP_WAIT = 1.0


class ChildOutcome(msgspec.Struct, kw_only=True):
    """What one child run produced. Bytes are the first ``*_cap`` bytes of each pipe."""

    pid: int
    returncode: int | None  # None only if the leader could not be reaped in time
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool


async def run_child(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    timeout: float | None = None,  # noqa: ASYNC109 - a timeout is an outcome here, not an error
    deadline: float | None = None,
    is_complete: Callable[[bytes], bool] | None = None,
    on_stdout_line: Callable[[bytes], None] | None = None,
    on_spawn: Callable[[int], None] | None = None,
    stdout_cap: int = 16 * 2**20,
    stderr_cap: int = 2**20,
    grace: float = 1.5,
    eof_wait: float = _EOF_WAIT,
) -> ChildOutcome:
    """Run ``argv`` in ``cwd`` with exactly ``env``, in a new session, stdin from /dev/null.

    Args:
      timeout: seconds from now; ``deadline``: an absolute ``trio.current_time()``.
        The earlier one wins. When it passes, the group is terminated and the
        outcome has ``timed_out=True`` with whatever output was read.
      is_complete: given the stdout captured so far, whether it already holds
        a complete result. Only consulted after the leader exited, to stop
        waiting for an EOF that a lingering grandchild holds back.
      on_stdout_line: called with each stdout line (without the newline), in
        order, from the reading task; it must not block. A line longer than
        ``stdout_cap`` is dropped. A final unterminated line is passed at EOF.
      on_spawn: called with the pid (= process group id) right after spawn.
      grace: seconds between SIGTERM and SIGKILL (deadline and cancellation).
      eof_wait: seconds to wait for pipes to close after the leader exited.

    Raises:
      OSError: the child could not be started (missing executable or cwd,
        permission); nothing is left open.
      trio.Cancelled: the caller's scope was cancelled; the group was killed
        and the leader reaped first.
    """
    limit = _earliest(timeout, deadline)
    proc = await trio.lowlevel.open_process(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    child = _Child(proc, grace)
    out = _Sink(stdout_cap, on_stdout_line)
    err = _Sink(stderr_cap, None)
    timed_out = False
    try:
        if on_spawn is not None:
            on_spawn(child.pid)
        try:
            timed_out = await _supervise(child, out, err, limit, is_complete, eof_wait)
        except BaseExceptionGroup as group:
            _raise_bare_cancelled(group)
            raise
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + grace + _REAP_WAIT):
            await child.stop()
        child.sweep()
        child.close_pipes()
    return ChildOutcome(
        pid=child.pid,
        returncode=child.returncode,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        timed_out=timed_out,
    )


async def _supervise(
    child: _Child,
    out: _Sink,
    err: _Sink,
    limit: float,
    is_complete: Callable[[bytes], bool] | None,
    eof_wait: float,
) -> bool:
    """Drain both pipes until the run is over; return whether the deadline ended it."""
    timed_out = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.drain, child.stream("stdout"))
        nursery.start_soon(err.drain, child.stream("stderr"))
        with trio.move_on_at(limit) as deadline_scope:
            await child.wait()
            with trio.move_on_after(eof_wait):
                await out.wait_done(is_complete)
        if deadline_scope.cancelled_caught and not child.exited:
            timed_out = True
            await child.stop()
        # The leader is gone: nothing of its group may outlive the call.
        child.sweep()
        with trio.move_on_after(eof_wait):
            await out.eof.wait()
            await err.eof.wait()
        nursery.cancel_scope.cancel()
    return timed_out


class _Child:
    """The leader process and its group, with idempotent stop steps."""

    def __init__(self, proc: trio.Process, grace: float) -> None:
        self.proc = proc
        self.pid = proc.pid  # == the process group id (new session)
        self.exited = False
        self._grace = grace
        self._kill_at: float | None = None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.exited else None

    def stream(self, name: str) -> trio.abc.ReceiveStream:
        stream = self.proc.stdout if name == "stdout" else self.proc.stderr
        if not isinstance(stream, trio.abc.ReceiveStream):
            raise TypeError(f"child {name} is not a pipe")
        return stream

    async def wait(self) -> None:
        await self.proc.wait()
        self.exited = True

    async def stop(self) -> None:
        """SIGTERM the group, wait up to the grace for the leader, SIGKILL, reap.

        Re-entrant: a second call (cleanup after an interrupted stop) keeps the
        first call's SIGKILL time instead of granting a new grace.
        """
        if self.exited:
            return
        if self._kill_at is None:
            self._kill_at = trio.current_time() + self._grace
            _killpg(self.pid, signal.SIGTERM)
        with trio.move_on_at(self._kill_at):
            await self.wait()
        if not self.exited:
            _killpg(self.pid, signal.SIGKILL)
            await self.wait()

    def sweep(self) -> None:
        """SIGKILL whatever is left of the group (grandchildren)."""
        _killpg(self.pid, signal.SIGKILL)

    def close_pipes(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if isinstance(stream, trio.lowlevel.FdStream):
                stream.close()


class _Sink:
    """One pipe's capture: the first ``cap`` bytes, line callbacks, EOF and change events."""

    def __init__(self, cap: int, on_line: Callable[[bytes], None] | None) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False
        self.eof = trio.Event()
        self._changed = trio.Event()
        self._on_line = on_line
        self._line = bytearray()
        self._line_dropped = False

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(_CHUNK):
            room = self.cap - len(self.data)
            if len(chunk) > room:
                self.truncated = True
            if room > 0:
                self.data += chunk[:room]
            if self._on_line is not None:
                self._feed_lines(chunk, self._on_line)
            self._changed.set()
            self._changed = trio.Event()
        if self._on_line is not None and self._line and not self._line_dropped:
            line = bytes(self._line)
            self._line.clear()
            self._on_line(line)
        self.eof.set()
        self._changed.set()

    async def wait_done(self, is_complete: Callable[[bytes], bool] | None) -> None:
        """Return at EOF, or as soon as ``is_complete`` accepts the captured bytes."""
        while not self.eof.is_set():
            if is_complete is not None and is_complete(bytes(self.data)):
                return
            await self._changed.wait()

    def _feed_lines(self, chunk: bytes | bytearray, on_line: Callable[[bytes], None]) -> None:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if not self._line_dropped:
                self._line += chunk[start:end]
                on_line(bytes(self._line))
            self._line.clear()
            self._line_dropped = False
            start = end + 1
        if self._line_dropped:
            return
        rest = chunk[start:]
        if len(self._line) + len(rest) > self.cap:
            self._line.clear()
            self._line_dropped = True  # skip to the next newline
        else:
            self._line += rest


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone (or its id now belongs to someone else)


def _earliest(timeout: float | None, deadline: float | None) -> float:
    limit = math.inf if deadline is None else deadline
    if timeout is not None:
        limit = min(limit, trio.current_time() + timeout)
    return limit


def _raise_bare_cancelled(group: BaseExceptionGroup[BaseException]) -> None:
    """A nursery wraps Cancelled in a group: re-raise it bare when that is all it holds."""
    cancelled, rest = group.split(trio.Cancelled)
    if cancelled is not None and rest is None:
        leaf: BaseException = cancelled
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None
