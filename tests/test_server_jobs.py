"""Async jobs, result refs and job control through the in-memory MCP tools.

Runs go to the ScriptedRunner (`runner`); a job's real child (its recorded process
group, killing it) and the job tools over stdio are in test_server_children.py.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from agent_dispatch.models import ProgressEvent
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import Job, JobStore, new_job_id
from tests.server_support import (
    Tools,
    Workspace,
    dead_pid,
    job_record,
    start_job,
    status,
)

pytest_plugins = ("tests.server_fixtures",)  # ws, runner, served, tools

BAD_IDS = [
    "../x",
    "../" + "a" * 29,
    "a" * 31,
    "a" * 33,
    "A" * 32,
    "a" * 32 + "\n",
    "g" * 32,
    "",
    "/etc/passwd",
    "a" * 15 + "/" + "a" * 16,
]


def gated(runner: ScriptedRunner, name: str, reply: str | None = None) -> trio.Event:
    """The scripted run of the task `job <name>` waits until the returned Event is set."""
    release = trio.Event()
    runner.on(Script(release=release, reply=reply), prompt=f"job {name}")
    return release


# -- ids ------------------------------------------------------------------------------


async def test_every_job_tool_rejects_malformed_ids_before_touching_disk(
    tools: Tools, ws: Workspace
) -> None:
    for bad in BAD_IDS:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("dispatch_status", {"job_id": bad}),
            ("dispatch_wait", {"job_id": bad or "x", "timeout_seconds": 1}),
            ("dispatch_wait", {"job_ids": ["0" * 32, bad], "timeout_seconds": 1}),
            ("dispatch_cancel", {"job_id": bad}),
            ("fetch_result", {"ref": bad}),
        ]
        for tool, args in calls:
            envelope = (await tools(tool, **args)).envelope
            assert "32 lowercase hex" in envelope["error"], (tool, bad, envelope)
            assert "dispatch_jobs" in envelope["hint"], (tool, bad, envelope)
    assert not ws.jobs.exists()  # no path was ever built from the id


async def test_well_formed_unknown_ids_are_not_found(tools: Tools) -> None:
    unknown = "0123456789abcdef" * 2
    assert "no job" in (await tools("dispatch_status", job_id=unknown)).envelope["error"]
    assert (await tools("fetch_result", ref=unknown)).envelope
    assert (await tools("dispatch_wait", job_id=unknown, timeout_seconds=1)).envelope
    out = (await tools("dispatch_cancel", job_id=unknown)).ok
    assert out == {"job_id": unknown, "outcome": "not_found", "status": None}


async def test_dispatch_async_rejects_bad_requests_without_a_record(
    tools: Tools, ws: Workspace, runner: ScriptedRunner
) -> None:
    for args in (
        {"agent": "nobody", "task": "x"},
        {"agent": "alpha", "task": ""},
        {"agent": "alpha", "task": "x", "timeout_seconds": -1},
        {"agent": "alpha", "task": "x", "response_format": "yaml"},
    ):
        assert (await tools("dispatch_async", **args)).envelope
    assert ws.job_files() == [] and runner.calls == []


# -- running, waiting, cancelling --------------------------------------------------------


async def test_wait_on_a_list_in_any_and_all_modes(tools: Tools, runner: ScriptedRunner) -> None:
    release_a, release_b = gated(runner, "A"), gated(runner, "B")
    a = await start_job(tools, "alpha", "job A")
    b = await start_job(tools, "beta", "job B")
    with trio.fail_after(15):
        await runner.wait_calls(2)
        async with trio.open_nursery() as nursery:
            got: dict[str, Any] = {}

            async def wait_any() -> None:
                got.update(
                    (
                        await tools("dispatch_wait", job_ids=[a, b], mode="any", timeout_seconds=30)
                    ).ok
                )

            nursery.start_soon(wait_any)
            release_a.set()
        assert got["mode"] == "any" and got["timed_out_waiting"] is False
        assert [j["id"] for j in got["jobs"]] == [a, b]
        assert [j["status"] for j in got["jobs"]] == ["done", "running"]

        async with trio.open_nursery() as nursery:
            got.clear()

            async def wait_all() -> None:
                got.update(
                    (
                        await tools("dispatch_wait", job_ids=[a, b], mode="all", timeout_seconds=30)
                    ).ok
                )

            nursery.start_soon(wait_all)
            release_b.set()
    assert got["timed_out_waiting"] is False
    assert [j["status"] for j in got["jobs"]] == ["done", "done"]


async def test_wait_gives_up_at_the_deadline_and_the_job_keeps_running(
    tools: Tools, runner: ScriptedRunner
) -> None:
    gated(runner, "A")
    job_id = await start_job(tools, "alpha", "job A")
    with trio.fail_after(10):
        await runner.wait_calls(1)
        started = trio.current_time()
        out = (await tools("dispatch_wait", job_id=job_id, timeout_seconds=0.01)).ok
        waited = trio.current_time() - started
        assert out["timed_out_waiting"] is True
        assert out["status"] == "running"
        assert 1 <= waited < 3  # clamped up to the 1 s minimum
        assert (await status(tools, job_id))["status"] == "running"
        cancelled = (await tools("dispatch_cancel", job_id=job_id)).ok
    assert cancelled["outcome"] == "cancelled_running"


async def test_wait_rejects_bad_arguments(tools: Tools, ws: Workspace) -> None:
    job_id = await start_job(tools, "alpha", "quick")
    for args, words in (
        ({"mode": "some"}, "mode"),
        ({"timeout_seconds": -1}, "timeout_seconds"),
        ({"timeout_seconds": float("nan")}, "timeout_seconds"),
        ({"job_id": "", "job_ids": []}, "job_id"),
    ):
        envelope = (await tools("dispatch_wait", **{"job_id": job_id, **args})).envelope
        assert words in envelope["error"], args


async def test_cancel_a_pending_job_and_it_never_runs(
    tools: Tools, ws: Workspace, runner: ScriptedRunner
) -> None:
    ws.write_config(max_concurrency=1)
    release = gated(runner, "first")
    first = await start_job(tools, "alpha", "job first")
    with trio.fail_after(10):
        await runner.wait_calls(1)
        second = await start_job(tools, "beta", "never run me")
        assert (await status(tools, second))["status"] == "pending"
        out = (await tools("dispatch_cancel", job_id=second)).ok
        assert out == {"job_id": second, "outcome": "cancelled", "status": "cancelled"}
        release.set()
        done = (await tools("dispatch_wait", job_id=first, timeout_seconds=10)).ok
    assert done["status"] == "done"
    record = await status(tools, second)
    assert record["status"] == "cancelled" and record["started_at"] is None
    assert [c.spec.directory for c in runner.calls] == [str(ws.alpha)]
    assert not any("never run me" in c.prompt for c in runner.calls)


async def test_job_records_are_private_files(tools: Tools, ws: Workspace) -> None:
    job_id = await start_job(tools, "alpha", "quick")
    await tools("dispatch_wait", job_id=job_id, timeout_seconds=10)
    ref = (await tools("dispatch", agent="beta", task="ref me", return_ref=True)).ok["ref"]
    assert stat.S_IMODE(ws.jobs.stat().st_mode) == 0o700
    files = ws.job_files()
    assert sorted(f.stem for f in files) == sorted([job_id, ref])
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert not [p for p in ws.jobs.iterdir() if p.name.startswith(".")]  # no temp files left


# -- refs --------------------------------------------------------------------------------


async def test_return_ref_gives_a_summary_and_fetch_result_the_whole(
    tools: Tools, runner: ScriptedRunner
) -> None:
    text = " ".join(f"word{i}" for i in range(200))
    task = "long answer"
    runner.on(Script(reply=text), prompt=task)
    payload = (
        await tools("dispatch", agent="alpha", task=task, return_ref=True, summary_chars=40)
    ).ok
    assert payload["success"] is True and payload["agent"] == "alpha"
    assert payload["size"] == len(text)
    assert payload["summary_chars"] == 40
    assert text.startswith(payload["summary"].rstrip("…"))
    assert len(payload["summary"]) <= 41
    assert {"session_id", "cost_usd", "duration_ms"} <= set(payload)
    ref = payload["ref"]

    full = (await tools("fetch_result", ref=ref)).ok
    assert full["result"] == text and "truncated" not in full
    cut = (await tools("fetch_result", ref=ref, max_chars=25)).ok
    assert cut["result"] == text[:25]
    assert cut["truncated"] is True and cut["full_size"] == len(text)
    assert (await tools("fetch_result", ref=ref, max_chars=-1)).envelope
    assert (await status(tools, ref))["status"] == "done"  # a ref is a job id

    hit = (await tools("dispatch", agent="alpha", task=task, return_ref=True)).ok
    assert hit["cached"] is True
    assert hit["ref"] != ref
    assert (await tools("fetch_result", ref=hit["ref"])).ok["result"] == text
    assert len(runner.calls) == 1


async def test_return_ref_without_usable_job_storage_still_returns_the_answer(
    tools: Tools, ws: Workspace
) -> None:
    ws.jobs.write_text("not a directory")
    out = (await tools("dispatch", agent="alpha", task="keep me", return_ref=True)).ok
    assert out["success"] is True
    assert out["result"] == "scripted reply to: keep me"
    assert "return_ref failed" in out["hint"] and str(ws.jobs) in out["hint"]


async def test_dispatch_jobs_on_a_jobs_path_that_is_a_file_says_so(
    tools: Tools, ws: Workspace
) -> None:
    ws.jobs.write_text("not a directory")
    envelope = (await tools("dispatch_jobs")).envelope
    assert f"job directory {ws.jobs} exists and is not a directory" in envelope["error"]
    assert "AGENT_DISPATCH_JOBS_DIR" in envelope["hint"]


async def test_a_failed_dispatch_can_be_a_ref_too(tools: Tools, runner: ScriptedRunner) -> None:
    overloaded = {"is_error": True, "api_error_status": 529, "terminal_reason": "api_error"}
    runner.on(Script(reply="API Error: 529 overloaded", fields=overloaded, returncode=1))
    payload = (await tools("dispatch", agent="alpha", task="no", return_ref=True)).ok
    assert payload["success"] is False and payload["error_type"]
    fetched = (await tools("fetch_result", ref=payload["ref"])).ok
    assert fetched["status"] == "failed" and "529" in fetched["error"]


# -- listing, progress, gc ------------------------------------------------------------------


async def test_dispatch_jobs_lists_newest_first_with_the_last_progress_line(
    tools: Tools, ws: Workspace, runner: ScriptedRunner
) -> None:
    done_id = await start_job(tools, "beta", "first and quick")
    await tools("dispatch_wait", job_id=done_id, timeout_seconds=10)
    events = [ProgressEvent("tool_use", "Using tool: Bash"), ProgressEvent("text", "last words")]
    runner.on(Script(events=events, release=trio.Event()), prompt="busy")
    busy = await start_job(tools, "alpha", "busy")
    with trio.fail_after(10):
        await runner.wait_calls(2)
        # The progress is relayed by another task, and the "running" record (which the
        # status filter of dispatch_jobs reads) is written in a worker thread: nothing to
        # wait on but the job and its file.
        while (
            "last words" not in (await status(tools, busy))["progress"]
            or JobStore(ws.jobs).require(busy).status != "running"
        ):
            await trio.sleep(0.01)
        listing = (await tools("dispatch_jobs")).ok
        assert listing["count"] == 2
        newest, oldest = listing["jobs"]
        assert (newest["id"], oldest["id"]) == (busy, done_id)
        assert newest["status"] == "running"
        assert newest["last_progress"] == "last words"
        assert oldest["status"] == "done" and oldest["success"] is True
        assert "last_progress" not in oldest
        only_beta = (await tools("dispatch_jobs", agent="beta")).ok["jobs"]
        assert [j["id"] for j in only_beta] == [done_id]
        running = (await tools("dispatch_jobs", status="running", limit=0)).ok["jobs"]
        assert [j["id"] for j in running] == [busy]  # limit clamps up to 1
        assert (await tools("dispatch_jobs", status="stuck")).envelope
        await tools("dispatch_cancel", job_id=busy)


async def test_the_progress_tail_is_bounded(tools: Tools, runner: ScriptedRunner) -> None:
    events = [ProgressEvent("text", f"Using Tool{i}.") for i in range(15)]
    events += [ProgressEvent("tool_use", f"Using tool: Tool{i}") for i in range(15)]
    events.append(ProgressEvent("text", "x" * 1000))
    runner.on(Script(events=events), prompt="chatty")
    job_id = await start_job(tools, "alpha", "chatty")
    with trio.fail_after(10):
        record = (await tools("dispatch_wait", job_id=job_id, timeout_seconds=10)).ok
    assert record["status"] == "done"
    progress = record["progress"]
    assert len(progress) == 20
    assert progress[-1] == "x" * 300
    assert progress[-2] == "Using tool: Tool14"


async def test_gc_dry_run_deletes_nothing_and_gc_purges_old_finished_jobs(
    tools: Tools, ws: Workspace
) -> None:
    store = JobStore(ws.jobs)
    old = job_record("alpha", days_ago=10)
    old_failed = job_record("beta", days_ago=30, status="failed")
    recent = job_record("alpha", days_ago=1)
    old_running = job_record("alpha", days_ago=10, status="running")
    for job in (old, old_failed, recent, old_running):
        store.save(job)
    files = ws.job_files()

    dry = (await tools("dispatch_gc", max_age_days=7, dry_run=True)).ok
    assert dry == {"would_purge": 2, "job_ids": sorted([old.id, old_failed.id])}
    assert ws.job_files() == files

    real = (await tools("dispatch_gc", max_age_days=7)).ok
    assert real == {"purged": 2, "job_ids": sorted([old.id, old_failed.id])}
    assert sorted(f.stem for f in ws.job_files()) == sorted([recent.id, old_running.id])
    for bad in (0, -1, float("nan"), float("inf")):
        assert "max_age_days" in (await tools("dispatch_gc", max_age_days=bad)).envelope["error"]
    assert len(ws.job_files()) == 2


# -- hostile records, store IO off the loop, recovery in the background ---------------------


async def test_a_fifo_record_through_the_tools_is_unreadable_and_answers_promptly(
    tools: Tools, ws: Workspace
) -> None:
    ws.jobs.mkdir(mode=0o700)
    job_id = new_job_id()
    fifo = ws.jobs / f"{job_id}.json"
    os.mkfifo(fifo, 0o600)

    def unblock() -> None:  # frees a reader a regression left blocked in open()
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    # A read blocked on the event loop would stop trio.fail_after too: this thread
    # frees it after a while, so a regression fails the test instead of hanging it.
    watchdog = threading.Timer(10, unblock)
    watchdog.start()
    try:
        with trio.fail_after(10):
            for tool, args in (
                ("dispatch_status", {"job_id": job_id}),
                ("fetch_result", {"ref": job_id}),
                ("dispatch_wait", {"job_id": job_id, "timeout_seconds": 1}),
                ("dispatch_cancel", {"job_id": job_id}),
            ):
                envelope = (await tools(tool, **args)).envelope
                assert f"its record {fifo} is unreadable (a FIFO" in envelope["error"], tool
                assert f"rm {fifo}" in envelope["hint"], tool
            listed = (await tools("dispatch_jobs")).ok
            assert listed["jobs"] == [] and listed["count"] == 0
            assert listed["unreadable"] == [
                {"path": str(fifo), "reason": "a FIFO, not a regular file"}
            ]
            assert "rm" in listed["hint"]
    finally:
        watchdog.cancel()
        unblock()


class GatedStore(JobStore):
    """A JobStore whose reads (and recovery) wait until the test, on the event loop, opens
    the gate: a read made on the loop itself would wait out GATE_SECONDS and fail."""

    GATE_SECONDS = 10.0

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def _wait_at_gate(self) -> None:
        self.entered.set()
        if not self.gate.wait(self.GATE_SECONDS):
            raise AssertionError("store IO ran on the event loop: nothing could open the gate")

    def require(self, job_id: str) -> Job:
        self._wait_at_gate()
        return super().require(job_id)

    def recover_stale(self, **kwargs: Any) -> list[str]:
        self._wait_at_gate()
        return super().recover_stale(**kwargs)


async def test_a_job_read_runs_off_the_event_loop(ws: Workspace) -> None:
    store = GatedStore(ws.jobs)
    job = job_record("alpha", days_ago=0)
    JobStore(ws.jobs).save(job)
    got: list[Job] = []
    with trio.fail_after(20):
        async with Dispatcher.open(ConfigStore(ws.config), env=ws.env(), jobs=store) as d:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: _append(got, d.job(job.id)))
                await trio.to_thread.run_sync(store.entered.wait)  # the read is under way...
                store.gate.set()  # ...and the loop is free to run this
            assert got == [job]


async def _append(into: list[Job], job: Awaitable[Job]) -> None:
    into.append(await job)


async def test_recovery_runs_beside_the_server_and_job_reads_wait_for_it(ws: Workspace) -> None:
    store = GatedStore(ws.jobs)
    orphan = job_record("alpha", days_ago=0, status="pending")
    orphan.owner_pid = await dead_pid()
    JobStore(ws.jobs).save(orphan)
    with trio.fail_after(20):
        async with Dispatcher.open(ConfigStore(ws.config), env=ws.env(), jobs=store) as d:
            # open started the recovery in the background and returned: serve goes on
            await trio.to_thread.run_sync(store.entered.wait)  # recovery is under way
            assert "alpha" in d.config().agents  # the server works meanwhile
            got: list[Job] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: _append(got, d.job(orphan.id)))
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # the read waits for recovery, not a stale "pending"
                store.gate.set()
            assert got[0].status == "failed"


async def test_wait_on_a_pending_job_of_a_dead_server_returns_once_recovered(
    ws: Workspace,
) -> None:
    orphan = job_record("alpha", days_ago=0, status="pending")
    orphan.owner_pid = await dead_pid()
    JobStore(ws.jobs).save(orphan)
    with trio.fail_after(10):  # the wait's own timeout is an hour: it must not be sat out
        async with Dispatcher.open(ConfigStore(ws.config), env=ws.env()) as d:
            [job] = await d.wait([orphan.id])
    assert job.status == "failed"
    assert job.error == (
        f"never started: the server that queued it (pid {orphan.owner_pid}) stopped "
        "before it started; nothing ran"
    )
    assert job.result is not None and "dispatch_async" in (job.result.hint or "")
