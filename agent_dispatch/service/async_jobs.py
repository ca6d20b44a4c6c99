"""Async jobs: dispatches that run in the Dispatcher's nursery and persist as records.

Each job runs under its own CancelScope (kept by id, which is how a cancel
stops it) and sets a trio.Event when it reaches a terminal state (which is how
a wait wakes up, without polling). Status transitions are monotonic: the store
never lets a late writer overwrite a terminal record.

Store IO runs in worker threads (offload.run_sync), never on the event loop. A
job's writes hold its own trio.Lock and each writes the job's state as it is
when the write starts, so writes of one job never overlap and the last one
always carries the latest state; the terminal write is the last, and the
job's Event is set only once it is on disk.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import trio

from agent_dispatch import exception_groups, offload
from agent_dispatch.errors import DispatchError, InvalidArgument, StorageError
from agent_dispatch.models import (
    TERMINAL_STATUSES,
    DispatchRequest,
    DispatchResult,
    JobStatus,
    NonNegFloat,
    ProgressEvent,
    TaskReply,
    WaitMode,
    convert,
)
from agent_dispatch.runtime.orphans import process_start, stop_groups
from agent_dispatch.storage.jobs import (
    Job,
    JobStore,
    Listing,
    Unreadable,
    add_progress,
    new_job_id,
    now_iso,
    pid_alive,
    unreadable_error,
    validate_job_id,
)

log = logging.getLogger("agent_dispatch.storage.jobs")

RunFn = Callable[..., Awaitable[DispatchResult]]

PROGRESS_WRITE_INTERVAL = 1.0
FOREIGN_POLL_SECONDS = 0.5  # only for jobs owned by another server process


class CancelResult(enum.StrEnum):
    """What a cancel did."""

    CANCELLED = "cancelled"  # it had not started; it never will
    CANCELLED_RUNNING = "cancelled_running"  # its process group is gone, its slot free
    NOT_FOUND = "not_found"  # no job has this id
    ALREADY_TERMINAL = "already_terminal"  # it had finished (done, failed or cancelled)
    RUNNING = "running"  # another live process runs it; that process can cancel it


class CancelOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a cancel: the job, what the cancel did, and the job's status now."""

    job_id: str
    outcome: CancelResult
    status: JobStatus | None  # None: no such job


