"""What the job tools answer: pure views of a job record (status, list line, ref, result).

Each answer is a Struct: its JSON Schema is what the MCP face publishes as the
tool's outputSchema, and `msgspec.to_builtins` of it is the JSON the tool sends.
Optional fields are omitted when unset, as the answers always have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec

from agent_dispatch import models

if TYPE_CHECKING:
    from agent_dispatch.storage.jobs import Job

SUMMARY_MAX_CHARS = 100_000
TASK_PREVIEW_CHARS = 120


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


class RefAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The compact answer for `return_ref`: a summary plus the ref to fetch the rest."""

    ref: str
    agent: str
    success: bool
    size: int
    summary: str
    summary_chars: int
    session_id: str | None
    cost_usd: float | None
    duration_ms: int | None
    parsed_result: Any = None
    error: str | None = None
    error_type: models.ErrorType | None = None
    hint: str | None = None
    denied_tools: list[str] | None = None
    budget_exceeded: bool | None = None
    cached: bool | None = None
    outcome: models.Outcome | None = None
    outcome_reason: str | None = None


def ref_answer(job: Job, summary_chars: int) -> RefAnswer:
    limit = max(0, min(int(summary_chars), SUMMARY_MAX_CHARS))
    res = _result_of(job) or models.DispatchResult(agent=job.agent, success=False)
    return RefAnswer(
        ref=job.id,
        agent=job.agent,
        success=res.success,
        size=len(res.result),
        summary=_cut(res.result, limit),
        summary_chars=limit,
        session_id=res.session_id,
        cost_usd=res.cost_usd,
        duration_ms=res.duration_ms,
        parsed_result=res.parsed_result,
        error=res.error,
        error_type=res.error_type,
        hint=res.hint,
        denied_tools=res.denied_tools,
        budget_exceeded=res.budget_exceeded,
        cached=res.cached,
        outcome=res.outcome,
        outcome_reason=res.outcome_reason,
    )


class FetchedResult(models.DispatchResult, kw_only=True, omit_defaults=True):
    """A finished job's result behind a ref or job id, named by both."""

    result: str  # always present, even when empty
    ref: str
    job_id: str
    status: models.JobStatus
    truncated: bool | None = None
    full_size: int | None = None


class UnfinishedResult(msgspec.Struct, kw_only=True):
    """What fetch_result answers for a job that has not finished."""

    ref: str
    job_id: str
    agent: str
    status: models.JobStatus
    progress: list[str]
    hint: str


def fetch_answer(job: Job, max_chars: float) -> FetchedResult | UnfinishedResult:
    """The full result behind a ref or job id; `max_chars > 0` cuts the text and says
    `truncated` and `full_size`. An unfinished job gives its status and progress."""
    max_chars = models.convert(
        max_chars, models.NonNegFloat, field="max_chars", hint="0 returns it all."
    )
    res = _result_of(job)
    if res is None:
        return UnfinishedResult(
            ref=job.id,
            job_id=job.id,
            agent=job.agent,
            status=job.status,
            progress=list(job.progress),
            hint="The job has not finished; call dispatch_wait with this job_id.",
        )
    fields = msgspec.structs.asdict(res)
    limit = int(max_chars)
    if limit > 0 and len(res.result) > limit:
        fields.update(result=res.result[:limit], truncated=True, full_size=len(res.result))
    return FetchedResult(**fields, ref=job.id, job_id=job.id, status=job.status)


class JobRecord(msgspec.Struct, kw_only=True):
    """The dispatch_status record."""

    id: str
    agent: str
    task: str
    status: models.JobStatus
    kind: Literal["async", "ref"]
    created_at: str
    started_at: str | None
    completed_at: str | None
    result: models.DispatchResult | None
    error: str | None
    progress: list[str]


def job_record(job: Job) -> JobRecord:
    return JobRecord(
        id=job.id,
        agent=job.agent,
        task=job.task,
        status=job.status,
        kind=job.kind,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        result=job.result,
        error=job.error,
        progress=list(job.progress),
    )


class JobLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of dispatch_jobs."""

    id: str
    agent: str
    status: models.JobStatus
    kind: Literal["async", "ref"]
    created_at: str
    completed_at: str | None
    task: str
    success: bool | None = None
    outcome: models.Outcome | None = None
    error: str | None = None
    last_progress: str | None = None


def job_line(job: Job) -> JobLine:
    return JobLine(
        id=job.id,
        agent=job.agent,
        status=job.status,
        kind=job.kind,
        created_at=job.created_at,
        completed_at=job.completed_at,
        task=_cut(job.task, TASK_PREVIEW_CHARS),
        success=None if job.result is None else job.result.success,
        outcome=None if job.result is None else job.result.outcome,
        error=None if job.error is None else _cut(job.error, TASK_PREVIEW_CHARS),
        last_progress=job.progress[-1] if job.status == "running" and job.progress else None,
    )


class Accepted(msgspec.Struct, kw_only=True):
    """dispatch_async: the job that was started."""

    job_id: str
    status: models.JobStatus
    agent: str


class WaitedJob(JobRecord, kw_only=True):
    """dispatch_wait on one job_id: its record, and whether the wait hit its deadline."""

    timed_out_waiting: bool


class WaitedJobs(msgspec.Struct, kw_only=True):
    """dispatch_wait on job_ids: their records, and whether the wait hit its deadline."""

    jobs: list[JobRecord]
    mode: str
    timed_out_waiting: bool


class Cancelled(msgspec.Struct, kw_only=True):
    """dispatch_cancel: what became of the job."""

    job_id: str
    outcome: Literal["cancelled", "cancelled_running", "not_found", "already_terminal", "running"]
    status: models.JobStatus | None


class UnreadableRecord(msgspec.Struct, kw_only=True):
    path: str
    reason: str


class JobList(msgspec.Struct, kw_only=True, omit_defaults=True):
    """dispatch_jobs: recent jobs, newest first; unreadable record files are named."""

    jobs: list[JobLine]
    count: int
    unreadable: list[UnreadableRecord] | None = None
    hint: str | None = None


class Purged(msgspec.Struct, kw_only=True):
    """dispatch_gc: the job records deleted."""

    purged: int
    job_ids: list[str]


class WouldPurge(msgspec.Struct, kw_only=True):
    """dispatch_gc with dry_run: the job records it would delete."""

    would_purge: int
    job_ids: list[str]


# The same answers as plain JSON values, for the CLI and for tests that read fields.


def ref_payload(job: Job, summary_chars: int) -> dict[str, Any]:
    return cast(dict[str, Any], msgspec.to_builtins(ref_answer(job, summary_chars)))


def fetch_payload(job: Job, max_chars: float) -> dict[str, Any]:
    return cast(dict[str, Any], msgspec.to_builtins(fetch_answer(job, max_chars)))


def job_view(job: Job) -> dict[str, Any]:
    return cast(dict[str, Any], msgspec.to_builtins(job_record(job)))


def job_summary(job: Job) -> dict[str, Any]:
    return cast(dict[str, Any], msgspec.to_builtins(job_line(job)))
