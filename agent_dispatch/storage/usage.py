"""The usage journal: one JSON line per finished dispatch (issue #15).

`usage.jsonl` beside the config file, 0600, append-only. Each record is one
`os.write` on an O_APPEND descriptor, so the service, a standalone server and the
CLI's `test` writing at once never interleave inside a line. Past `max_bytes` the
file is renamed to `usage.jsonl.1` (older generations shift up to `.KEEP`, the
oldest dropped), under a lock beside it so two writers never rotate twice.

Readers take any bytes: a line that is not a record (torn by a full disk, edited
by hand, written by a newer version with other types) is skipped and counted,
never fatal. Nothing here reads a whole file unless asked to (`read_records`, for
`agent-dispatch stats`); `tail_records` reads a bounded tail, and `Follower` reads
only what was appended since its last look (the summary behind `list_agents`).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from datetime import datetime
from pathlib import Path

import msgspec

JOURNAL_NAME = "usage.jsonl"
MAX_BYTES = 4 << 20  # rotate past this size
KEEP = 3  # rotated generations kept: usage.jsonl.1 .. .3
TAIL_BYTES = 1 << 20  # what a summary reads of a journal it has not followed yet


class UsageRecord(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=False):
    """One finished dispatch. `cached`: answered from the cache (nothing billed, no
    child). Times are ISO 8601 UTC; `duration_s` is our wall time for the run."""

    agent: str
    tool: str
    success: bool
    started_at: str
    ended_at: str
    duration_s: float
    outcome: str | None = None
    error_type: str | None = None
    cost_usd: float | None = None
    turns: int | None = None
    session_id: str | None = None
    caller: str | None = None
    cached: bool = False
    job_id: str | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(UsageRecord)


def journal_path(config_file: Path) -> Path:
    """Where the journal of the setup whose config is `config_file` lives."""
    return config_file.parent / JOURNAL_NAME


def encode(record: UsageRecord) -> bytes:
    return _ENCODER.encode(record) + b"\n"


def decode(line: bytes) -> UsageRecord | None:
    """The record on `line`, or None when it is not one (never raises)."""
    try:
        record = _DECODER.decode(line)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    numbers = (record.duration_s, record.cost_usd)
    if any(n is not None and (not math.isfinite(n) or n < 0) for n in numbers):
        return None
    if record.turns is not None and record.turns < 0:
        return None
    if ended_at(record) is None:
        return None
    return record


def ended_at(record: UsageRecord) -> datetime | None:
    """When the dispatch ended (timezone-aware), None when the field does not parse."""
    try:
        when = datetime.fromisoformat(record.ended_at)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


# -- writing ------------------------------------------------------------------------


def append(
    path: Path, record: UsageRecord, *, max_bytes: int = MAX_BYTES, keep: int = KEEP
) -> None:
    """Append one record (creating the journal 0600), rotating past `max_bytes`.
    Raises OSError; callers log it and go on (a journal never fails a dispatch)."""
    line = encode(record)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        written = os.write(fd, line)
        if written < len(line):  # a full disk: end the torn line, so the next one reads
            with contextlib.suppress(OSError):
                os.write(fd, b"\n")
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > max_bytes:
        rotate(path, max_bytes=max_bytes, keep=keep)


def rotate(path: Path, *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
    """Shift `path` to `path.1` (`.1` to `.2`, ..., dropping `.keep`) if it is still over
    `max_bytes` once the rotation lock is held (another writer may have rotated it)."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_size <= max_bytes:
                return
        except FileNotFoundError:
            return
        for n in range(keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(generation(path, n), generation(path, n + 1))
        os.replace(path, generation(path, 1))
    finally:
        os.close(fd)


def generation(path: Path, n: int) -> Path:
    """`path` itself for 0, else its n-th rotated file."""
    return path if n == 0 else path.with_name(f"{path.name}.{n}")


# -- reading ------------------------------------------------------------------------


class Scan(msgspec.Struct):
    """Records read from a journal, and how many lines were not records."""

    records: list[UsageRecord]
    skipped: int = 0


def _lines(data: bytes, scan: Scan) -> None:
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        record = decode(line)
        if record is None:
            scan.skipped += 1
        else:
            scan.records.append(record)


def read_records(path: Path, *, keep: int = KEEP) -> Scan:
    """Every record of the journal and its rotated files, oldest first (the CLI's
    `stats`: not for a hot path). A missing journal is empty; a file that cannot be
    read raises OSError."""
    scan = Scan([])
    for n in range(keep, -1, -1):
        try:
            data = generation(path, n).read_bytes()
        except FileNotFoundError:
            continue
        _lines(data, scan)
    return scan


def tail_records(path: Path, *, limit: int = TAIL_BYTES) -> tuple[Scan, os.stat_result | None]:
    """The records in the last `limit` bytes of the journal (the first, partial line
    dropped), and the stat of what was read (None: no journal). Raises OSError."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            start = max(0, st.st_size - limit)
            f.seek(start)
            data = f.read(st.st_size - start)
    except FileNotFoundError:
        return Scan([]), None
    if start > 0:
        data = data.partition(b"\n")[2]
    scan = Scan([])
    _lines(data, scan)
    return scan, st


class Follower:
    """Reads what is appended to a journal since its last look: a summary stays current
    without reading the journal again. The first look reads a bounded tail; a rotation
    (another inode at the path) or a shrunk file starts over from a tail."""

    def __init__(self, path: Path, *, first: int = TAIL_BYTES) -> None:
        self.path = path
        self.first = first
        self._inode: tuple[int, int] | None = None
        self._offset = 0

    def poll(self) -> tuple[Scan, bool]:
        """(the new records, whether the caller must drop what it had: a fresh start).
        Raises OSError when the journal exists but cannot be read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            restart = self._inode is not None
            self._inode, self._offset = None, 0
            return Scan([]), restart
        inode = (st.st_dev, st.st_ino)
        if inode != self._inode or st.st_size < self._offset:
            scan, seen = tail_records(self.path, limit=self.first)
            self._inode = None if seen is None else (seen.st_dev, seen.st_ino)
            self._offset = 0 if seen is None else seen.st_size
            return scan, True
        if st.st_size == self._offset:
            return Scan([]), False
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(st.st_size - self._offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for its end
        self._offset += end
        scan = Scan([])
        _lines(data[:end], scan)
        return scan, False