class Waited(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a wait: each job as it is now (in the order asked), and whether the
    wait ended at its deadline (the jobs keep running) rather than by the jobs finishing."""

    jobs: list[Job]
    timed_out: bool


class _Live:
    """What this process knows about a job it runs."""

    __slots__ = ("cancel_reason", "done", "job", "last_write", "scope", "spawned", "writing")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.writing = trio.Lock()
        self.spawned = False
        self.cancel_reason: str | None = None  # set by cancel: what the record will say
        self.last_write = -math.inf


class AsyncJobs:
    """The job side of the Dispatcher; `run` is the Dispatcher's single run path."""

    def __init__(self, store: JobStore, nursery: trio.Nursery, run: RunFn) -> None:
        self.store = store
        self._nursery = nursery
        self._run = run
        self._live: dict[str, _Live] = {}
        self._live_changed = trio.Event()  # replaced whenever a job comes or goes
        self._recovered: trio.Event | None = None  # set: no recovery runs or it is done

    # -- recovery ----------------------------------------------------------------

    def start_recovery(self, retention_days: float, grace: float) -> None:
        """Run the start-up recovery in a worker thread beside the server (see
        JobStore.recover_stale; a group left behind gets `grace` s between SIGTERM and
        SIGKILL); until it is done, reads of other processes' jobs wait."""
        self._recovered = trio.Event()
        self._nursery.start_soon(self._recover, retention_days, grace, self._recovered)

    async def _recover(self, retention_days: float, grace: float, done: trio.Event) -> None:
        def recover() -> list[str]:
            stop = functools.partial(stop_groups, grace=grace)
            changed = self.store.recover_stale(pid_alive=pid_alive, stop_groups=stop)
            if retention_days > 0:
                self.store.purge_older_than(retention_days)
            return changed

        try:
            changed = await offload.run_sync(recover)
        except DispatchError as exc:  # a broken job dir: serve, and say so per call
            log.warning("job recovery skipped: %s", exc.message)
        else:
            if changed:
                log.info("settled %d job(s) left by a stopped server", len(changed))
        finally:
            done.set()

    async def recovered(self) -> None:
        """Return once the start-up recovery (if any) is done."""
        if self._recovered is not None:
            await self._recovered.wait()

    # -- records -----------------------------------------------------------------

    def record_finished(self, req: DispatchRequest, result: DispatchResult) -> Job:
        """Store a finished dispatch as a `ref` job: any job id is a ref and vice versa.

        Synchronous for its synchronous caller: it only writes a new file (a unique
        O_EXCL temp file renamed into place), which nothing in the directory can block."""
        stamp = now_iso()
        job = Job(
            id=new_job_id(),
            agent=req.agent,
            task=req.task,
            status="done" if result.success else "failed",
            kind="ref",
            created_at=stamp,
            started_at=stamp,
            completed_at=stamp,
            result=result,
            error=result.error,
            owner_pid=os.getpid(),
            request=req,
        )
        self.store.save(job)
        return job

    async def get(self, job_id: str) -> Job:
        """The job as this process knows it, else its record; JobNotFound when neither."""
        job_id = validate_job_id(job_id)
        live = self._live.get(job_id)
        if live is not None:
            return live.job
        await self.recovered()
        return await offload.run_sync(self.store.require, job_id)

    async def listing(
        self, *, status: str | None = None, agent: str | None = None, limit: int = 50
    ) -> Listing:
        """Newest first, as the store lists them, but with this process's running jobs
        as they are now: their records lag (they are written from worker threads), so a
        job that just started is listed as running, not left out of `status="running"`."""
        await self.recovered()
        found = await offload.run_sync(
            lambda: self.store.listing(status=status, agent=agent, limit=limit)
        )
        listed = [self.freshest(job) for job in found.jobs]  # the store's order
        seen = {job.id for job in listed}
        listed += [
            live.job
            for live in self._live.values()
            if live.job.id not in seen and (agent is None or live.job.agent == agent)
        ]
        matching = [job for job in listed if status is None or job.status == status]
        matching.sort(key=lambda job: job.created_at, reverse=True)  # stable: ties keep order
        return Listing(jobs=matching[:limit], unreadable=found.unreadable)

    def freshest(self, job: Job) -> Job:
        """`job` as this process knows it now: the file lags a running job's progress."""
        live = self._live.get(job.id)
        return job if live is None else live.job

    # -- running -----------------------------------------------------------------

    async def submit(self, req: DispatchRequest, reply: TaskReply | None = None) -> Job:
        job = Job(
            id=new_job_id(),
            agent=req.agent,
            task=req.task,
            status="pending",
            created_at=now_iso(),
            owner_pid=os.getpid(),
            request=req,
            reply=reply,
        )
        # No race: nothing else knows this id until submit returns it.
        await offload.run_sync(self.store.save, job)
        live = _Live(job)
        self._live[job.id] = live
        self._touch()
        live.scope = await self._nursery.start(self._job_task, live)
        return job

    async def _job_task(self, live: _Live, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        req = live.job.request
        assert req is not None  # noqa: S101 - submit always sets it
        result: DispatchResult | None = None
        try:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                result = await self._run(
                    req,
                    tool="dispatch_async" if live.job.reply is None else "task",
                    job_id=live.job.id,
                    cached=live.job.reply is not None and live.job.reply.cached,
                    on_spawn=lambda pgid: self._mark_running(live, pgid),
                    on_progress=lambda event: self._progress(live, event),
                )
        except Exception as exc:
            # One job's failure (a config broken mid-run, a storage error) must not take
            # the Dispatcher's nursery, and every other job, down with it.
            log.exception("job %s failed", live.job.id)
            message = exc.message if isinstance(exc, DispatchError) else repr(exc)
            result = DispatchResult(
                agent=req.agent, success=False, error=message, error_type="cli_error"
            )
        finally:
            # Shielded: a cancelled job (cancel, shutdown) is still recorded as such.
            with trio.CancelScope(shield=True):
                await self._finish(live, result)

    async def _write(self, live: _Live) -> None:
        """Persist the job's current state; a storage problem must not kill the run itself."""
        async with live.writing:
            job = live.job  # taken under the lock: no older state is written after it
            try:
                await offload.run_sync(self.store.save_if_not_terminal, job)
            except StorageError as exc:
                log.warning("could not write job %s: %s", job.id, exc)

    def _mark_running(self, live: _Live, pgid: int | None) -> None:
        live.spawned = True
        live.job = msgspec.structs.replace(
            live.job,
            status="running",
            started_at=now_iso(),
            child_pgid=pgid,  # the local child's process group; None: nothing local runs
            child_started=None if pgid is None else process_start(pgid),
        )
        # A synchronous callback (the runner's task_status): the write runs beside the job.
        self._nursery.start_soon(self._write, live)
        live.last_write = trio.current_time()

    async def _progress(self, live: _Live, event: ProgressEvent) -> None:
        # A new Job, never a mutation: a thread may be encoding the previous one.
        live.job = msgspec.structs.replace(
            live.job, progress=add_progress(live.job.progress, event.message)
        )
        now = trio.current_time()
        if now - live.last_write >= PROGRESS_WRITE_INTERVAL:
            live.last_write = now
            await self._write(live)

    async def _finish(self, live: _Live, result: DispatchResult | None) -> None:
        if result is not None:
            status = "done" if result.success else "failed"
            error = result.error
        elif live.cancel_reason is not None:
            status, error = "cancelled", live.cancel_reason
        else:
            status, error = "cancelled", "cancelled: the server shut down"
        live.job = msgspec.structs.replace(
            live.job, status=status, result=result, error=error, completed_at=now_iso()
        )
        try:
            await self._write(live)
        finally:
            live.done.set()
            self._live.pop(live.job.id, None)
            self._touch()

    # -- control -----------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> CancelOutcome:
        job_id = validate_job_id(job_id)
        live = self._live.get(job_id)
        if live is not None:
            outcome = CancelResult.CANCELLED_RUNNING if live.spawned else CancelResult.CANCELLED
            live.cancel_reason = reason
            if live.scope is not None:
                live.scope.cancel()
            await live.done.wait()  # the group is dead and the slot free once this returns
            return CancelOutcome(job_id=job_id, outcome=outcome, status=live.job.status)
        await self.recovered()
        found = await offload.run_sync(self.store.read, job_id)
        if found is None:
            return CancelOutcome(job_id=job_id, outcome=CancelResult.NOT_FOUND, status=None)
        if isinstance(found, Unreadable):
            raise unreadable_error(job_id, found)
        job = found
        if job.status in TERMINAL_STATUSES:
            return CancelOutcome(
                job_id=job_id, outcome=CancelResult.ALREADY_TERMINAL, status=job.status
            )
        if job.owner_pid != os.getpid() and pid_alive(job.owner_pid):
            return CancelOutcome(job_id=job_id, outcome=CancelResult.RUNNING, status=job.status)
        job = msgspec.structs.replace(
            job, status="cancelled", error="cancelled (its server is gone)", completed_at=now_iso()
        )
        await offload.run_sync(self.store.save_if_not_terminal, job)
        return CancelOutcome(job_id=job_id, outcome=CancelResult.CANCELLED, status=job.status)

    def cancel_soon(self, job_id: str, reason: str) -> None:
        """Start `cancel` beside the caller, which does not wait for the group to die."""
        self._nursery.start_soon(self._cancel_quietly, job_id, reason)

    async def _cancel_quietly(self, job_id: str, reason: str) -> None:
        try:
            await self.cancel(job_id, reason)
        except DispatchError as exc:  # nobody waits for this answer: log it
            log.warning("could not cancel job %s: %s", job_id, exc.message)

    async def wait(
        self, job_ids: Sequence[str], *, mode: WaitMode | str, seconds: float | None
    ) -> Waited:
        """Wait for all (or any) of `job_ids` to be terminal, at most `seconds` (None: as
        long as it takes)."""
        mode = convert(mode, WaitMode, field="mode")
        if seconds is not None:
            seconds = convert(seconds, NonNegFloat, field="timeout_seconds")
        ids = [validate_job_id(j) for j in job_ids]
        if not ids:
            raise InvalidArgument("job_ids: give at least one job id")
        for job_id in ids:
            await self.get(job_id)  # unknown ids fail before any waiting
        with trio.move_on_after(math.inf if seconds is None else seconds) as scope:
            if mode is WaitMode.ALL:
                for job_id in ids:
                    await self._wait_one(job_id)
            else:
                with exception_groups.collapsed():
                    async with trio.open_nursery() as nursery:
                        for job_id in ids:
                            nursery.start_soon(self._wait_then_cancel, job_id, nursery.cancel_scope)
        jobs = [await self.get(j) for j in ids]
        return Waited(jobs=jobs, timed_out=scope.cancelled_caught)

    async def _wait_then_cancel(self, job_id: str, scope: trio.CancelScope) -> None:
        await self._wait_one(job_id)
        scope.cancel()

    async def _wait_one(self, job_id: str) -> None:
        live = self._live.get(job_id)
        if live is not None:
            await live.done.wait()
            return
        # Another server process owns it: there is no Event to wait on across processes.
        while (await self.get(job_id)).status not in TERMINAL_STATUSES:  # noqa: ASYNC110
            await trio.sleep(FOREIGN_POLL_SECONDS)

    def running_count(self) -> int:
        return len(self._live)

    def live_ids(self) -> list[str]:
        """The ids of the jobs running (or waiting for a slot) here, oldest first."""
        return list(self._live)

    def _touch(self) -> None:
        self._live_changed.set()
        self._live_changed = trio.Event()

    async def wait_changed(self) -> None:
        """Return once a job has started or ended here."""
        await self._live_changed.wait()

    def queued_count(self) -> int:
        return sum(1 for live in self._live.values() if live.job.status == "pending")

    async def wait_none_live(self) -> None:
        while self._live:
            await next(iter(self._live.values())).done.wait()
