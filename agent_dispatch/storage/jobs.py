"""Persistent job records: one JSON file per job, named by its 32-hex id.

Ids are validated before any path is built, files are written atomically
(0600, in a 0700 directory), and a file named like a record that cannot be
used as one (a FIFO, a symlink, a device, more than MAX_RECORD_BYTES, not a
record of its id) is "unreadable": reported, never trusted, never deleted,
never fatal. Reads never block: see files.read_regular. Everything here is
synchronous; async callers run it with trio.to_thread.
"""

from __future__ import annotations

import builtins
import errno
import heapq
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from agent_dispatch import models, rendezvous
from agent_dispatch.errors import InvalidArgument, JobNotFound, StorageError
from agent_dispatch.storage.files import (
    FileTooLarge,
    NotRegularFile,
    atomic_write,
    read_regular,
)

log = logging.getLogger("agent_dispatch.storage.jobs")

ENV_VAR = rendezvous.JOBS_ENV
JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
_FILE_RE = re.compile(r"([0-9a-f]{32})\.json")

PROGRESS_LINES = 20
PROGRESS_LINE_CHARS = 300
STALE_PENDING_SECONDS = 24 * 3600
# The largest record read or written. A record holds its task twice (`task` and
# `request.task`) plus the context, each bounded by one wire line (32 MiB by
# default), and the result, bounded by the 16 MiB stdout cap, with its parsed
# copy: ~96 MiB at the very worst. 128 MiB keeps every legitimate record and
# still bounds what a planted file can cost; `save` refuses anything larger, so
# the store never writes what it could not read back.
MAX_RECORD_BYTES = 128 * 2**20
# mtime and created_at come from the same clock, but a file system may round mtime.
_MTIME_SLACK_SECONDS = 2.0

ORPHANED_PENDING = (
    "never started: the server that queued it (pid {pid}) stopped before it started; nothing ran"
)
ORPHANED_PENDING_HINT = (
    "Its caller went with that server, so it was not run now. If it is still wanted, "
    "submit it again with dispatch_async."
)

_ID_HINT = "Job ids are 32 lowercase hex characters; call dispatch_jobs to list them."


class Job(msgspec.Struct, kw_only=True):
    """One job record. `kind="ref"` is a finished dispatch kept for return_ref/fetch_result."""

    id: str
    agent: str
    task: str
    status: models.JobStatus
    kind: Literal["async", "ref"] = "async"
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    result: models.DispatchResult | None = None
    error: str | None = None
    progress: list[str] = []
    owner_pid: int
    request: models.DispatchRequest | None = None
    # The running child's process group and its leader's start time (orphans.py):
    # what a server killed outright leaves, for `cancel` and the next start to stop.
    child_pgid: int | None = None
    child_started: int | None = None
    # Set for a job started as an MCP task: how its answer is shaped (server/tasks.py).
    reply: models.TaskReply | None = None


class Unreadable(msgspec.Struct, frozen=True):
    """A file named like a job record that cannot be used as one, and why."""

    path: str
    reason: str


class Listing(msgspec.Struct, frozen=True):
    """What `JobStore.listing` found: the jobs, and the record files it could not use."""

    jobs: list[Job]
    unreadable: list[Unreadable]


# Built once: msgspec encoders/decoders are immutable and reusable.
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Job)


def decode_record(data: bytes, job_id: str) -> Job | str:
    """The job in `data` when it is a valid record of `job_id`, else why not. Never raises."""
    try:
        job = _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return "not a valid job record"
    if job.id != job_id:
        return "not a valid job record (its id is not its file name)"
    return job


def unreadable_error(job_id: str, bad: Unreadable) -> JobNotFound:
    """What a caller asking for job `job_id` is told when its record is unreadable."""
    return JobNotFound(
        f"job {job_id}: its record {bad.path} is unreadable ({bad.reason})",
        f"Nothing can be recovered from it; remove it with: rm {bad.path}",
    )


# -- ids, paths, time -------------------------------------------------------------


