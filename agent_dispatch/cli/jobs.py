"""`jobs`, `job`, `cancel`, `gc`: the async-job records the MCP server keeps, from a shell."""

from __future__ import annotations

import functools
import os
from typing import Annotated

import msgspec
import trio
from cyclopts import Parameter

from agent_dispatch.cli.common import (
    JsonFlag,
    command,
    config_store,
    cut,
    emit,
    emit_json,
    job_store,
    money,
    plural,
    table,
    warn,
)
from agent_dispatch.cli.remedies import present_job
from agent_dispatch.errors import DispatchError, InvalidArgument
from agent_dispatch.models import TERMINAL_STATUSES, PositiveFloat, Settings, convert
from agent_dispatch.runtime.orphans import stop_group
from agent_dispatch.service.views import job_summary, job_view
from agent_dispatch.storage.jobs import Job, now_iso, pid_alive, validate_job_id

MAX_LIST = 1000
DEFAULT_GC_DAYS = 7.0


def jobs(
    *,
    status: str | None = None,
    agent: str | None = None,
    limit: int = 50,
    json: JsonFlag = False,
    watch: Annotated[bool, Parameter(negative="")] = False,
    interval: float | None = None,
) -> int:
    """List recent jobs, newest first; or watch the running and queued ones live.

    With --watch on a terminal: a table of the running and queued (pending) jobs,
    redrawn in place every --interval seconds (agent, age, cost when known, last
    progress line) under a header counting them; Ctrl-C quits (exit status 0).
    Into a pipe or a file: plain text, no escape codes, one snapshot (a UTC-stamped
    header and a table) each time the jobs change, until Ctrl-C or the reader goes.

    Parameters
    ----------
    status
        Only jobs with this status: pending, running, done, failed or cancelled
        (with --watch: pending or running).
    agent
        Only jobs of this agent.
    limit
        At most this many (1..1000); with --watch, rows shown (all are counted).
    watch
        Watch the running and queued jobs live, until Ctrl-C.
    interval
        Seconds between two looks at the jobs with --watch (0.1..3600, default 1).
    """
    count = min(max(limit, 1), MAX_LIST)
    if interval is not None and not watch:
        raise InvalidArgument(
            "jobs: --interval paces --watch and means nothing without it",
            "Add --watch, or leave --interval out.",
        )
    if watch:
        return _watch(status=status, agent=agent, limit=count, json=json, interval=interval)
    listing = job_store().listing(status=status or None, agent=agent or None, limit=count)
    found = listing.jobs
    for bad in listing.unreadable:
        warn(f"skipped {bad.path}: unreadable ({bad.reason}); remove it with: rm {bad.path}")
    if json:
        out: dict[str, object] = {"jobs": [job_summary(j) for j in found], "count": len(found)}
        if listing.unreadable:
            out["unreadable"] = [{"path": u.path, "reason": u.reason} for u in listing.unreadable]
        emit_json(out)
        return 0
    if not found:
        emit("no jobs" + (" match" if status or agent else " yet"))
        return 0
    rows = [[j.id, _status(j), j.agent, j.created_at, cut(j.error or j.task, 50)] for j in found]
    for line in table(["ID", "STATUS", "AGENT", "CREATED", "TASK / ERROR"], rows):
        emit(line)
    return 0


def _watch(
    *, status: str | None, agent: str | None, limit: int, json: bool, interval: float | None
) -> int:
    if json:
        raise InvalidArgument(
            "jobs: give --watch or --json, not both",
            "--json prints the list once; for a live view drop --json.",
        )
    # Here, not at the top: every other command starts without rich's live display.
    from agent_dispatch.cli import watch as cli_watch

    look = cli_watch.Look(
        statuses=cli_watch.watch_statuses(status or None), agent=agent or None, limit=limit
    )
    every = cli_watch.check_interval(cli_watch.DEFAULT_INTERVAL if interval is None else interval)
    store = job_store()
    return trio.run(functools.partial(cli_watch.run_watch, store, look, interval=every))


def job(job_id: str, /, *, json: JsonFlag = False) -> int:
    """Show one job: status, times, progress and result.

    Parameters
    ----------
    job_id
        The 32-character job id (from `agent-dispatch jobs` or dispatch_async).
    """
    record = present_job(job_store().require(validate_job_id(job_id)))
    if json:
        emit_json(job_view(record))
        return 0
    _print_job(record)
    return 0


