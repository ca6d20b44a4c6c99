"""MCP tools for async jobs and result references."""

from __future__ import annotations

import msgspec

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import JobStatus, clamped, convert, dispatch_request
from agent_dispatch.server.remedies import present_job
from agent_dispatch.server.toolkit import Toolbox
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.views import (
    Accepted,
    Cancelled,
    FetchedResult,
    JobList,
    JobRecord,
    Purged,
    UnfinishedResult,
    UnreadableRecord,
    WaitedJob,
    WaitedJobs,
    WouldPurge,
    fetch_answer,
    job_line,
    job_record,
)
from agent_dispatch.storage.jobs import validate_job_id

MAX_LIST = 1000


def register_job_tools(box: Toolbox, dispatcher: Dispatcher) -> None:
    @box.tool
    async def dispatch_async(
        agent: str,
        task: str,
        context: str = "",
        caller: str = "",
        goal: str = "",
        response_format: str = "",
        timeout_seconds: float = 0,
    ) -> Accepted:
        """Start a dispatch in the background and return its job_id at once. Follow it with
        dispatch_wait (wakes when it finishes), dispatch_status or dispatch_cancel."""
        req = dispatch_request(locals())
        job = await dispatcher.dispatch_async(req)
        return Accepted(job_id=job.id, status=job.status, agent=job.agent)

    @box.tool
    async def dispatch_status(job_id: str) -> JobRecord:
        """A job's record: status, timestamps, result or error, and its latest progress lines."""
        return job_record(present_job(await dispatcher.job(job_id)))

    @box.tool
    async def dispatch_wait(
        job_id: str = "",
        job_ids: list[str] | None = None,
        mode: str = "all",
        timeout_seconds: float = 60,
    ) -> WaitedJob | WaitedJobs:
        """Wait until a job (or all / any of job_ids) finishes, up to timeout_seconds
        (1..3600). At the deadline the jobs keep running and `timed_out_waiting` is true."""
        ids = list(job_ids or [])
        if job_id:
            ids.insert(0, job_id)
        if not ids:
            raise InvalidArgument("give job_id or job_ids", "Job ids come from dispatch_async.")
        waited = await dispatcher.wait_up_to(ids, timeout_seconds, mode=mode)
        records = [job_record(present_job(j)) for j in waited.jobs]
        timed_out = waited.timed_out
        if job_id and not job_ids:
            fields = msgspec.structs.asdict(records[0])
            return WaitedJob(**fields, timed_out_waiting=timed_out)
        return WaitedJobs(jobs=records, mode=mode, timed_out_waiting=timed_out)

    @box.tool
    async def dispatch_cancel(job_id: str) -> Cancelled:
        """Cancel a job: a pending one never starts; a running one has its process group
        killed. Answers once the job is recorded as cancelled."""
        done = await dispatcher.cancel(job_id, reason="cancelled by dispatch_cancel")
        return Cancelled(job_id=done.job_id, outcome=done.outcome.value, status=done.status)

    @box.tool
    async def dispatch_jobs(status: str = "", limit: float = 50, agent: str = "") -> JobList:
        """Recent jobs, newest first (status: pending/running/done/failed/cancelled)."""
        wanted: JobStatus | None = None
        if status:
            hint = 'Pass status="" for every status.'
            wanted = convert(status, JobStatus, field="status", hint=hint)
        count = int(clamped(limit, "limit", 1, MAX_LIST))
        found = await dispatcher.list_jobs(status=wanted, agent=agent or None, limit=count)
        lines = [job_line(j) for j in found.jobs]
        if not found.unreadable:
            return JobList(jobs=lines, count=len(lines))
        return JobList(  # named, so they are neither hidden nor fatal
            jobs=lines,
            count=len(lines),
            unreadable=[UnreadableRecord(path=u.path, reason=u.reason) for u in found.unreadable],
            hint="Files named like job records that are not records; remove them with rm.",
        )

    @box.tool
    async def fetch_result(ref: str, max_chars: float = 0) -> FetchedResult | UnfinishedResult:
        """The full result behind a ref (from return_ref) or any job id; max_chars cuts it
        (0 = all) and then says `truncated` and `full_size`."""
        job = await dispatcher.job(validate_job_id(ref, "ref"))
        return fetch_answer(present_job(job), max_chars)

    @box.tool
    async def dispatch_gc(max_age_days: float = 7, dry_run: bool = False) -> Purged | WouldPurge:
        """Delete finished job records older than max_age_days (dry_run lists them only)."""
        ids = await dispatcher.purge_jobs(max_age_days=max_age_days, dry_run=dry_run)
        if dry_run:
            return WouldPurge(would_purge=len(ids), job_ids=ids)
        return Purged(purged=len(ids), job_ids=ids)
