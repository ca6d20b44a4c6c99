"""Process groups that shrug off SIGTERM, as a claude child a killed server left behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stubborn_groups(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` session leaders that ignore SIGTERM, each ready when yielded; killed after."""
    procs = [
        subprocess.Popen(
            ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
