"""What the job tools answer: pure views of a job record (status, list line, ref, result)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    max_chars = models.convert(
        max_chars, models.NonNegFloat, field="max_chars", hint="0 returns it all."
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
