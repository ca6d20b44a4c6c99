"""`agent-dispatch jobs --watch`: a live view of the running and queued jobs.

The job store on disk is the source of truth (the service writes the records).
A pure core turns what the store lists into a `Board` (rows and counts) and
renders it: a rich table refreshed in place on a terminal, plain lines for a
pipe. A thin trio driver reads the store off the event loop once per interval
and shows what it read, until SIGINT (Ctrl-C) or SIGTERM.

On a terminal the view is redrawn every interval (ages move). Into a pipe or a
file it prints one snapshot, a stamped header and a table, each time the jobs
change (a job starts, ends or makes progress), never the same snapshot twice,
and stops (exit status 0) once the reader of its pipe is gone.
"""

from __future__ import annotations

import functools
import math
import select
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

import msgspec
import trio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent_dispatch import exception_groups, offload
from agent_dispatch.cli.common import command, cut, money, plural, table
from agent_dispatch.cli.terminal import terminal_text
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import JOB_STATUSES
from agent_dispatch.storage.jobs import Job, JobStore, Listing, parse_iso

WATCHED = ("running", "pending")
DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.1
MAX_INTERVAL = 3600.0
PROGRESS_CHARS = 120
# Every unfinished job is counted, however many: the store drops finished ones as it reads.
_EVERY = 1_000_000
_LABEL = {"running": "running", "pending": "queued"}
_HEADERS = ("ID", "STATUS", "AGENT", "AGE", "COST", "LAST PROGRESS")


class Row(msgspec.Struct, frozen=True):
    """One unfinished job as the view shows it; its age is computed when drawn."""

    id: str
    status: str  # "running" or "queued"
    agent: str
    created: float | None  # epoch seconds; None when the record's stamp does not parse
    progress: str  # the last progress line, "" when there is none yet
    cost_usd: float | None


class Board(msgspec.Struct, frozen=True):
    """What one look at the store found. Equal boards look the same, bar the ages."""

    rows: tuple[Row, ...]
    running: int
    queued: int
    unreadable: int


def board(listing: Listing, *, limit: int) -> Board:
    """The running jobs, then the queued ones, each oldest first; at most `limit` rows,
    every job counted."""
    jobs = [job for job in listing.jobs if job.status in WATCHED]

    def order(job: Job) -> tuple[int, float, str]:
        created = parse_iso(job.created_at)
        return (WATCHED.index(job.status), math.inf if created is None else created, job.id)

    jobs.sort(key=order)
    rows = tuple(
        Row(
            id=job.id,
            status=_LABEL[job.status],
            agent=job.agent,
            created=parse_iso(job.created_at),
            progress=job.progress[-1] if job.progress else "",
            cost_usd=None if job.result is None else job.result.cost_usd,
        )
        for job in jobs[:limit]
    )
    running = sum(job.status == "running" for job in jobs)
    return Board(
        rows=rows,
        running=running,
        queued=len(jobs) - running,
        unreadable=len(listing.unreadable),
    )


