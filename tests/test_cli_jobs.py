"""`jobs`, `job`, `cancel` and `gc` over the JobStore the server writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec
import pytest

from agent_dispatch.models import DispatchResult
from agent_dispatch.runtime.orphans import process_start
from agent_dispatch.storage.jobs import Job, JobStore, _iso, new_job_id
from tests.test_cli import Cli, assert_error

DAY = 86400.0


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


@pytest.fixture
def store(cli) -> JobStore:
    return JobStore(cli.jobs)


def make_job(store: JobStore, status: str = "done", *, age_days: float = 0, **fields) -> Job:
    stamp = _iso(time.time() - age_days * DAY)
    defaults: dict[str, Any] = {
        "id": new_job_id(),
        "agent": "backend",
        "task": "List the routes",
        "status": status,
        "created_at": stamp,
        "owner_pid": 0,  # no such process: the server that wrote it is gone
    }
    if status in ("done", "failed", "cancelled"):
        defaults["completed_at"] = stamp
    if status == "done":
        defaults["result"] = DispatchResult(
            agent="backend", success=True, result="GET /users\nPOST /users", cost_usd=0.01
        )
    defaults.update(fields)
    job = Job(**defaults)
    store.save(job)
    return job


# -- jobs ---------------------------------------------------------------------------------


def test_jobs_lists_newest_first_with_filters(cli, store):
    old = make_job(store, "done", age_days=2)
    new = make_job(store, "failed", error="timed out after 300s", agent="web")
    running = make_job(store, "running", progress=["reading files"])
    res = cli("jobs")
    assert res.rc == 0, res
    lines = res.out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "AGENT", "CREATED", "TASK", "/", "ERROR"]
    assert [line.split()[0] for line in lines[1:]][-1] == old.id
    assert {line.split()[0] for line in lines[1:]} == {old.id, new.id, running.id}
    assert "timed out after 300s" in res.out

    data = msgspec.json.decode(cli("jobs", "--status", "failed", "--json").out)
    assert [j["id"] for j in data["jobs"]] == [new.id] and data["count"] == 1
    data = msgspec.json.decode(cli("jobs", "--agent", "web", "--json").out)
    assert [j["id"] for j in data["jobs"]] == [new.id]
    data = msgspec.json.decode(cli("jobs", "--limit", "1", "--json").out)
    assert data["count"] == 1
    data = msgspec.json.decode(cli("jobs", "--limit", "0", "--json").out)
    assert data["count"] == 1  # clamped into 1..1000, like the dispatch_jobs tool


def test_jobs_and_job_show_when_the_agent_did_not_finish(cli, store):
    result = DispatchResult(
        agent="backend",
        success=True,
        result="Did two of three routes.",
        outcome="partial",
        outcome_reason="the third needs a schema",
    )
    partial = make_job(store, "done", result=result)
    finished = make_job(store, "done")  # an older record: no outcome at all
    listed = {line.split()[0]: line for line in cli("jobs").out.splitlines()[1:]}
    assert " done (partial) " in listed[partial.id]
    assert "(" not in listed[finished.id].split()[1]
    shown = cli("job", partial.id).out
    assert "  outcome    partial (the third needs a schema)" in shown
    data = msgspec.json.decode(cli("jobs", "--json").out)
    outcomes = {j["id"]: j.get("outcome") for j in data["jobs"]}
    assert outcomes == {partial.id: "partial", finished.id: None}


def test_jobs_when_there_are_none(cli):
    res = cli("jobs")
    assert res.rc == 0 and "no jobs yet" in res.out
    assert msgspec.json.decode(cli("jobs", "--json").out) == {"jobs": [], "count": 0}


def test_jobs_errors(cli):
    assert_error(cli("jobs", "--status", "finished"), "status")
    assert_error(cli("jobs", "--limit", "many"), "--limit")
    cli.jobs.write_text("not a directory")
    assert_error(cli("jobs"), "not usable")


# -- job -----------------------------------------------------------------------------------


def test_job_shows_the_record(cli, store):
    job = make_job(store, "running", progress=["step one", "step two"])
    res = cli("job", job.id)
    assert res.rc == 0, res
    assert f"job {job.id}" in res.out
    assert "step two" in res.out
    assert f"agent-dispatch cancel {job.id}" in res.out
    done = make_job(store, "done")
    res = cli("job", done.id)
    assert "GET /users" in res.out and "$0.01" in res.out
    data = msgspec.json.decode(cli("job", done.id, "--json").out)
    assert data["id"] == done.id and data["result"]["result"] == "GET /users\nPOST /users"


@pytest.mark.parametrize(
    ("job_id", "words"),
    [
        ("abc", ["expected 32 lowercase hex"]),
        ("../../etc/passwd", ["expected 32 lowercase hex"]),
        ("A" * 32, ["expected 32 lowercase hex"]),
        ("0" * 32, ["no job", "agent-dispatch jobs"]),
    ],
)
@pytest.mark.parametrize("command", ["job", "cancel"])
def test_bad_and_unknown_job_ids(cli, job_id, words, command):
    assert_error(cli(command, job_id), *words)


def test_a_corrupt_record_is_named_not_hidden(cli, store):
    job = make_job(store)
    path = cli.jobs / f"{job.id}.json"
    path.write_bytes(b"\xff{not json")
    for command in ("job", "cancel"):
        assert_error(cli(command, job.id), f"its record {path} is unreadable", f"rm {path}")
    assert_error(cli("job", "0" * 32), "no job")  # absent is still absent


def test_a_fifo_record_is_named_by_every_command_and_blocks_none(cli, store):
    good = make_job(store)
    job_id = new_job_id()
    fifo = cli.jobs / f"{job_id}.json"
    os.mkfifo(fifo, 0o600)

    def unblock() -> None:  # frees a reader a regression left blocked in open()
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Timer(10, unblock)  # a hang becomes a failure
    watchdog.start()
    try:
        for command in ("job", "cancel"):
            assert_error(cli(command, job_id), f"its record {fifo} is unreadable (a FIFO", "rm")
        res = cli("jobs")
        assert res.rc == 0 and good.id in res.out
        assert f"skipped {fifo}: unreadable (a FIFO, not a regular file)" in res.err
        listed = msgspec.json.decode(cli("jobs", "--json").out)
        assert listed["unreadable"] == [{"path": str(fifo), "reason": "a FIFO, not a regular file"}]
        assert cli("gc", "--all").rc == 0
    finally:
        watchdog.cancel()
        unblock()
    assert fifo.exists()


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_marks_a_job_whose_server_is_gone(cli, store):
    job = make_job(store, "running")
    res = cli("cancel", job.id)
    assert res.rc == 0, res
    assert "cancelled" in res.out
    record = store.require(job.id)
    assert record.status == "cancelled" and record.completed_at


def test_cancel_stops_the_claude_group_a_dead_server_left_running(cli, store):
    orphan = subprocess.Popen(  # this test's PATH has no sleep(1)
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        job = make_job(
            store, "running", child_pgid=orphan.pid, child_started=process_start(orphan.pid)
        )
        res = cli("cancel", job.id)
        assert res.rc == 0, res
        assert f"stopped the claude process group {orphan.pid} it left running" in res.out
        assert orphan.wait(timeout=5) == -15  # SIGTERM
    finally:
        orphan.kill()
        orphan.wait()
    assert store.require(job.id).status == "cancelled"
    again = make_job(store, "running", child_pgid=orphan.pid, child_started=1)
    assert "no claude process of it was still running" in cli("cancel", again.id).out


@pytest.mark.parametrize("config", ["settings: {kill_grace_seconds: 2}", "settings: [broken]"])
def test_cancel_gives_a_group_ignoring_sigterm_the_configured_grace(cli, store, config):
    grace = 2.0 if "kill_grace" in config else 1.5  # a broken config: the default, no error
    cli.write_config(config)
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    orphan = subprocess.Popen(
        [sys.executable, "-c", ignore_term + "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert orphan.stdout is not None and orphan.stdout.readline() == b"ready\n"
        job = make_job(
            store, "running", child_pgid=orphan.pid, child_started=process_start(orphan.pid)
        )
        started = time.monotonic()
        res = cli("cancel", job.id)
        elapsed = time.monotonic() - started
        assert res.rc == 0, res
        assert orphan.wait(timeout=5) == -9  # SIGTERM ignored: SIGKILL after the grace
    finally:
        orphan.kill()
        orphan.wait()
        assert orphan.stdout is not None
        orphan.stdout.close()
    assert grace <= elapsed < grace + 1


def test_cancel_refuses_a_job_a_live_server_runs(cli, store):
    job = make_job(store, "running", owner_pid=os.getppid())
    res = cli("cancel", job.id)
    assert_error(res, f"server with pid {os.getppid()}", "dispatch_cancel", job.id)
    assert store.require(job.id).status == "running"


def test_cancel_of_a_finished_job_changes_nothing(cli, store):
    job = make_job(store, "done")
    res = cli("cancel", job.id)
    assert res.rc == 0 and "already finished: done" in res.out
    assert store.require(job.id) == job


# -- gc -------------------------------------------------------------------------------------


def test_gc_deletes_finished_records_older_than_days(cli, store):
    old = make_job(store, "done", age_days=10)
    recent = make_job(store, "failed", age_days=1)
    stuck = make_job(store, "running", age_days=30)
    res = cli("gc", "--days", "5", "--dry-run")
    assert res.rc == 0, res
    assert "would delete 1 finished job record older than 5 days" in res.out
    assert old.id in res.out
    assert store.load(old.id) is not None

    assert cli("gc", "--days", "5").rc == 0
    assert store.load(old.id) is None
    assert store.load(recent.id) is not None and store.load(stuck.id) is not None
    assert "deleted 0" in cli("gc").out  # default: 7 days


def test_gc_all_deletes_every_finished_record(cli, store):
    finished = [make_job(store, s) for s in ("done", "failed", "cancelled")]
    pending = make_job(store, "pending")
    res = cli("gc", "--all")
    assert res.rc == 0 and "deleted 3 finished job records" in res.out
    assert all(store.load(j.id) is None for j in finished)
    assert store.load(pending.id) is not None


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["gc", "--days", "0"], ["--days", "> 0", "--all"]),
        (["gc", "--days", "-3"], ["--days"]),
        (["gc", "--days", "nan"], ["--days"]),
        (["gc", "--days", "inf"], ["--days"]),
        (["gc", "--days", "2", "--all"], ["not both"]),
        (["gc", "--days", "week"], ["--days"]),
    ],
)
def test_gc_rejects_bad_ages(cli, store, argv, words):
    job = make_job(store, "done", age_days=100)
    assert_error(cli(*argv), *words)
    assert store.load(job.id) is not None