def validate_job_id(job_id: object, field: str = "job_id") -> str:
    """Return `job_id` when it is exactly 32 lowercase hex characters, else InvalidArgument."""
    if isinstance(job_id, str) and JOB_ID_RE.fullmatch(job_id):
        return job_id
    shown = repr(job_id) if len(repr(job_id)) <= 80 else repr(job_id)[:77] + "..."
    raise InvalidArgument(f"{field}: expected 32 lowercase hex characters, got {shown}", _ID_HINT)


def new_job_id() -> str:
    return secrets.token_hex(16)


def jobs_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$AGENT_DISPATCH_JOBS_DIR`, else `~/.config/agent-dispatch/jobs`."""
    return rendezvous.jobs_directory(env)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    """The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (what every record stores)."""
    return _iso(time.time())


def parse_iso(text: str | None) -> float | None:
    """Epoch seconds for an ISO-8601 stamp (naive means UTC); None when it does not parse."""
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as dead; EPERM as alive)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False  # kill(0 or -n) would address process groups
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # it exists, owned by someone else
    except (OSError, OverflowError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # no /proc (or it vanished just now): trust kill()
    fields = stat.rpartition(b")")[2].split()
    return not (fields and fields[0] == b"Z")


def add_progress(progress: list[str], line: str) -> list[str]:
    """The new rolling tail: the last 20 non-blank lines, each cut at 300 characters."""
    new = [part[:PROGRESS_LINE_CHARS] for part in line.splitlines() if part.strip()]
    if not new:
        return list(progress[-PROGRESS_LINES:])
    return [*progress, *new][-PROGRESS_LINES:]


def _statuses(status: str | Collection[str]) -> frozenset[str]:
    for one in [status] if isinstance(status, str) else status:
        if one not in models.JOB_STATUSES:
            raise InvalidArgument(
                f"status: expected one of {', '.join(models.JOB_STATUSES)}, got {one!r}",
                "Leave the status out to list jobs of every status.",
            )
    return frozenset([status] if isinstance(status, str) else status)


# -- the store --------------------------------------------------------------------


class JobStore:
    """Job records under one directory. Creating a store does not touch the disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{validate_job_id(job_id)}.json"

    def _storage_error(self, exc: OSError, what: str) -> StorageError:
        return StorageError(
            f"job directory {self.directory} is not usable ({what}): {exc.strerror or exc}",
            f"Make {self.directory} a writable directory, or set {ENV_VAR} to one.",
        )

    def _not_a_directory(self) -> StorageError:
        return StorageError(
            f"job directory {self.directory} exists and is not a directory",
            f"Remove or rename it, or set {ENV_VAR} to another directory.",
        )

    def _ensure_dir(self) -> None:
        directory = self.directory
        try:
            try:
                directory.mkdir(mode=0o700)
            except FileNotFoundError:
                directory.parent.mkdir(parents=True, exist_ok=True)
                directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            if not directory.is_dir():
                raise self._not_a_directory() from None
        except OSError as exc:
            raise self._storage_error(exc, "create") from None

    # -- single records --

    def save(self, job: Job) -> None:
        """Write `job` atomically: a unique temp file (0600) beside it, fsync, rename."""
        target = self._path(job.id)
        data = _ENCODER.encode(job)
        if len(data) > MAX_RECORD_BYTES:
            raise StorageError(
                f"job {job.id}: its record would be {len(data)} bytes, more than the "
                f"{MAX_RECORD_BYTES} a record may hold",
                "Pass a shorter task or context.",
            )
        self._ensure_dir()
        try:
            atomic_write(target, data)
        except OSError as exc:
            raise self._storage_error(exc, "write") from None

    def _read(self, job_id: str) -> Job | Unreadable | None:
        """The record for an already validated id; None when there is no file.
        Raises OSError when the file is there but the OS would not read it."""
        path = self.directory / f"{job_id}.json"
        try:
            data, _ = read_regular(path, MAX_RECORD_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (NotRegularFile, FileTooLarge) as exc:
            return Unreadable(str(path), exc.strerror or str(exc))
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return Unreadable(str(path), "a symbolic link, not a regular file")
        found = decode_record(data, job_id)
        return Unreadable(str(path), found) if isinstance(found, str) else found

    def read(self, job_id: str) -> Job | Unreadable | None:
        """The job, what is wrong with its record, or None when there is none."""
        job_id = validate_job_id(job_id)
        try:
            return self._read(job_id)
        except OSError as exc:
            raise self._storage_error(exc, "read") from None

    def load(self, job_id: str) -> Job | None:
        """The job, or None when there is no such (readable, matching) record."""
        found = self.read(job_id)
        return found if isinstance(found, Job) else None

    def require(self, job_id: str) -> Job:
        """The job; JobNotFound when there is none, naming the record when it is unreadable."""
        found = self.read(job_id)
        if isinstance(found, Unreadable):
            raise unreadable_error(job_id, found)
        if found is None:
            raise JobNotFound(f"no job {job_id}")
        return found

    def save_if_not_terminal(self, job: Job) -> bool:
        """Save unless the stored record is already terminal (transitions are monotonic)."""
        current = self.load(job.id)
        if current is not None and current.status in models.TERMINAL_STATUSES:
            return False
        self.save(job)
        return True

    def delete(self, job_id: str) -> bool:
        path = self._path(job_id)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._storage_error(exc, "delete") from None
        return True

    # -- many records --

    def _scan(self) -> Iterator[tuple[str, float]]:
        """(id, mtime) of every file named like a record; temp files and strangers are
        skipped. Whether it is a usable record is for `_read` to say."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        except OSError as exc:
            if isinstance(exc, NotADirectoryError) and self.directory.exists():
                raise self._not_a_directory() from None  # itself, not a component above it
            raise self._storage_error(exc, "list") from None
        for entry in entries:
            match = _FILE_RE.fullmatch(entry.name)
            if match is None:
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue  # removed while we looked
            yield match.group(1), mtime

    def _read_listed(self, job_id: str, unreadable: builtins.list[Unreadable]) -> Job | None:
        try:
            found = self._read(job_id)
        except OSError as exc:
            path = self.directory / f"{job_id}.json"
            found = Unreadable(str(path), f"cannot be read: {exc.strerror or exc}")
        if isinstance(found, Unreadable):
            unreadable.append(found)
            return None
        return found

    def _records(self) -> Iterator[Job]:
        """Every readable record; the unreadable ones are logged and skipped."""
        unreadable: builtins.list[Unreadable] = []
        for job_id, _ in self._scan():
            job = self._read_listed(job_id, unreadable)
            if job is not None:
                yield job
        for bad in unreadable:
            log.warning("skipped job record %s: %s", bad.path, bad.reason)

    def list(
        self, *, status: str | None = None, agent: str | None = None, limit: int = 50
    ) -> builtins.list[Job]:
        """`listing(...).jobs`."""
        return self.listing(status=status, agent=agent, limit=limit).jobs

    def listing(
        self,
        *,
        status: str | Collection[str] | None = None,
        agent: str | None = None,
        limit: int = 50,
    ) -> Listing:
        """Newest first (created_at, then mtime), at most `limit`, optionally filtered
        (`status`: one status or several), with the record files met on the way that
        could not be read.

        Files are visited newest mtime first and decoding stops once no older
        file can rank: a record is written when created, so created_at <= mtime.
        """
        wanted = None if status is None else _statuses(status)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"limit: expected an integer >= 1, got {limit!r}")
        files = sorted(self._scan(), key=lambda item: item[1], reverse=True)
        top: list[tuple[float, float, str, Job]] = []  # min-heap of the best `limit`
        unreadable: builtins.list[Unreadable] = []
        for job_id, mtime in files:
            if len(top) >= limit and mtime + _MTIME_SLACK_SECONDS < top[0][0]:
                break
            job = self._read_listed(job_id, unreadable)
            if job is None or (wanted is not None and job.status not in wanted):
                continue
            if agent is not None and job.agent != agent:
                continue
            created = parse_iso(job.created_at)
            item = (mtime if created is None else created, mtime, job_id, job)
            if len(top) < limit:
                heapq.heappush(top, item)
            elif item[:3] > top[0][:3]:
                heapq.heapreplace(top, item)
        top.sort(key=lambda item: item[:3], reverse=True)
        return Listing(jobs=[item[3] for item in top], unreadable=unreadable)

    def gc(
        self, *, max_age_days: float | None, dry_run: bool = False, now: float | None = None
    ) -> builtins.list[str]:
        """Purge terminal records whose completed_at (else created_at) is older than
        `max_age_days` (None: any age). Returns the ids purged, or that would be.
        Unparsable records and unfinished jobs are always kept."""
        if max_age_days is not None:
            hint = "Pass e.g. max_age_days=7; use dry_run=true to see what would go."
            max_age_days = models.convert(
                max_age_days, models.PositiveFloat, field="max_age_days", hint=hint
            )
        now = time.time() if now is None else now
        purged: builtins.list[str] = []
        for job in self._records():
            if job.status not in models.TERMINAL_STATUSES:
                continue
            if max_age_days is not None:
                stamp = parse_iso(job.completed_at) or parse_iso(job.created_at)
                if stamp is None or now - stamp <= max_age_days * 86400:
                    continue
            if dry_run or self.delete(job.id):
                purged.append(job.id)
        return sorted(purged)

    def purge_older_than(self, days: float, now: float | None = None) -> builtins.list[str]:
        """The `job_retention_days` purge at server start: gc(max_age_days=days)."""
        return self.gc(max_age_days=days, now=now)

    def recover_stale(
        self,
        *,
        pid_alive: Callable[[int], bool],
        stop_groups: Callable[[Iterable[tuple[int, int | None]]], set[int]],
        now: float | None = None,
    ) -> builtins.list[str]:
        """At server start: settle what a dead server left. Returns the ids changed.

        - `running` whose owner process is gone: failed; the claude process
          groups they left are stopped all at once by `stop_groups` (the
          runtime's orphans.stop_groups: one grace period however many there are).
        - `pending` whose owner process is gone: failed, never run. The caller
          that queued it went with its server and may have moved on; running it
          now would spend the user's money on work nobody waits for. The error
          says so and to resubmit it with dispatch_async.
        - `pending` for more than 24 h (a live owner that never started it): failed.
        """
        now = time.time() if now is None else now
        settle: builtins.list[tuple[Job, str, models.DispatchResult | None]] = []
        for job in self._records():
            if job.status in models.TERMINAL_STATUSES:
                continue
            if not pid_alive(job.owner_pid):
                if job.status == "running":
                    error = f"server stopped (owner pid {job.owner_pid} is gone)"
                    settle.append((job, error, None))
                else:
                    error = ORPHANED_PENDING.format(pid=job.owner_pid)
                    orphaned = models.DispatchResult(
                        agent=job.agent, success=False, error=error, hint=ORPHANED_PENDING_HINT
                    )
                    settle.append((job, error, orphaned))
                continue
            created = parse_iso(job.created_at)
            if job.status == "pending" and created is not None:
                if now - created > STALE_PENDING_SECONDS:
                    settle.append((job, "never started: pending for more than 24 h", None))
        stopped = stop_groups(
            (job.child_pgid, job.child_started)
            for job, _, _ in settle
            if job.status == "running" and job.child_pgid is not None
        )
        changed: builtins.list[str] = []
        for job, error, result in settle:
            if job.status == "running" and job.child_pgid in stopped:
                error += f"; stopped the claude process group {job.child_pgid} it left"
            failed = msgspec.structs.replace(
                job, status="failed", error=error, result=result, completed_at=_iso(now)
            )
            if self.save_if_not_terminal(failed):
                changed.append(job.id)
        return sorted(changed)
