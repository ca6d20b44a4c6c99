"""Listing jobs sees this process's running jobs as they are, not as their records lag.

A job's records are written from worker threads, after the fact; the listing
must not leave a job that just started out of `status="running"`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import trio

from agent_dispatch.models import DispatchRequest
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import Job, JobStore
from tests.server_support import Workspace

pytest_plugins = ("tests.server_fixtures",)  # ws


class HeldRunningWrites(JobStore):
    """A store whose write of a `running` record waits until the test lets it land."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.held = threading.Event()
        self.land = threading.Event()

    def save_if_not_terminal(self, job: Job) -> bool:
        if job.status == "running":
            self.held.set()
            self.land.wait(20)
        return super().save_if_not_terminal(job)


async def test_a_running_job_whose_record_lags_is_listed_as_running(ws: Workspace) -> None:
    store = HeldRunningWrites(ws.jobs)
    runner = ScriptedRunner()
    runner.on(Script(release=trio.Event()), prompt="busy")
    with trio.fail_after(20):
        async with Dispatcher.open(
            ConfigStore(ws.config), env=ws.env(), jobs=store, runner=runner
        ) as d:
            job = await d.submit(DispatchRequest(agent="alpha", task="busy"))
            await trio.to_thread.run_sync(store.held.wait)  # started; its record says pending
            assert JobStore(ws.jobs).require(job.id).status == "pending"
            running = await d.list_jobs(status="running")
            pending = await d.list_jobs(status="pending")
            everything = await d.list_jobs()
            store.land.set()
            await d.cancel(job.id)
    assert [j.id for j in running.jobs] == [job.id]
    assert running.jobs[0].status == "running"
    assert pending.jobs == []
    assert [(j.id, j.status) for j in everything.jobs] == [(job.id, "running")]
