"""Persistent job records: one JSON file per job, named by its 32-hex id.

Ids are validated before any path is built, files are written atomically
(0600, in a 0700 directory), and a record that does not parse or whose id does
not match its file name is treated as absent, never trusted and never deleted.
Everything here is synchronous and small; the Dispatcher owns the async side.
"""

from __future__ import annotations

import builtins
import contextlib
import heapq
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from agent_dispatch import models
from agent_dispatch.errors import InvalidArgument, JobNotFound, StorageError
from agent_dispatch.files import atomic_write, env_path, state_home
from agent_dispatch.orphans import stop_group

ENV_VAR = "AGENT_DISPATCH_JOBS_DIR"
JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
_FILE_RE = re.compile(r"([0-9a-f]{32})\.json")
_STATUSES = ("pending", "running", "done", "failed", "cancelled")

PROGRESS_LINES = 20
PROGRESS_LINE_CHARS = 300
STALE_PENDING_SECONDS = 24 * 3600
SUMMARY_MAX_CHARS = 100_000
TASK_PREVIEW_CHARS = 120
# mtime and created_at come from the same clock, but a file system may round mtime.
_MTIME_SLACK_SECONDS = 2.0

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


# Built once: msgspec encoders/decoders are immutable and reusable.
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Job)


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
    return env_path(env, ENV_VAR) or state_home(env) / "jobs"


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
        self._ensure_dir()
        try:
            atomic_write(target, data)
        except OSError as exc:
            raise self._storage_error(exc, "write") from None

    def _read(self, job_id: str) -> Job | None:
        """The record for an already validated id; None when absent or not trustworthy.
        Raises OSError other than FileNotFoundError."""
        try:
            with open(self.directory / f"{job_id}.json", "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            job = _DECODER.decode(data)
        except msgspec.DecodeError:
            return None
        return job if job.id == job_id else None

    def load(self, job_id: str) -> Job | None:
        """The job, or None when there is no such (valid, matching) record."""
        job_id = validate_job_id(job_id)
        try:
            return self._read(job_id)
        except OSError as exc:
            raise self._storage_error(exc, "read") from None

    def require(self, job_id: str) -> Job:
        job = self.load(job_id)
        if job is None:
            path = self.directory / f"{job_id}.json"
            if path.is_file():  # there, but not a record of this job: say so, not "no job"
                raise JobNotFound(
                    f"job {job_id}: its record {path} is unreadable (not a valid job record)",
                    f"Nothing can be recovered from it; remove it with: rm {path}",
                )
            raise JobNotFound(f"no job {job_id}")
        return job

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
        """(id, mtime) of every record file; temp files and strangers are skipped."""
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
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue  # removed while we looked
            yield match.group(1), mtime

    def _records(self) -> Iterator[Job]:
        for job_id, _ in self._scan():
            with contextlib.suppress(OSError):
                job = self._read(job_id)
                if job is not None:
                    yield job

    def list(
        self, *, status: str | None = None, agent: str | None = None, limit: int = 50
    ) -> builtins.list[Job]:
        """Newest first (created_at, then mtime), at most `limit`, optionally filtered.

        Files are visited newest mtime first and decoding stops once no older
        file can rank: a record is written when created, so created_at <= mtime.
        """
        if status is not None and status not in _STATUSES:
            raise InvalidArgument(
                f"status: expected one of {', '.join(_STATUSES)}, got {status!r}",
                "Leave the status out to list jobs of every status.",
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"limit: expected an integer >= 1, got {limit!r}")
        files = sorted(self._scan(), key=lambda item: item[1], reverse=True)
        top: list[tuple[float, float, str, Job]] = []  # min-heap of the best `limit`
        for job_id, mtime in files:
            if len(top) >= limit and mtime + _MTIME_SLACK_SECONDS < top[0][0]:
                break
            try:
                job = self._read(job_id)
            except OSError:
                continue
            if job is None or (status is not None and job.status != status):
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
        return [item[3] for item in top]

    def gc(
        self, *, max_age_days: float | None, dry_run: bool = False, now: float | None = None
    ) -> builtins.list[str]:
        """Purge terminal records whose completed_at (else created_at) is older than
        `max_age_days` (None: any age). Returns the ids purged, or that would be.
        Unparsable records and unfinished jobs are always kept."""
        if max_age_days is not None and (
            isinstance(max_age_days, bool)
            or not isinstance(max_age_days, int | float)
            or not math.isfinite(max_age_days)
            or max_age_days <= 0
        ):
            raise InvalidArgument(
                f"max_age_days: expected a finite number > 0, got {max_age_days!r}",
                "Pass e.g. max_age_days=7; use dry_run=true to see what would go.",
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
        self, *, pid_alive: Callable[[int], bool], now: float | None = None
    ) -> builtins.list[str]:
        """At server start: fail `running` records whose owner process is gone and
        `pending` ones older than 24 h. Returns the ids changed."""
        now = time.time() if now is None else now
        changed: builtins.list[str] = []
        for job in self._records():
            if job.status == "running":
                if pid_alive(job.owner_pid):
                    continue
                error = f"server stopped (owner pid {job.owner_pid} is gone)"
                if job.child_pgid is not None and stop_group(job.child_pgid, job.child_started):
                    error += f"; stopped the claude process group {job.child_pgid} it left"
            elif job.status == "pending":
                created = parse_iso(job.created_at)
                if created is None or now - created <= STALE_PENDING_SECONDS:
                    continue
                error = "never started: pending for more than 24 h"
            else:
                continue
            failed = msgspec.structs.replace(
                job, status="failed", error=error, completed_at=_iso(now)
            )
            if self.save_if_not_terminal(failed):
                changed.append(job.id)
        return sorted(changed)


# -- payloads for the tools (pure) -----------------------------------------------------


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, on a word boundary when one is near, plus "…" when cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    head = text[:limit]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if space >= limit * 0.8:
        head = head[:space]
    return head.rstrip() + "…"


def _result_of(job: Job) -> models.DispatchResult | None:
    """The job's result; a terminal job without one gets a failed result naming why."""
    if job.result is not None:
        return job.result
    if job.status in models.TERMINAL_STATUSES:
        return models.DispatchResult(
            agent=job.agent, success=False, error=job.error or f"job {job.status}"
        )
    return None


def ref_payload(job: Job, summary_chars: int) -> dict[str, Any]:
    """The compact answer for `return_ref`: a summary plus the ref to fetch the rest."""
    limit = max(0, min(int(summary_chars), SUMMARY_MAX_CHARS))
    res = _result_of(job) or models.DispatchResult(agent=job.agent, success=False)
    out: dict[str, Any] = {
        "ref": job.id,
        "agent": job.agent,
        "success": res.success,
        "size": len(res.result),
        "summary": _cut(res.result, limit),
        "summary_chars": limit,
        "session_id": res.session_id,
        "cost_usd": res.cost_usd,
        "duration_ms": res.duration_ms,
    }
    if res.parsed_result is not None:
        out["parsed_result"] = res.parsed_result
    for key in ("error", "error_type", "hint", "denied_tools", "budget_exceeded", "cached"):
        value = getattr(res, key)
        if value is not None:
            out[key] = value
    return out


def fetch_payload(job: Job, max_chars: float) -> dict[str, Any]:
    """The full result behind a ref or job id; `max_chars > 0` cuts the text and says
    `truncated` and `full_size`. An unfinished job gives its status and progress."""
    if (
        isinstance(max_chars, bool)
        or not isinstance(max_chars, int | float)
        or not math.isfinite(max_chars)
        or max_chars < 0
    ):
        raise InvalidArgument(
            f"max_chars: expected a finite number >= 0 (0 = all), got {max_chars!r}"
        )
    res = _result_of(job)
    if res is None:
        return {
            "ref": job.id,
            "job_id": job.id,
            "agent": job.agent,
            "status": job.status,
            "progress": list(job.progress),
            "hint": "The job has not finished; call dispatch_wait with this job_id.",
        }
    out: dict[str, Any] = msgspec.to_builtins(res)
    out.setdefault("result", "")
    out.update(ref=job.id, job_id=job.id, status=job.status)
    limit = int(max_chars)
    if limit > 0 and len(res.result) > limit:
        out["result"] = res.result[:limit]
        out["truncated"] = True
        out["full_size"] = len(res.result)
    return out


def job_view(job: Job) -> dict[str, Any]:
    """The dispatch_status record."""
    return {
        "id": job.id,
        "agent": job.agent,
        "task": job.task,
        "status": job.status,
        "kind": job.kind,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "result": None if job.result is None else msgspec.to_builtins(job.result),
        "error": job.error,
        "progress": list(job.progress),
    }


def job_summary(job: Job) -> dict[str, Any]:
    """One line of dispatch_jobs."""
    out: dict[str, Any] = {
        "id": job.id,
        "agent": job.agent,
        "status": job.status,
        "kind": job.kind,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "task": _cut(job.task, TASK_PREVIEW_CHARS),
    }
    if job.result is not None:
        out["success"] = job.result.success
    if job.error is not None:
        out["error"] = _cut(job.error, TASK_PREVIEW_CHARS)
    if job.status == "running" and job.progress:
        out["last_progress"] = job.progress[-1]
    return out
