"""JobStore and job payloads: real files in tmp_path, no sleeps, explicit clocks."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent_dispatch.errors import InvalidArgument, JobNotFound, StorageError
from agent_dispatch.models import DispatchRequest, DispatchResult
from agent_dispatch.runtime.orphans import process_start, stop_groups
from agent_dispatch.service.views import fetch_payload, job_summary, job_view, ref_payload
from agent_dispatch.storage.jobs import (
    Job,
    JobStore,
    add_progress,
    jobs_dir,
    new_job_id,
    now_iso,
    parse_iso,
    pid_alive,
    validate_job_id,
)
from tests.process_groups import stubborn_groups

NOW = 1_900_000_000.0  # a fixed "now" for age computations
DAY = 86400.0

BAD_IDS: list[object] = [
    "../x",
    "../" + "a" * 29,
    "a" * 31,
    "a" * 33,
    "A" * 32,
    "0123456789ABCDEF0123456789abcdef",
    "a" * 32 + "\n",
    "\n" + "a" * 32,
    "g" * 32,
    "",
    "/" + "a" * 31,
    "a" * 16 + "/" + "a" * 15,
    None,
    123,
    b"a" * 32,
    ["a" * 32],
]


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def make_job(**overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "id": new_job_id(),
        "agent": "alpha",
        "task": "do the thing",
        "status": "pending",
        "created_at": iso(NOW),
        "owner_pid": os.getpid(),
    }
    fields.update(overrides)
    return Job(**fields)


def done_job(text: str = "the answer", **overrides: Any) -> Job:
    result = DispatchResult(agent="alpha", success=True, result=text, session_id="s-1")
    fields: dict[str, Any] = {"status": "done", "result": result, "completed_at": iso(NOW)}
    fields.update(overrides)
    return make_job(**fields)


def write_raw(store: JobStore, name: str, data: bytes, mtime: float | None = None) -> Path:
    store.directory.mkdir(mode=0o700, exist_ok=True)
    path = store.directory / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs")


# -- ids, paths and time ------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_validate_rejects_malformed_ids(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="32 lowercase hex"):
        validate_job_id(bad)


def test_validate_names_the_field_and_accepts_new_ids() -> None:
    job_id = new_job_id()
    assert validate_job_id(job_id) == job_id
    assert len(job_id) == 32
    with pytest.raises(InvalidArgument, match=r"^ref: "):
        validate_job_id("nope", "ref")


def test_malformed_ids_are_rejected_before_touching_the_file_system(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    # A file a traversal would reach if a path were built from "../x".
    (tmp_path / "x.json").write_bytes(msgspec.json.encode(make_job()))
    before = sorted(tmp_path.iterdir())
    for bad in BAD_IDS:
        for call in (store.load, store.require, store.delete):
            with pytest.raises(InvalidArgument):
                call(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            store.save(make_job(id=bad))
        with pytest.raises(InvalidArgument):
            store.save_if_not_terminal(make_job(id=bad))
    assert sorted(tmp_path.iterdir()) == before
    assert (tmp_path / "x.json").exists()


def test_a_new_store_touches_nothing_until_saved(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "a" / "jobs")
    assert store.list() == []
    assert store.load(new_job_id()) is None
    assert store.gc(max_age_days=None) == []
    assert store.recover_stale(pid_alive=lambda pid: False, stop_groups=stop_groups) == []
    assert list(tmp_path.iterdir()) == []


def test_jobs_dir_honours_the_override_and_home(tmp_path: Path) -> None:
    assert jobs_dir({"AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "j")}) == tmp_path / "j"
    assert jobs_dir({"HOME": str(tmp_path)}) == tmp_path / ".config" / "agent-dispatch" / "jobs"
    assert jobs_dir({"HOME": str(tmp_path), "AGENT_DISPATCH_JOBS_DIR": ""}).name == "jobs"


def test_now_iso_is_utc_seconds_and_parses_back() -> None:
    stamp = now_iso()
    assert stamp.endswith("Z") and len(stamp) == 20
    parsed = parse_iso(stamp)
    assert parsed is not None and abs(parsed - time.time()) < 5
    assert parse_iso("2026-01-02T03:04:05+00:00") == parse_iso("2026-01-02T03:04:05Z")
    assert parse_iso("not a date") is None
    assert parse_iso(None) is None


# -- single records -------------------------------------------------------------------


def test_save_load_round_trip_keeps_result_and_request(store: JobStore) -> None:
    request = DispatchRequest(
        agent="alpha", task="t", context="ctx", response_format="json", timeout_seconds=30.0
    )
    result = DispatchResult(
        agent="alpha",
        success=True,
        result='{"a": 1}',
        session_id="sess",
        cost_usd=0.25,
        duration_ms=1200,
        parsed_result={"a": 1},
        denied_tools=["Bash"],
    )
    job = make_job(
        status="done",
        kind="ref",
        started_at=iso(NOW),
        completed_at=iso(NOW + 5),
        result=result,
        progress=["one", "two"],
        request=request,
    )
    store.save(job)
    assert store.load(job.id) == job
    assert store.require(job.id) == job


def test_require_raises_job_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.require(new_job_id())


def test_files_are_0600_in_a_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "deep" / "jobs")
    old = os.umask(0)
    try:
        job = make_job()
        store.save(job)
        store.save(job)  # the rewrite keeps the mode too
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.directory / f"{job.id}.json").stat().st_mode) == 0o600


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "jobs"
    directory.mkdir(mode=0o750)
    os.chmod(directory, 0o750)  # noqa: S103 - a mode the user chose must survive
    JobStore(directory).save(make_job())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_atomic_writes_leave_only_the_record(store: JobStore) -> None:
    job = make_job()
    for n in range(5):
        job.progress = add_progress(job.progress, f"step {n}")
        store.save(job)
    assert [p.name for p in store.directory.iterdir()] == [f"{job.id}.json"]
    loaded = store.load(job.id)
    assert loaded is not None and loaded.progress[-1] == "step 4"


def test_an_unusable_directory_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "jobs"
    blocker.write_text("not a directory")
    store = JobStore(blocker)
    with pytest.raises(StorageError, match="not a directory"):
        store.save(make_job())
    nested = JobStore(blocker / "below")
    with pytest.raises(StorageError, match="not usable"):
        nested.save(make_job())
    assert store.load(new_job_id()) is None


def test_listing_a_directory_that_is_a_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    blocker = tmp_path / "jobs"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="exists and is not a directory"):
        JobStore(blocker).list()
    with pytest.raises(StorageError, match="not usable"):
        JobStore(blocker / "below").list()
    assert JobStore(tmp_path / "missing").list() == []  # not created yet: nothing to list


def test_delete(store: JobStore) -> None:
    job = make_job()
    store.save(job)
    assert store.delete(job.id) is True
    assert store.delete(job.id) is False
    assert store.load(job.id) is None


def test_save_if_not_terminal_never_rewrites_a_terminal_record(store: JobStore) -> None:
    job = make_job(status="running")
    assert store.save_if_not_terminal(job) is True  # no record yet
    cancelled = msgspec.structs.replace(job, status="cancelled", completed_at=iso(NOW))
    assert store.save_if_not_terminal(cancelled) is True  # running -> cancelled
    late = msgspec.structs.replace(
        job, status="done", result=DispatchResult(agent="alpha", success=True, result="late")
    )
    assert store.save_if_not_terminal(late) is False
    progress = msgspec.structs.replace(job, progress=["late progress"])
    assert store.save_if_not_terminal(progress) is False
    stored = store.load(job.id)
    assert stored is not None and stored.status == "cancelled" and stored.result is None


# -- untrustworthy records ---------------------------------------------------------------


def test_mismatched_and_garbage_records_are_skipped_and_kept(store: JobStore) -> None:
    good = done_job(completed_at=iso(NOW - 30 * DAY))
    store.save(good)
    impostor_id = new_job_id()
    other = done_job(completed_at=iso(NOW - 30 * DAY))
    write_raw(store, f"{impostor_id}.json", msgspec.json.encode(other))
    garbage_id, truncated_id, wrong_shape_id = new_job_id(), new_job_id(), new_job_id()
    write_raw(store, f"{garbage_id}.json", b"\x00\xff not json")
    write_raw(store, f"{truncated_id}.json", msgspec.json.encode(good)[:40])
    write_raw(
        store,
        f"{wrong_shape_id}.json",
        b'{"id": "%s", "status": "exploded"}' % wrong_shape_id.encode(),
    )
    write_raw(store, ".stray.tmp", b"{}")
    write_raw(store, "README", b"hello")
    bad_ids = [impostor_id, garbage_id, truncated_id, wrong_shape_id]

    for job_id in bad_ids:
        assert store.load(job_id) is None
        with pytest.raises(JobNotFound):
            store.require(job_id)
    assert [j.id for j in store.list()] == [good.id]
    assert store.gc(max_age_days=None, now=NOW) == [good.id]
    assert store.recover_stale(pid_alive=lambda pid: False, stop_groups=stop_groups, now=NOW) == []
    for job_id in bad_ids:
        assert (store.directory / f"{job_id}.json").exists()
    assert (store.directory / ".stray.tmp").exists()


# -- listing -------------------------------------------------------------------------------


def test_list_is_newest_first_by_created_at_then_mtime(store: JobStore) -> None:
    old = make_job(created_at=iso(NOW - 100))
    tie_a = make_job(created_at=iso(NOW))
    tie_b = make_job(created_at=iso(NOW))
    for job, mtime in ((old, NOW + 500), (tie_a, NOW + 1), (tie_b, NOW + 2)):
        store.save(job)  # `old` was rewritten last: its mtime is newest
        path = store.directory / f"{job.id}.json"
        os.utime(path, (mtime, mtime))
    assert [j.id for j in store.list()] == [tie_b.id, tie_a.id, old.id]
    assert [j.id for j in store.list(limit=1)] == [tie_b.id]
    assert [j.id for j in store.list(limit=2)] == [tie_b.id, tie_a.id]


def test_list_filters_by_status_and_agent_with_a_limit(store: JobStore) -> None:
    jobs = []
    for n in range(12):
        status = "done" if n % 3 == 0 else "running"
        job = make_job(agent="alpha" if n % 2 else "beta", status=status, created_at=iso(NOW + n))
        store.save(job)
        os.utime(store.directory / f"{job.id}.json", (NOW + n, NOW + n))
        jobs.append(job)
    newest_first = list(reversed(jobs))

    def expect(pred: Any, limit: int = 50) -> list[str]:
        return [j.id for j in newest_first if pred(j)][:limit]

    assert [j.id for j in store.list(status="done")] == expect(lambda j: j.status == "done")
    assert [j.id for j in store.list(agent="beta", limit=3)] == expect(
        lambda j: j.agent == "beta", 3
    )
    assert [j.id for j in store.list(status="running", agent="alpha")] == expect(
        lambda j: j.status == "running" and j.agent == "alpha"
    )
    assert store.list(status="failed") == []
    assert store.list(agent="nobody") == []


def test_listing_takes_several_statuses_and_drops_the_rest_as_it_reads(store: JobStore) -> None:
    jobs = {}
    for n, status in enumerate(("pending", "running", "done", "failed", "running")):
        job = make_job(status=status, created_at=iso(NOW + n))
        store.save(job)
        jobs[job.id] = job
    unfinished = store.listing(status=("running", "pending"), limit=1000).jobs
    assert {j.id for j in unfinished} == {
        i for i, j in jobs.items() if j.status in ("running", "pending")
    }
    assert [j.created_at for j in unfinished] == sorted(
        (j.created_at for j in unfinished), reverse=True
    )
    assert store.listing(status=("running",)).jobs == store.listing(status="running").jobs
    assert store.listing(status=()).jobs == []


@pytest.mark.parametrize(
    "kwargs",
    [{"status": "finished"}, {"status": ("running", "finished")}, {"limit": 0}, {"limit": -1}],
)
def test_list_rejects_bad_arguments(store: JobStore, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        store.list(**kwargs)


def test_list_over_2000_records_is_quick(store: JobStore) -> None:
    count = 2000
    for n in range(count):
        status = "running" if n % 10 == 0 else "done"
        job = done_job(status=status, created_at=iso(NOW + n), agent="alpha" if n % 2 else "beta")
        write_raw(store, f"{job.id}.json", msgspec.json.encode(job), mtime=NOW + n)
    started = time.perf_counter()
    newest = store.list(limit=50)
    first = time.perf_counter() - started
    started = time.perf_counter()
    running = store.list(status="running", limit=1000)
    filtered = time.perf_counter() - started
    print(
        f"\nlist over {count} records: limit=50 {first * 1000:.1f} ms, "
        f"filtered full scan {filtered * 1000:.1f} ms"
    )
    assert len(newest) == 50
    assert newest[0].created_at == iso(NOW + count - 1)
    assert [j.created_at for j in newest] == sorted((j.created_at for j in newest), reverse=True)
    assert len(running) == count // 10


# -- gc and purge ----------------------------------------------------------------------------


def gc_fixture(store: JobStore) -> dict[str, Job]:
    jobs = {
        "old_done": done_job(completed_at=iso(NOW - 10 * DAY)),
        "old_failed": make_job(status="failed", error="boom", completed_at=iso(NOW - 9 * DAY)),
        "old_cancelled_no_completed": make_job(status="cancelled", created_at=iso(NOW - 8 * DAY)),
        "new_done": done_job(completed_at=iso(NOW - 1 * DAY)),
        "old_created_new_completed": done_job(
            created_at=iso(NOW - 30 * DAY), completed_at=iso(NOW - DAY)
        ),
        "old_running": make_job(status="running", created_at=iso(NOW - 30 * DAY)),
        "old_pending": make_job(status="pending", created_at=iso(NOW - 30 * DAY)),
    }
    for job in jobs.values():
        store.save(job)
    return jobs


def test_gc_dry_run_deletes_nothing(store: JobStore) -> None:
    jobs = gc_fixture(store)
    would = store.gc(max_age_days=7, dry_run=True, now=NOW)
    expected = sorted(jobs[k].id for k in ("old_done", "old_failed", "old_cancelled_no_completed"))
    assert would == expected
    assert len(list(store.directory.iterdir())) == len(jobs)


def test_gc_deletes_only_old_terminal_records(store: JobStore) -> None:
    jobs = gc_fixture(store)
    purged = store.gc(max_age_days=7, now=NOW)
    old = {"old_done", "old_failed", "old_cancelled_no_completed"}
    assert purged == sorted(jobs[k].id for k in old)
    for name, job in jobs.items():
        assert (store.load(job.id) is None) == (name in old), name


def test_gc_without_an_age_purges_every_terminal_record(store: JobStore) -> None:
    jobs = gc_fixture(store)
    purged = store.gc(max_age_days=None, now=NOW)
    assert set(purged) == {
        j.id for j in jobs.values() if j.status in {"done", "failed", "cancelled"}
    }
    assert {j.status for j in store.list()} == {"running", "pending"}


def test_purge_older_than_is_gc_by_age(store: JobStore) -> None:
    jobs = gc_fixture(store)
    assert store.purge_older_than(2, now=NOW) == sorted(
        jobs[k].id for k in ("old_done", "old_failed", "old_cancelled_no_completed")
    )


@pytest.mark.parametrize("age", [0, -1, -0.5, math.inf, -math.inf, math.nan, True])
def test_gc_rejects_non_positive_or_non_finite_ages(store: JobStore, age: float) -> None:
    gc_fixture(store)
    with pytest.raises(InvalidArgument, match="max_age_days"):
        store.gc(max_age_days=age, now=NOW)
    with pytest.raises(InvalidArgument):
        store.gc(max_age_days=age, dry_run=True, now=NOW)
    assert len(list(store.directory.iterdir())) == 7


# -- stale recovery ----------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pid_alive() -> None:
    assert pid_alive(os.getpid()) is True
    assert pid_alive(dead_pid()) is False
    for nonsense in (0, -1, -os.getpid(), 2**70):
        assert pid_alive(nonsense) is False


def test_pid_alive_treats_a_zombie_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Wait for the exit without reaping: the child stays a zombie.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert pid_alive(proc.pid) is False
    finally:
        proc.wait()


def test_recover_stale_fails_orphans_and_leaves_live_owners_alone(store: JobStore) -> None:
    gone = dead_pid()
    orphan = make_job(status="running", started_at=iso(NOW - 60), owner_pid=gone)
    owned = make_job(status="running", started_at=iso(NOW - 60), owner_pid=os.getpid())
    stale = make_job(status="pending", created_at=iso(NOW - 25 * 3600))
    fresh = make_job(status="pending", created_at=iso(NOW - 3600))
    finished = done_job(owner_pid=gone)
    for job in (orphan, owned, stale, fresh, finished):
        store.save(job)

    changed = store.recover_stale(pid_alive=pid_alive, stop_groups=stop_groups, now=NOW)

    assert changed == sorted([orphan.id, stale.id])
    recovered = store.require(orphan.id)
    assert recovered.status == "failed"
    assert recovered.error == f"server stopped (owner pid {gone} is gone)"
    assert recovered.completed_at == iso(NOW)
    never = store.require(stale.id)
    assert never.status == "failed"
    assert never.error == "never started: pending for more than 24 h"
    assert never.completed_at == iso(NOW)
    for untouched in (owned, fresh, finished):
        assert store.require(untouched.id) == untouched
    assert store.recover_stale(pid_alive=pid_alive, stop_groups=stop_groups, now=NOW) == []


def test_recovery_stops_the_claude_group_a_killed_server_left(store: JobStore) -> None:
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        job = make_job(
            status="running",
            owner_pid=dead_pid(),
            child_pgid=leftover.pid,
            child_started=process_start(leftover.pid),
        )
        store.save(job)
        assert store.recover_stale(pid_alive=pid_alive, stop_groups=stop_groups, now=NOW) == [
            job.id
        ]
        assert leftover.wait(timeout=5) == -15
    finally:
        leftover.kill()
        leftover.wait()
    error = store.require(job.id).error or ""
    assert error.endswith(f"; stopped the claude process group {leftover.pid} it left")


def test_recovery_stops_every_orphan_group_in_one_grace_period(store: JobStore) -> None:
    """Groups that ignore SIGTERM cost the whole grace period each: serially, N of them
    took N seconds before the server answered anything."""
    count = 6
    with stubborn_groups(count) as leftovers:
        owner = dead_pid()
        jobs = [
            make_job(
                status="running",
                owner_pid=owner,
                child_pgid=proc.pid,
                child_started=process_start(proc.pid),
            )
            for proc in leftovers
        ]
        for job in jobs:
            store.save(job)
        started = time.monotonic()
        assert store.recover_stale(pid_alive=pid_alive, stop_groups=stop_groups, now=NOW) == sorted(
            j.id for j in jobs
        )
        elapsed = time.monotonic() - started
        for proc in leftovers:
            assert proc.wait(timeout=5) == -9  # SIGTERM ignored, so SIGKILL after the grace
    assert elapsed < count / 2, elapsed  # one 1.5 s grace (generously), not one per group
    for job in jobs:
        assert (store.require(job.id).error or "").endswith(
            f"; stopped the claude process group {job.child_pgid} it left"
        )


def test_a_pending_job_of_a_dead_server_is_failed_not_run(store: JobStore) -> None:
    gone = dead_pid()
    orphan = make_job(status="pending", created_at=iso(NOW - 60), owner_pid=gone)
    queued_here = make_job(status="pending", created_at=iso(NOW - 60))  # a live owner
    for job in (orphan, queued_here):
        store.save(job)
    assert store.recover_stale(pid_alive=pid_alive, stop_groups=stop_groups, now=NOW) == [orphan.id]
    settled = store.require(orphan.id)
    assert settled.status == "failed" and settled.completed_at == iso(NOW)
    assert settled.started_at is None  # it never ran
    assert settled.error == (
        f"never started: the server that queued it (pid {gone}) stopped before it started; "
        "nothing ran"
    )
    assert settled.result is not None and settled.result.success is False
    assert settled.result.hint is not None and "dispatch_async" in settled.result.hint
    assert fetch_payload(settled, 0)["hint"] == settled.result.hint
    assert store.require(queued_here.id) == queued_here


# -- progress -----------------------------------------------------------------------------------


def test_progress_tail_is_bounded() -> None:
    progress: list[str] = []
    for n in range(50):
        progress = add_progress(progress, f"line {n} " + "x" * 1000)
    assert len(progress) == 20
    assert all(len(line) <= 300 for line in progress)
    assert progress[0].startswith("line 30 ") and progress[-1].startswith("line 49 ")


def test_progress_splits_lines_drops_blanks_and_does_not_mutate() -> None:
    before = ["a"]
    after = add_progress(before, "b\n\n   \nc\r\n")
    assert after == ["a", "b", "c"]
    assert before == ["a"]
    assert add_progress(after, "\n\n") == ["a", "b", "c"]
    assert add_progress([], "\n".join(str(n) for n in range(25))) == [str(n) for n in range(5, 25)]


# -- payloads -------------------------------------------------------------------------------------


def test_ref_payload_summarises_on_a_word_boundary() -> None:
    text = "alpha beta gamma delta " * 100
    job = done_job(text)
    payload = ref_payload(job, 30)
    assert payload["ref"] == job.id
    assert payload["size"] == len(text)
    assert payload["summary_chars"] == 30
    assert payload["summary"] == "alpha beta gamma delta alpha…"
    assert (payload["agent"], payload["success"], payload["session_id"]) == ("alpha", True, "s-1")
    assert "cost_usd" in payload and "duration_ms" in payload
    assert "parsed_result" not in payload and "error" not in payload


def test_ref_payload_whole_text_clamping_and_errors() -> None:
    short = done_job("short answer")
    assert ref_payload(short, 500)["summary"] == "short answer"
    assert ref_payload(short, -5)["summary"] == ""
    assert ref_payload(short, -5)["summary_chars"] == 0
    assert ref_payload(short, 10**9)["summary_chars"] == 100_000
    unbroken = done_job("x" * 50)
    assert ref_payload(unbroken, 10)["summary"] == "x" * 10 + "…"
    failed = make_job(
        status="failed",
        result=DispatchResult(
            agent="alpha",
            success=False,
            error="denied",
            error_type="permission",
            parsed_result=[1],
            hint="allow it",
        ),
    )
    payload = ref_payload(failed, 100)
    assert payload["success"] is False
    assert (payload["error"], payload["error_type"]) == ("denied", "permission")
    assert payload["parsed_result"] == [1]


def test_fetch_payload_returns_everything_or_a_truncated_text() -> None:
    job = done_job("0123456789" * 10)
    full = fetch_payload(job, 0)
    assert full["result"] == "0123456789" * 10
    assert (full["ref"], full["job_id"], full["status"]) == (job.id, job.id, "done")
    assert full["session_id"] == "s-1" and full["success"] is True
    assert "truncated" not in full
    cut = fetch_payload(job, 25)
    assert cut["result"] == "0123456789" * 2 + "01234"
    assert (cut["truncated"], cut["full_size"]) == (True, 100)
    assert "truncated" not in fetch_payload(job, 100)
    assert fetch_payload(job, 25.9)["result"] == cut["result"]


@pytest.mark.parametrize("bad", [-1, -0.5, math.inf, math.nan, True])
def test_fetch_payload_rejects_bad_max_chars(bad: float) -> None:
    with pytest.raises(InvalidArgument, match="max_chars"):
        fetch_payload(done_job(), bad)


def test_fetch_payload_of_an_unfinished_or_resultless_job() -> None:
    running = make_job(status="running", progress=["working"])
    payload = fetch_payload(running, 0)
    assert payload["status"] == "running" and payload["progress"] == ["working"]
    assert "result" not in payload and "dispatch_wait" in payload["hint"]
    cancelled = make_job(status="cancelled", error="cancelled before it started")
    payload = fetch_payload(cancelled, 0)
    assert payload["success"] is False and payload["result"] == ""
    assert payload["error"] == "cancelled before it started"
    assert payload["status"] == "cancelled"


def test_job_view_is_the_status_record() -> None:
    job = done_job(progress=["p"])
    view = job_view(job)
    assert set(view) == {
        "id",
        "agent",
        "task",
        "status",
        "kind",
        "created_at",
        "started_at",
        "completed_at",
        "result",
        "error",
        "progress",
    }
    assert view["result"]["result"] == "the answer"
    assert job_view(make_job())["result"] is None
    msgspec.json.encode(view)  # plain JSON data


def test_job_summary_cuts_the_task_and_shows_the_last_progress_line() -> None:
    running = make_job(status="running", task="word " * 100, progress=["first", "latest"])
    summary = job_summary(running)
    assert len(summary["task"]) <= 121 and summary["task"].endswith("…")
    assert summary["last_progress"] == "latest"
    assert "success" not in summary
    finished = job_summary(done_job(progress=["x"]))
    assert finished["success"] is True and "last_progress" not in finished
