"""Children left behind by a server that died without cleaning up (SIGKILL, OOM).

A live server kills its children's process groups itself. One that was killed
outright cannot, so an async job's record keeps its child's process group id
and the leader's start time; `agent-dispatch cancel` and the next server start
use them to stop what is still running. The start time makes sure a recycled
pid is never signalled: while any member of a group lives, Linux does not
hand its id out again, so a leader that is gone leaves nothing to confuse; a
leader that is there must be the one recorded.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

from agent_dispatch.models import KILL_GRACE_SECONDS
from agent_dispatch.rendezvous import process_start

__all__ = ["process_start", "stop_group", "stop_groups"]

_POLL = 0.05


def stop_group(pgid: int, started: int | None, *, grace: float = KILL_GRACE_SECONDS) -> bool:
    """SIGTERM the group `pgid` left by a job, then SIGKILL after `grace` s.

    Returns whether anything of it was running. Nothing is signalled when the
    pid now belongs to another process than the recorded leader.
    """
    return pgid in stop_groups([(pgid, started)], grace=grace)


def stop_groups(
    groups: Iterable[tuple[int, int | None]], *, grace: float = KILL_GRACE_SECONDS
) -> set[int]:
    """stop_group for many groups at once: every group gets its SIGTERM first, then
    one shared `grace` period, then SIGKILL for what is left. N groups cost one grace
    period, not N. Returns the pgids that were running."""
    running: set[int] = set()
    for pgid, started in groups:
        if isinstance(pgid, bool) or not isinstance(pgid, int) or pgid <= 1:
            continue
        now = process_start(pgid)
        if now is not None and now != started:
            continue  # the leader's pid was recycled: its group is long gone
        if _signal(pgid, signal.SIGTERM):
            running.add(pgid)
    left = set(running)
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        time.sleep(_POLL)  # other processes' groups: nothing to wait on but the clock
        left = {pgid for pgid in left if _signal(pgid, 0)}
    for pgid in left:
        _signal(pgid, signal.SIGKILL)
    return running


def _signal(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
