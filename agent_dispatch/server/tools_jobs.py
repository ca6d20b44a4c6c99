"""MCP tools for async jobs and result references."""

from __future__ import annotations

from typing import Any

import trio
from mcp.server.mcpserver import MCPServer

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import JobStatus, clamped, convert, dispatch_request
from agent_dispatch.server.remedies import present_job
from agent_dispatch.server.toolkit import tool_errors
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.views import fetch_payload, job_summary, job_view
from agent_dispatch.storage.jobs import validate_job_id

MAX_LIST = 1000


def register_job_tools(server: MCPServer, dispatcher: Dispatcher) -> None:
    @server.tool()
    @tool_errors
    async def dispatch_async(
        agent: str,
        task: str,
        context: str = "",
        caller: str = "",
        goal: str = "",
        response_format: str = "",
        timeout_seconds: float = 0,
    ) -> dict[str, Any]:
        """Start a dispatch in the background and return its job_id at once. Follow it with
        dispatch_wait (wakes when it finishes), dispatch_status or dispatch_cancel."""
        req = dispatch_request(locals())
        job = await dispatcher.dispatch_async(req)
        return {"job_id": job.id, "status": job.status, "agent": job.agent}

    @server.tool()
    @tool_errors
    async def dispatch_status(job_id: str) -> dict[str, Any]:
        """A job's record: status, timestamps, result or error, and its latest progress lines."""
        return job_view(present_job(await dispatcher.jobs.get(job_id)))

    @server.tool()
    @tool_errors
    async def dispatch_wait(
        job_id: str = "",
        job_ids: list[str] | None = None,
        mode: str = "all",
        timeout_seconds: float = 60,
    ) -> dict[str, Any]:
        """Wait until a job (or all / any of job_ids) finishes, up to timeout_seconds
        (1..3600). At the deadline the jobs keep running and `timed_out_waiting` is true."""
        ids = list(job_ids or [])
        if job_id:
            ids.insert(0, job_id)
        if not ids:
            raise InvalidArgument("give job_id or job_ids", "Job ids come from dispatch_async.")
        jobs, timed_out = await dispatcher.jobs.wait(ids, mode=mode, seconds=timeout_seconds)
        if job_id and not job_ids:
            out = job_view(present_job(jobs[0]))
        else:
            out = {"jobs": [job_view(present_job(j)) for j in jobs], "mode": mode}
        out["timed_out_waiting"] = timed_out
        return out

    @server.tool()
    @tool_errors
    async def dispatch_cancel(job_id: str) -> dict[str, Any]:
        """Cancel a job: a pending one never starts; a running one has its process group
        killed. Answers once the job is recorded as cancelled."""
        return await dispatcher.jobs.cancel(job_id)

    @server.tool()
    @tool_errors
    async def dispatch_jobs(status: str = "", limit: float = 50, agent: str = "") -> dict[str, Any]:
        """Recent jobs, newest first (status: pending/running/done/failed/cancelled)."""
        if status:
            convert(status, JobStatus, field="status", hint='Pass status="" for every status.')
        count = int(clamped(limit, "limit", 1, MAX_LIST))
        found = await dispatcher.jobs.listing(
            status=status or None, agent=agent or None, limit=count
        )
        out: dict[str, Any] = {
            "jobs": [job_summary(j) for j in found.jobs],
            "count": len(found.jobs),
        }
        if found.unreadable:  # named, so they are neither hidden nor fatal
            out["unreadable"] = [{"path": u.path, "reason": u.reason} for u in found.unreadable]
            out["hint"] = "Files named like job records that are not records; remove them with rm."
        return out

    @server.tool()
    @tool_errors
    async def fetch_result(ref: str, max_chars: float = 0) -> dict[str, Any]:
        """The full result behind a ref (from return_ref) or any job id; max_chars cuts it
        (0 = all) and then says `truncated` and `full_size`."""
        job = await dispatcher.jobs.get(validate_job_id(ref, "ref"))
        return fetch_payload(present_job(job), max_chars)

    @server.tool()
    @tool_errors
    async def dispatch_gc(max_age_days: float = 7, dry_run: bool = False) -> dict[str, Any]:
        """Delete finished job records older than max_age_days (dry_run lists them only)."""
        await dispatcher.jobs.recovered()
        ids = await trio.to_thread.run_sync(
            lambda: dispatcher.jobs.store.gc(max_age_days=max_age_days, dry_run=dry_run)
        )
        if dry_run:
            return {"would_purge": len(ids), "job_ids": ids}
        return {"purged": len(ids), "job_ids": ids}
