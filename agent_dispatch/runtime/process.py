"""Run one child process in its own process group under trio.

The child is a session leader (``start_new_session=True``), so its process
group id is its pid, and every descendant that does not leave the group dies
with it. stdin is /dev/null, or a pipe that is fed ``stdin_data`` and closed
(a prompt too long for one argument). stdout and stderr are drained
concurrently, each capped, so a chatty child never blocks on a full pipe; past
the cap, stdout's last lines are still kept, since that is where a result is.

A run ends when the leader has exited and stdout is at EOF (or holds a
complete result, by ``is_complete``). A grandchild that keeps a pipe open gets
a short grace after the leader exits, then the whole group is killed. A
leader that printed a complete result but does not exit gets ``result_grace``
to do so, then is stopped like at a deadline (the result stands, and the
outcome says the finished process was stopped, whether the grace or the
deadline ran out first). On the
deadline the group gets SIGTERM, then SIGKILL after ``grace``; on cancellation
the same happens in a shielded, time-bounded cleanup before Cancelled
propagates. A final ``killpg(SIGKILL)`` sweeps up grandchildren in every case.
"""

from __future__ import annotations

import collections
import math
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec
import trio

from agent_dispatch import exception_groups
from agent_dispatch.models import KILL_GRACE_SECONDS

__all__ = ["ChildOutcome", "run_child"]

_CHUNK = 65536
# After the leader exits: how long to wait for stdout EOF, and, once the group
# is killed, for both pipes to close, before giving up on a pipe held open by a
# process that left the group.
_EOF_WAIT = 0.25
# Extra time the shielded cleanup allows for reaping after SIGKILL.
_REAP_WAIT = 1.0
# A leader that printed its result gets this long to exit before it is stopped.
_RESULT_GRACE = 3.0
_TAIL_LINES = 2  # kept past the stdout cap: the result line, and one stray line after it


