"""The registry of running servers: which agent-dispatch processes hold jobs (issue #15).

Every service and every standalone `serve` keeps one small file,
`<runtime dir>/servers/<pid>.json` (the runtime dir of `rendezvous`: private, per
user), saying what it is, which version, since when, for which setup, and the ids of
the jobs it runs now; it rewrites the file when its jobs change and removes it on the
way out. A process killed outright leaves its file: readers drop entries whose pid is
gone or belongs to another process now (its start time differs), so `doctor` sees
exactly the live ones, and can tell the user which run an older version.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from agent_dispatch import rendezvous
from agent_dispatch.runtime.orphans import process_start
from agent_dispatch.storage.files import atomic_write

Kind = Literal["service", "standalone"]

MAX_ENTRY_BYTES = 1 << 20


class ServerEntry(msgspec.Struct, kw_only=True):
    """One running server, as its registry file says."""

    pid: int
    kind: Kind
    version: str
    started_at: str  # ISO 8601 UTC
    config: str
    jobs_dir: str
    jobs: list[str] = []
    process_started: int | None = None  # /proc start time: tells a reused pid apart


_DECODER = msgspec.json.Decoder(ServerEntry)
_ENCODER = msgspec.json.Encoder()


def registry_dir(env: Mapping[str, str] | None = None) -> Path:
    """`<runtime dir>/servers`, created 0700 (raises OSError, as rendezvous does)."""
    directory = rendezvous.runtime_dir(env) / "servers"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    return directory


def new_entry(
    kind: Kind, version: str, config: Path, jobs_dir: Path, jobs: list[str] | None = None
) -> ServerEntry:
    """This process's entry."""
    pid = os.getpid()
    return ServerEntry(
        pid=pid,
        kind=kind,
        version=version,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config=str(config),
        jobs_dir=str(jobs_dir),
        jobs=list(jobs or []),
        process_started=process_start(pid),
    )


def write(directory: Path, entry: ServerEntry) -> None:
    """Publish `entry` (atomically: a reader sees the old file or the new one)."""
    atomic_write(directory / f"{entry.pid}.json", _ENCODER.encode(entry))


def remove(directory: Path, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / f"{pid}.json")


def decode(data: bytes) -> ServerEntry | None:
    """The entry in `data`, None when it is not one (never raises)."""
    try:
        entry = _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    return entry if entry.pid > 0 else None


def alive(entry: ServerEntry) -> bool:
    """Whether the entry's process still runs (the same process, not a reused pid)."""
    started = process_start(entry.pid)
    if started is None:
        return False
    return entry.process_started is None or entry.process_started == started


def live_entries(directory: Path) -> list[ServerEntry]:
    """The entries of live servers, oldest first; files of dead ones (and files that are
    not entries, or name another pid) are removed on the way."""
    found: list[ServerEntry] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot != "." or ext != "json" or not stem.isdecimal():
            continue  # a temp file being written, or not ours
        path = directory / name
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            continue  # its server just removed it
        entry = decode(data) if len(data) <= MAX_ENTRY_BYTES else None
        if entry is None or str(entry.pid) != stem:
            # Not an entry this version reads (a newer one's, a damaged one): left to
            # its server while that runs, removed once its pid is gone.
            if process_start(int(stem)) is None:
                remove(directory, int(stem))
            continue
        if not alive(entry):
            remove(directory, entry.pid)
            continue
        found.append(entry)
    found.sort(key=lambda e: (e.started_at, e.pid))
    return found
