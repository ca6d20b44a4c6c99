"""The Dispatcher's job methods: submit, wait, cancel, list (a mixin of Dispatcher).

Jobs run in the Dispatcher's nursery and persist as records (service/async_jobs.py
runs them, storage/jobs.py keeps them), so any process sharing the jobs directory
can wait on, fetch or cancel them by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent_dispatch import offload
from agent_dispatch.errors import ConfigError
from agent_dispatch.models import (
    Config,
    DispatchRequest,
    DispatchResult,
    JobStatus,
    NonNegFloat,
    Settings,
    TaskReply,
    WaitMode,
    convert,
)
from agent_dispatch.service.async_jobs import AsyncJobs, CancelOutcome, Waited
from agent_dispatch.service.policy import Policy
from agent_dispatch.storage.jobs import Job, Listing

__all__ = ["JobMethods"]


class JobMethods:
    """Jobs on the Dispatcher; it provides `_jobs`, `policy`, `validate` and `config`."""

    _jobs: AsyncJobs
    policy: Policy

    def validate(self, req: DispatchRequest, cfg: Config | None = None, field: str = "") -> None:
        raise NotImplementedError  # pragma: no cover - Dispatcher.validate

    def config(self) -> Config:
        raise NotImplementedError  # pragma: no cover - Dispatcher.config

    def store_ref(self, req: DispatchRequest, result: DispatchResult) -> Job:
        """Keep a finished result as a job record so it can be fetched by reference."""
        return self._jobs.record_finished(req, result)

    def _start_recovery(self) -> None:
        """Settle the records a dead process left (JobStore.recover_stale) and apply
        job_retention_days, in a worker thread beside the body: `open` never waits for
        it; job reads (and waits on other processes' jobs) do."""
        try:
            settings = self.config().settings
        except ConfigError:
            settings = Settings(job_retention_days=0)  # keep every record; calls say why
        self._jobs.start_recovery(settings.job_retention_days, settings.kill_grace_seconds)

    async def submit(self, req: DispatchRequest) -> Job:
        """Run `req` as a job in the Dispatcher's nursery; return its pending record at once.

        The job is recorded on disk (its progress, its result) so it can be waited on,
        fetched or cancelled by id, here or from another process sharing the jobs
        directory. Leaving `Dispatcher.open` cancels the jobs still running.

        Raises:
          InvalidArgument, UnknownAgent, UnknownGroup, ConfigError: as `dispatch`.
          StorageError: the jobs directory cannot be written.
        """
        self.validate(req)
        return await self._jobs.submit(req)

    dispatch_async = submit  # the MCP tool's name

    async def submit_task(self, req: DispatchRequest, reply: TaskReply) -> Job:
        """`submit`, for a job that answers as the tool `reply.tool` would (an MCP task):
        a `dispatch` job consults and fills the cache as that tool's run does.

        Raises as `submit`.
        """
        self.validate(req)
        return await self._jobs.submit(req, reply)

    def cancel_soon(self, job_id: str, *, reason: str) -> None:
        """Start cancelling a job and return at once (see `cancel`); a failure is logged."""
        self._jobs.cancel_soon(job_id, reason)

    async def job(self, job_id: str) -> Job:
        """A job as it is now (this process's running jobs live, others from their record).

        Raises:
          JobNotFound: no job has this id. InvalidArgument: it is not a job id.
        """
        return await self._jobs.get(job_id)

    async def wait(
        self, job_ids: str | Sequence[str], *, mode: WaitMode | str = WaitMode.ALL
    ) -> list[Job]:
        """Wait until all (or, with `WaitMode.ANY`, any) of the jobs have finished; the jobs
        as they are then, in the order asked. Bound it the trio way, with a cancel scope
        (`with trio.move_on_after(0.2):`); the jobs keep running when it ends.

        Raises:
          JobNotFound: an id is unknown (before any waiting). InvalidArgument: bad arguments.
        """
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
        return (await self._jobs.wait(ids, mode=mode, seconds=None)).jobs

    async def wait_up_to(
        self, job_ids: str | Sequence[str], seconds: float, *, mode: WaitMode | str = WaitMode.ALL
    ) -> Waited:
        """`wait`, but at most `seconds`, then answer anyway: the jobs as they are and
        whether the deadline came first (`timed_out`). The tools' form of a wait: their
        policy keeps `seconds` within 1..3600."""
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
        rails = self.policy
        seconds = convert(seconds, NonNegFloat, field="timeout_seconds")
        seconds = max(seconds, rails.min_wait)
        if rails.max_wait is not None:
            seconds = min(seconds, rails.max_wait)
        return await self._jobs.wait(ids, mode=mode, seconds=seconds)

    async def cancel(
        self, job_id: str, *, reason: str = "cancelled by Dispatcher.cancel()"
    ) -> CancelOutcome:
        """Cancel a job: a pending one never starts; a running one has its process group
        stopped. Returns once the job is recorded as cancelled (its slot free), with
        `reason` as the record's `error`.

        Raises:
          InvalidArgument: it is not a job id. StorageError: an unreadable record.
        """
        return await self._jobs.cancel(job_id, reason)

    async def list_jobs(
        self, *, status: JobStatus | None = None, agent: str | None = None, limit: int = 50
    ) -> Listing:
        """Jobs newest first, this process's running ones as they are now; files in the
        jobs directory that are not records are named in `unreadable`, not fatal."""
        return await self._jobs.listing(status=status, agent=agent, limit=limit)

    async def purge_jobs(self, *, max_age_days: float, dry_run: bool = False) -> list[str]:
        """Delete finished job records older than `max_age_days`; the ids (dry_run: only list)."""
        await self._jobs.recovered()
        return await offload.run_sync(
            lambda: self._jobs.store.gc(max_age_days=max_age_days, dry_run=dry_run)
        )

    def running_jobs(self) -> int:
        """How many jobs this Dispatcher runs now."""
        return self._jobs.running_count()

    def queued_jobs(self) -> int:
        """How many of them still wait for a slot of the limiter (not spawned yet)."""
        return self._jobs.queued_count()

    def jobs_directory(self) -> Path:
        """Where this Dispatcher keeps its job records."""
        return self._jobs.store.directory

    def live_job_ids(self) -> list[str]:
        """The ids of the jobs this Dispatcher runs now (queued ones too)."""
        return self._jobs.live_ids()

    async def wait_jobs_changed(self) -> None:
        """Return once one of this Dispatcher's jobs has started or ended."""
        await self._jobs.wait_changed()

    async def wait_no_jobs(self) -> None:
        """Return once this Dispatcher runs no jobs (new ones may start after)."""
        await self._jobs.wait_none_live()
