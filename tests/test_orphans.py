"""Stopping what a server killed outright left running: real process groups, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from agent_dispatch.runtime.orphans import process_start, stop_group, stop_groups
from tests.fake_claude import pid_alive
from tests.process_groups import stubborn_groups

# A group leader that ignores nothing, with a grandchild in its group.
LEADER = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(child.pid, flush=True); time.sleep(60)"
)


@pytest.fixture
def group() -> Iterator[tuple[int, int]]:
    """(leader pid = pgid, grandchild pid) of a live group, killed at the end regardless."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LEADER], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    try:
        yield proc.pid, grandchild
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_the_recorded_group_is_stopped_with_its_grandchildren(group: tuple[int, int]) -> None:
    leader, grandchild = group
    assert stop_group(leader, process_start(leader)) is True
    assert not pid_alive(grandchild)


def test_a_recycled_pid_is_never_signalled(group: tuple[int, int]) -> None:
    leader, grandchild = group
    started = process_start(leader)
    assert started is not None
    assert stop_group(leader, started - 1) is False  # another process than the one recorded
    assert pid_alive(leader) and pid_alive(grandchild)


def test_a_group_that_is_gone_is_nothing_to_stop() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    assert stop_group(proc.pid, None) is False
    assert stop_group(0, None) is False and stop_group(1, None) is False


def test_stopping_many_groups_takes_one_grace_period_not_one_each() -> None:
    grace, count = 0.5, 6
    with stubborn_groups(count) as procs:
        started = time.monotonic()
        stopped = stop_groups([(p.pid, process_start(p.pid)) for p in procs], grace=grace)
        elapsed = time.monotonic() - started
        assert stopped == {p.pid for p in procs}
        assert [p.wait(timeout=5) for p in procs] == [-signal.SIGKILL] * count
    assert grace <= elapsed < count * grace / 2, elapsed