def age(created: float | None, now: float) -> str:
    """`45s`, `3m05s`, `2h04m`, `3d02h`; `-` when unknown."""
    if created is None:
        return "-"
    seconds = max(int(now - created), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def summary(b: Board) -> str:
    """The header's counts: `2 running, 1 queued` (+ unreadable records, + rows not shown)."""
    parts = [f"{b.running} running", f"{b.queued} queued"]
    if b.unreadable:
        parts.append(f"{plural(b.unreadable, 'unreadable record')} (see: agent-dispatch jobs)")
    hidden = b.running + b.queued - len(b.rows)
    if hidden > 0:
        parts.append(f"{hidden} not shown (raise --limit)")
    return ", ".join(parts)


def _cells(row: Row, now: float) -> list[str]:
    return [
        row.id,
        row.status,
        row.agent,
        age(row.created, now),
        money(row.cost_usd),
        cut(row.progress, PROGRESS_CHARS) if row.progress else "-",
    ]


def plain_lines(b: Board, now: float) -> list[str]:
    """One snapshot for a pipe: a header stamped with the UTC time, then a table."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = f"{stamp}  {summary(b)}"
    if not b.rows:
        return [header, "no running or queued jobs"]
    return [header, *table(_HEADERS, (_cells(row, now) for row in b.rows))]


def live_view(b: Board, now: float) -> RenderableType:
    """One frame for a terminal. Every cell is a `Text` (never parsed as rich markup)
    of sanitised text: agent names and progress lines are untrusted."""
    clock = datetime.fromtimestamp(now).strftime("%H:%M:%S")
    header = Text.assemble(
        (terminal_text(summary(b)), "bold"), (f"   {clock}   Ctrl-C to quit", "dim")
    )
    if not b.rows:
        return Group(header, Text("no running or queued jobs", style="dim"))
    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=True)
    for name in _HEADERS[:-1]:
        grid.add_column(name, no_wrap=True, justify="right" if name in ("AGE", "COST") else "left")
    grid.add_column(_HEADERS[-1], no_wrap=True, overflow="ellipsis", ratio=1, min_width=12)
    for row in b.rows:
        cells = _cells(row, now)
        style = "green" if row.status == "running" else "yellow"
        grid.add_row(
            *(
                Text(terminal_text(cell), style=style if i == 1 else "")
                for i, cell in enumerate(cells)
            )
        )
    return Group(header, grid)


# -- the driver -----------------------------------------------------------------------


def check_interval(value: float) -> float:
    """The refresh interval in seconds, or InvalidArgument."""
    if not (isinstance(value, int | float) and math.isfinite(value)) or not (
        MIN_INTERVAL <= value <= MAX_INTERVAL
    ):
        raise InvalidArgument(
            f"--interval: expected seconds from {MIN_INTERVAL:g} to {MAX_INTERVAL:g}, "
            f"got {value!r}",
            "Leave it out to refresh once a second.",
        )
    return float(value)


def watch_statuses(status: str | None) -> Sequence[str]:
    """What `--status` narrows the watch to; only unfinished statuses make sense."""
    if status is None:
        return WATCHED
    if status in WATCHED:
        return (status,)
    if status in JOB_STATUSES:
        raise InvalidArgument(
            f"--status {status}: --watch shows unfinished jobs only (running or pending)",
            "Leave --status out, or list finished jobs without --watch: "
            + command("agent-dispatch", "jobs", "--status", status),
        )
    raise InvalidArgument(
        f"--status: expected running or pending with --watch, got {status!r}",
        "Leave --status out to watch both.",
    )


class Look(msgspec.Struct, frozen=True):
    """How to look at the store: its filters and how many rows to show."""

    statuses: Sequence[str]
    agent: str | None
    limit: int

    def read(self, store: JobStore) -> Board:
        found = store.listing(status=self.statuses, agent=self.agent, limit=_EVERY)
        return board(found, limit=self.limit)


async def watch(
    store: JobStore,
    look: Look,
    *,
    tick: Callable[[], Awaitable[None]],
    out: TextIO,
    clock: Callable[[], float],
) -> None:
    """Show the unfinished jobs until cancelled: `tick` paces the looks, `clock` is
    the wall clock the ages count from. A terminal `out` gets a live, in-place view;
    anything else gets a plain snapshot each time the board changes, until the reader
    of a pipe closes it (then it returns)."""
    if out.isatty():
        await _live(store, look, tick=tick, out=out, clock=clock)
        return
    shown: Board | None = None
    while not _reader_gone(out):
        current = await offload.run_sync(look.read, store)
        if current != shown:
            if shown is not None:
                out.write("\n")
            out.write("".join(terminal_text(line) + "\n" for line in plain_lines(current, clock())))
            out.flush()
            shown = current
        await tick()


def _reader_gone(out: TextIO) -> bool:
    """Whether `out` is a pipe whose reader has closed it (`| head -3` has what it wanted).

    Checked at every look, so a watch that has nothing new to print still ends. A pipe's
    write end polls POLLERR once its read end is closed; a file never does."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are reported whatever the mask
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


async def _live(
    store: JobStore,
    look: Look,
    *,
    tick: Callable[[], Awaitable[None]],
    out: TextIO,
    clock: Callable[[], float],
) -> None:
    console = Console(file=out)
    # No refresh thread (auto_refresh=False): every frame is drawn from this task, so a
    # signal never lands in the middle of an escape sequence another thread writes.
    # Leaving the block (cancelled included) shows the cursor and ends the last frame.
    with Live(
        console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
    ) as live:
        while True:
            current = await offload.run_sync(look.read, store)
            live.update(live_view(current, clock()), refresh=True)
            await tick()


async def run_watch(store: JobStore, look: Look, *, interval: float) -> int:
    """`jobs --watch`: watch until SIGINT or SIGTERM, then restore the terminal.

    Ctrl-C is how a watch is meant to end, so it exits 0 (as `watch(1)` and `top`
    do), with no "interrupted" line; SIGTERM exits 143, the status of a stopped command.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stopped: list[int] = [signal.SIGINT]  # the signal that stopped the watch
        with exception_groups.collapsed():  # a lone error (a broken pipe) comes out as itself
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_signal, signals, nursery.cancel_scope, stopped)
                await watch(
                    store,
                    look,
                    tick=functools.partial(trio.sleep, interval),
                    out=sys.stdout,
                    clock=time.time,
                )
                nursery.cancel_scope.cancel()  # the reader went: stop waiting for a signal
    return 0 if stopped[0] == signal.SIGINT else 128 + signal.SIGTERM


async def _until_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope, stopped: list[int]
) -> None:
    async for signum in signals:
        stopped[0] = signum
        scope.cancel()
        return
