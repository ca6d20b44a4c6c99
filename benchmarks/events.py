"""Live-children accounting: the fake appends "+ PID" / "- PID" lines to a FIFO we read.

Each append is one write(2) of a few bytes, so lines never interleave and their
order in the FIFO is the order the kernel saw them. Reading the FIFO in real
time gives each child's start time (for the cancel case) and the running count
of live children (for the peak case) without polling.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio


class EventLog:
    """Child start/exit events read from a FIFO while a server runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.starts: list[float] = []  # trio.current_time() of each "+"
        self.live = 0
        self.peak = 0
        self._changed = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[EventLog]:
        """Create the FIFO and read it until the block ends; then remove it.

        The FIFO is opened read-write so it never reports EOF between writers.
        It is unlinked before our end is closed: a straggler that writes later
        creates a plain file instead of blocking on a FIFO nobody reads.
        """
        os.mkfifo(path, 0o600)
        log = cls(path)
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        stream = trio.lowlevel.FdStream(fd)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(log._read, stream)
                try:
                    yield log
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            _remove(path)
            await stream.aclose()

    async def _read(self, stream: trio.lowlevel.FdStream) -> None:
        buffer = b""
        while True:
            data = await stream.receive_some(65536)
            now = trio.current_time()
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"+"):
                    self.starts.append(now)
                    self.live += 1
                    self.peak = max(self.peak, self.live)
                elif line.startswith(b"-"):
                    self.live -= 1
            self._changed.set()
            self._changed = trio.Event()

    def reset_peak(self) -> None:
        self.peak = self.live

    async def wait_starts(self, count: int) -> float:
        """The time of the `count`-th child start (1-based), once it happened."""
        while len(self.starts) < count:
            await self._changed.wait()
        return self.starts[count - 1]

    async def wait_idle(self) -> None:
        """Until no child is live (children killed by SIGKILL never report their exit)."""
        while self.live > 0:
            await self._changed.wait()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def tagged_pids(run_id: str) -> list[int]:
    """Processes started for this harness run (servers, fakes, sleeps): they carry its id."""
    marker = f"BENCH_RUN_ID={run_id}".encode()
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and _environ_has(int(entry), marker):
            pids.append(int(entry))
    return pids


async def reap_strays(run_id: str, *, wait: float = 8.0) -> list[int]:
    """After a case's servers closed: give leftover children `wait` seconds, then
    SIGKILL them by pid (only processes that carry this run's id). Returns those killed."""
    with trio.move_on_after(wait):
        # Other processes' exits have no event we could wait on: poll /proc.
        while tagged_pids(run_id):  # noqa: ASYNC110
            await trio.sleep(0.05)
    killed = tagged_pids(run_id)
    for pid in killed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return killed