def _status(j: Job) -> str:
    """The status, and the agent's own word when it did not finish (`done (partial)`)."""
    outcome = j.result.outcome if j.result is not None else None
    return f"{j.status} ({outcome})" if outcome in ("partial", "blocked") else j.status


def _print_job(j: Job) -> None:
    emit(f"job {j.id}")
    rows = [
        ("agent", j.agent),
        ("status", j.status + (" (a stored result)" if j.kind == "ref" else "")),
        ("created", j.created_at),
        ("started", j.started_at or "-"),
        ("completed", j.completed_at or "-"),
        ("task", cut(j.task, 200)),
    ]
    if j.error:
        rows.append(("error", j.error))
    res = j.result
    if res is not None:
        if res.outcome is not None:
            reason = f" ({res.outcome_reason})" if res.outcome_reason else ""
            rows.append(("outcome", res.outcome + reason))
        rows.append(("cost", money(res.cost_usd)))
        if res.duration_ms is not None:
            rows.append(("duration", f"{res.duration_ms / 1000:.1f}s"))
        if res.session_id:
            rows.append(("session", res.session_id))
        if res.error_type:
            rows.append(("error_type", res.error_type))
        if res.denied_tools:
            rows.append(("denied", ", ".join(res.denied_tools)))
        if res.hint:
            rows.append(("hint", res.hint))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        emit(f"  {key.ljust(width)}  {value}")
    if j.progress:
        emit(f"progress (last {len(j.progress)}):")
        for line in j.progress:
            emit(f"  {line}")
    if res is not None and res.result:
        emit("result:")
        for line in res.result.splitlines():
            emit(f"  {line}")
    if j.status not in TERMINAL_STATUSES:
        emit(f"still {j.status}; cancel with: {command('agent-dispatch', 'cancel', j.id)}")


def cancel(job_id: str, /) -> int:
    """Cancel a job that no live server runs (one that does must be cancelled there).

    Parameters
    ----------
    job_id
        The 32-character job id.
    """
    store = job_store()
    record = store.require(validate_job_id(job_id))
    if record.status in TERMINAL_STATUSES:
        emit(f"job {job_id} already finished: {record.status}")
        return 0
    if record.owner_pid != os.getpid() and pid_alive(record.owner_pid):
        raise InvalidArgument(
            f"job {job_id} is {record.status} in the MCP server with pid {record.owner_pid}",
            f'Cancel it there: dispatch_cancel(job_id="{job_id}") from the Claude Code session '
            "that started it.",
        )
    cancelled = msgspec.structs.replace(
        record, status="cancelled", error="cancelled (its server is gone)", completed_at=now_iso()
    )
    if not store.save_if_not_terminal(cancelled):
        emit(f"job {job_id} finished before it could be cancelled")
        return 0
    left = ""
    if record.child_pgid is not None:
        stopped = stop_group(record.child_pgid, record.child_started, grace=_kill_grace())
        left = (
            f"; stopped the claude process group {record.child_pgid} it left running"
            if stopped
            else "; no claude process of it was still running"
        )
    emit(f"cancelled job {job_id} (it was {record.status}; its server is gone{left})")
    return 0


def _kill_grace() -> float:
    """settings.kill_grace_seconds; a broken config must not block a cancel (the default)."""
    try:
        return config_store().load().settings.kill_grace_seconds
    except DispatchError:
        return Settings().kill_grace_seconds


def gc(
    *,
    days: float | None = None,
    all_: Annotated[bool, Parameter(name="--all", negative="")] = False,
    dry_run: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Delete finished job records older than --days (default 7), or of any age with --all.

    Unfinished jobs are never deleted.

    Parameters
    ----------
    days
        Age in days (> 0) of the records to delete.
    all_
        Delete finished records of every age.
    dry_run
        Only list what would be deleted.
    """
    if all_ and days is not None:
        raise InvalidArgument(
            "gc: give --days or --all, not both",
            "--days N purges finished jobs older than N days; --all purges them at any age.",
        )
    if days is not None:
        hint = "Use --all to delete finished jobs of every age."
        days = convert(days, PositiveFloat, field="--days", hint=hint)
    age = None if all_ else (DEFAULT_GC_DAYS if days is None else days)
    ids = job_store().gc(max_age_days=age, dry_run=dry_run)
    scope = "" if age is None else f" older than {age:g} days"
    verb = "would delete" if dry_run else "deleted"
    emit(f"{verb} {plural(len(ids), 'finished job record')}{scope}")
    if dry_run:
        for job_id in ids:
            emit(f"  {job_id}")
    return 0
