"""`agent-dispatch jobs --watch`: the board and its two renderings (pure), the driver's
look-and-show loop (in process, paced by the test), and the command under a real
pseudo-terminal and a real pipe (the OS is the subject: signals, ttys, escape codes)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from agent_dispatch.cli import watch
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import DispatchResult
from agent_dispatch.storage.jobs import Job, JobStore, Listing, Unreadable, _iso, new_job_id
from tests.test_cli import Cli, assert_error
from tests.test_cli_jobs import make_job

NOW = 1_800_000_000.0
ESCAPE = re.compile(rb"\x1b")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


def job(status: str = "running", *, age: float = 60, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": new_job_id(),
        "agent": "backend",
        "task": "List the routes",
        "status": status,
        "created_at": _iso(NOW - age),
        "owner_pid": 0,
    }
    values.update(fields)
    return Job(**values)


# -- the board and its renderings (pure) ------------------------------------------------


def test_the_board_shows_running_then_queued_jobs_oldest_first_and_counts_them_all() -> None:
    young = job("running", age=10)
    old = job("running", age=500)
    waiting = job("pending", age=5, agent="web")
    finished = job("done", age=1)
    listing = Listing(
        jobs=[waiting, young, finished, old],
        unreadable=[Unreadable("/jobs/x.json", "not a valid job record")],
    )
    b = watch.board(listing, limit=2)
    assert [row.id for row in b.rows] == [old.id, young.id]
    assert (b.running, b.queued, b.unreadable) == (2, 1, 1)
    assert watch.summary(b) == (
        "2 running, 1 queued, 1 unreadable record (see: agent-dispatch jobs), "
        "1 not shown (raise --limit)"
    )
    everything = watch.board(listing, limit=50)
    assert [(r.id, r.status) for r in everything.rows][-1] == (waiting.id, "queued")


def test_a_snapshot_shows_agent_age_cost_when_known_and_the_last_progress_line() -> None:
    paid = job(
        age=185,
        progress=["reading files", "editing src/app.py"],
        result=DispatchResult(agent="backend", success=True, cost_usd=0.0123),
    )
    fresh = job("pending", age=4, agent="web")
    lines = watch.plain_lines(watch.board(Listing([paid, fresh], []), limit=50), NOW)
    assert lines[0] == "2027-01-15T08:00:00Z  1 running, 1 queued"
    assert lines[1].split() == ["ID", "STATUS", "AGENT", "AGE", "COST", "LAST", "PROGRESS"]
    assert lines[2].split() == [
        paid.id,
        "running",
        "backend",
        "3m05s",
        "$0.0123",
        "editing",
        "src/app.py",
    ]
    assert lines[3].split() == [fresh.id, "queued", "web", "4s", "-", "-"]


def test_a_snapshot_with_no_unfinished_jobs_says_so() -> None:
    lines = watch.plain_lines(watch.board(Listing([job("done")], []), limit=50), NOW)
    assert lines[1:] == ["no running or queued jobs"]
    assert lines[0].endswith("  0 running, 0 queued")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"), (90061, "1d01h")],
)
def test_ages_are_short_and_never_negative(seconds: int, shown: str) -> None:
    assert watch.age(NOW - seconds, NOW) == shown
    assert watch.age(NOW + 30, NOW) == "0s"  # a clock a little ahead of ours
    assert watch.age(None, NOW) == "-"


def render(b: watch.Board, width: int = 200) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=width).print(watch.live_view(b, NOW))
    return out.getvalue()


def test_the_live_frame_shows_untrusted_text_as_text_never_as_markup_or_escapes() -> None:
    hostile = job(
        agent="[red]evil[/red]", progress=["[bold]done[/bold] \x1b[2J\x1b]0;pwned\x07 ok"]
    )
    frame = render(watch.board(Listing([hostile], []), limit=50))
    assert "[red]evil[/red]" in frame and "[bold]done[/bold]" in frame
    assert "\x1b[2J" not in frame and "pwned\x07" not in frame
    assert "1 running, 0 queued" in frame and "Ctrl-C to quit" in frame


def test_the_live_frame_cuts_a_long_progress_line_to_the_terminal_width() -> None:
    wordy = job(progress=["x" * 500])
    frame = render(watch.board(Listing([wordy], []), limit=50), width=100)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame)
    assert all(len(line) <= 100 for line in plain.splitlines())
    assert wordy.id in plain and "…" in plain


# -- arguments ------------------------------------------------------------------------------


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6)))
@settings(max_examples=200)
def test_an_interval_is_in_range_or_a_clear_error(value: float) -> None:
    try:
        got = watch.check_interval(value)
    except InvalidArgument as exc:
        assert "--interval" in exc.message and exc.hint
    else:
        assert watch.MIN_INTERVAL <= got <= watch.MAX_INTERVAL and got == value


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--watch", "--json"], ["--watch or --json, not both"]),
        (["--interval", "2"], ["--interval", "Add --watch"]),
        (["--watch", "--status", "done"], ["unfinished jobs only", "jobs --status done"]),
        (["--watch", "--status", "finished"], ["expected running or pending", "'finished'"]),
        (["--watch", "--interval", "0"], ["--interval", "0.1 to 3600"]),
        (["--watch", "--interval", "nan"], ["--interval"]),
        (["--watch", "--interval", "soon"], ["--interval"]),
    ],
)
def test_watch_refuses_arguments_it_cannot_honour(cli, argv: list[str], words: list[str]) -> None:
    res = cli("jobs", *argv)
    assert_error(res, *words, quiet="--json" not in argv)


# -- the driver, paced by the test ----------------------------------------------------------


class Pacer:
    """A `tick` for `watch.watch`: each look reports here, and the next waits for `go`."""

    def __init__(self) -> None:
        self._looked_send, self._looked = trio.open_memory_channel[None](0)
        self._go_send, self._go = trio.open_memory_channel[None](0)

    async def tick(self) -> None:
        await self._looked_send.send(None)
        await self._go.receive()

    async def looked(self) -> None:
        await self._looked.receive()

    async def go(self) -> None:
        await self._go_send.send(None)


async def test_into_a_pipe_a_snapshot_is_printed_only_when_the_jobs_change(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    running = job(progress=["step one"])
    store.save(running)
    out = io.StringIO()
    pacer = Pacer()
    look = watch.Look(statuses=watch.WATCHED, agent=None, limit=50)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: watch.watch(store, look, tick=pacer.tick, out=out, clock=lambda: NOW)
            )
            await pacer.looked()
            first = out.getvalue()
            assert "1 running, 0 queued" in first and "step one" in first
            await pacer.go()
            await pacer.looked()
            assert out.getvalue() == first  # nothing changed: nothing printed
            store.save(msgspec.structs.replace(running, progress=["step one", "step two"]))
            store.save(job("pending", agent="web"))
            await pacer.go()
            await pacer.looked()
            second = out.getvalue()[len(first) :]
            assert second.startswith("\n") and "1 running, 1 queued" in second
            assert "step two" in second
            store.save(msgspec.structs.replace(running, status="done"))
            await pacer.go()
            await pacer.looked()
            assert "0 running, 1 queued" in out.getvalue().split("\n\n")[-1]
            nursery.cancel_scope.cancel()
    assert not ESCAPE.search(out.getvalue().encode())


# -- the real command: a pseudo-terminal and a pipe ---------------------------------------


def command_env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
    return {
        **keep,
        "HOME": str(tmp_path / "home"),
        "AGENT_DISPATCH_CONFIG": str(tmp_path / "cfg" / "agents.yaml"),
        "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "jobs"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
    }


WATCH_ARGV = [sys.executable, "-m", "agent_dispatch", "jobs", "--watch", "--interval", "0.1"]


class Screen:
    """What the child wrote to its terminal, read from the pty's master side."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.data = b""

    def read_until(self, done: Callable[[bytes], bool], timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while not done(self.data):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the screen so far: {self.data[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: no process has the terminal open any more
                    chunk = b""
                assert chunk or done(self.data), f"the terminal closed: {self.data[-2000:]!r}"
                self.data += chunk
        return self.data


def test_watch_on_a_terminal_updates_in_place_and_quits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (30, 160))
    proc = subprocess.Popen(
        WATCH_ARGV,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=command_env(tmp_path),
        start_new_session=True,
    )
    os.close(slave)
    screen = Screen(master)
    try:
        screen.read_until(lambda seen: b"0 running, 0 queued" in seen)
        running = make_job(store, "running", progress=["reading the routes"], agent="backend")
        screen.read_until(lambda seen: b"reading the routes" in seen)
        assert running.id.encode() in screen.data
        assert b"\x1b[?25l" in screen.data  # the cursor hidden while the view is live
        store.save(msgspec.structs.replace(running, progress=["writing the summary"]))
        screen.read_until(lambda seen: b"writing the summary" in seen)
        # in place: the cursor goes back up over the last frame, the screen never scrolls
        assert b"\x1b[2K" in screen.data and b"\x1b[1A" in screen.data
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        screen.read_until(lambda seen: b"\x1b[?25h" in seen[seen.rindex(b"\x1b[?25l") :])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    tail = screen.data[screen.data.rindex(b"\x1b[?25l") :]
    assert b"\x1b[?25h" in tail  # the cursor shown again after the last hide
    assert b"Traceback" not in screen.data and b"interrupted" not in screen.data


def test_watch_leaves_the_terminal_settings_as_it_found_them(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        WATCH_ARGV, stdin=slave, stdout=slave, stderr=slave, env=command_env(tmp_path)
    )
    screen = Screen(master)
    try:
        screen.read_until(lambda seen: b"0 running, 0 queued" in seen)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(slave)
        os.close(master)


def test_watch_into_a_pipe_prints_plain_snapshots_until_a_signal(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    running = make_job(store, "running", progress=["step one"])
    proc = subprocess.Popen(
        WATCH_ARGV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=command_env(tmp_path),
    )
    watchdog = threading.Timer(30, proc.kill)  # a hung readline becomes a failure
    watchdog.start()
    try:
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(3)]
        assert b"1 running, 0 queued" in first[0] and b"step one" in first[2]
        store.save(msgspec.structs.replace(running, progress=["step one", "step two"]))
        second = [proc.stdout.readline() for _ in range(4)]
        assert second[0] == b"\n" and b"step two" in second[3]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 128 + signal.SIGTERM
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert out == b"" and err == b""  # nothing more: the jobs did not change again
    assert not ESCAPE.search(b"".join(first + second))


def test_watch_into_a_pipe_ends_when_the_reader_goes_even_with_nothing_new(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        WATCH_ARGV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=command_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        assert b"0 running, 0 queued" in proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    assert err == b""