class ChildOutcome(msgspec.Struct, kw_only=True):
    """What one child run produced: the first ``*_cap`` bytes of each pipe, and for a
    truncated stdout its last lines after a newline."""

    pid: int
    returncode: int | None  # None only if the leader could not be reaped in time
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    # The leader had printed a complete result (by ``is_complete``) and was stopped
    # because it did not exit: by ``result_grace``, or by the deadline (then timed_out).
    stopped_after_result: bool


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
    stdin_data: bytes | None = None,
    stdout_cap: int = 16 * 2**20,
    stderr_cap: int = 2**20,
    grace: float = KILL_GRACE_SECONDS,
    eof_wait: float = _EOF_WAIT,
    result_grace: float = _RESULT_GRACE,
) -> ChildOutcome:
    """Run ``argv`` in ``cwd`` with exactly ``env``, in a new session.

    Args:
      timeout: seconds from now; ``deadline``: an absolute ``trio.current_time()``.
        The earlier one wins. When it passes, the group is terminated and the
        outcome has ``timed_out=True`` with whatever output was read.
      is_complete: given stdout (or its last lines), whether it already holds
        a complete result: then a lingering grandchild's EOF is not waited
        for, and a leader still running gets ``result_grace`` to exit.
      on_stdout_line: called with each stdout line (without the newline), in
        order, from the reading task; it must not block. A line longer than
        ``stdout_cap`` is dropped. A final unterminated line is passed at EOF.
      on_spawn: called with the pid (= process group id) right after spawn.
      stdin_data: written to a stdin pipe, which is then closed; without it
        stdin is /dev/null (a pipe left open costs the real CLI a 3 s wait).
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
        stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    child = _Child(proc, grace)
    out = _Sink(stdout_cap, on_stdout_line, tail=_TAIL_LINES)
    err = _Sink(stderr_cap, None)
    timed_out = False
    try:
        if on_spawn is not None:
            on_spawn(child.pid)
        try:
            timed_out = await _supervise(
                child, out, err, limit, is_complete, eof_wait, stdin_data, result_grace
            )
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
        stdout=out.captured(),
        stderr=bytes(err.data),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        timed_out=timed_out,
        stopped_after_result=child.stopped_after_result,
    )


async def _supervise(
    child: _Child,
    out: _Sink,
    err: _Sink,
    limit: float,
    is_complete: Callable[[bytes], bool] | None,
    eof_wait: float,
    stdin_data: bytes | None,
    result_grace: float,
) -> bool:
    """Drain both pipes until the run is over; return whether the deadline ended it."""
    timed_out = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.drain, child.stream("stdout"))
        nursery.start_soon(err.drain, child.stream("stderr"))
        if stdin_data is not None:
            nursery.start_soon(_feed, child.proc.stdin, stdin_data)
        if is_complete is not None:
            nursery.start_soon(_end_after_result, child, out, is_complete, result_grace)
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
        self.result_done = False  # stdout holds a complete result (set by _end_after_result)
        self.stopped_after_result = False
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
            self.stopped_after_result = self.result_done
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
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if isinstance(stream, trio.lowlevel.FdStream):
                stream.close()


class _Sink:
    """One pipe's capture: the first ``cap`` bytes, line callbacks, EOF and change events."""

    def __init__(self, cap: int, on_line: Callable[[bytes], None] | None, *, tail: int = 0) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False
        self.eof = trio.Event()
        self._changed = trio.Event()
        self._on_line = on_line
        self._split = on_line is not None or tail > 0
        self._tail: collections.deque[bytes] = collections.deque(maxlen=tail or None)
        self._line = bytearray()
        self._line_dropped = False
        self._lines = 0  # completed so far

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(_CHUNK):
            room = self.cap - len(self.data)
            if len(chunk) > room:
                self.truncated = True
            if room > 0:
                self.data += chunk[:room]
            if self._split:
                self._feed_lines(chunk)
            self._changed.set()
            self._changed = trio.Event()
        if self._line and not self._line_dropped:
            self._complete_line(bytes(self._line))
            self._line.clear()
        self.eof.set()
        self._changed.set()

    def captured(self) -> bytes:
        """The first ``cap`` bytes; when cut, then a newline and the last lines."""
        if not self.truncated or not self._tail:
            return bytes(self.data)
        return bytes(self.data) + b"\n" + b"\n".join(self._tail)

    def _recent(self) -> bytes:
        """What ``is_complete`` looks at: the whole capture while it is small, else the tail."""
        if not self.truncated and len(self.data) <= _CHUNK:
            return bytes(self.data)
        return b"\n".join(self._tail)

    async def wait_done(self, is_complete: Callable[[bytes], bool] | None) -> None:
        """Return at EOF, or as soon as ``is_complete`` accepts the captured bytes."""
        while not self.eof.is_set():
            if is_complete is not None and is_complete(self._recent()):
                return
            await self._changed.wait()

    async def wait_complete(self, is_complete: Callable[[bytes], bool]) -> bool:
        """Wait until ``is_complete`` accepts the output (True), or EOF without it (False).
        Checked once per completed line, so a long run costs one check per line."""
        seen = -1
        while True:
            if seen != self._lines and is_complete(self._recent()):
                return True
            if self.eof.is_set():
                return False
            seen = self._lines
            await self._changed.wait()

    def _complete_line(self, line: bytes) -> None:
        self._lines += 1
        if line.strip():
            self._tail.append(line)
        if self._on_line is not None:
            self._on_line(line)

    def _feed_lines(self, chunk: bytes | bytearray) -> None:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if not self._line_dropped:
                self._line += chunk[start:end]
                self._complete_line(bytes(self._line))
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


async def _feed(stream: trio.abc.SendStream | None, data: bytes) -> None:
    """Write the child's stdin and close it (EOF); a child that stopped reading is fine."""
    if stream is None:
        return
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def _end_after_result(
    child: _Child, out: _Sink, is_complete: Callable[[bytes], bool], grace: float
) -> None:
    """A leader that printed a complete result gets ``grace`` to exit, then is stopped."""
    if not await out.wait_complete(is_complete):
        return
    child.result_done = True
    with trio.move_on_after(grace):
        await child.wait()
    await child.stop()  # a no-op when it exited


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
    """The process edge: a nursery wraps Cancelled in a group; re-raise it bare (the
    first one) when that is all the group holds, so callers see a plain Cancelled."""
    _, rest = exception_groups.split(group, trio.Cancelled)
    if rest is None:
        raise exception_groups.leaves(group)[0] from None
