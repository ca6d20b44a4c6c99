"""The usage journal (storage/usage.py) and the figures made from it (service/usage.py)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.service import usage as figures
from agent_dispatch.storage import usage
from agent_dispatch.storage.usage import UsageRecord


def record(
    agent: str = "alpha",
    *,
    duration: float = 1.0,
    success: bool = True,
    cost: float | None = 0.01,
    cached: bool = False,
    outcome: str | None = None,
    ended: str = "2026-12-05T10:00:00.000+00:00",
    error_type: str | None = None,
) -> UsageRecord:
    return UsageRecord(
        agent=agent,
        tool="dispatch",
        success=success,
        started_at="2026-12-05T09:59:59.000+00:00",
        ended_at=ended,
        duration_s=duration,
        cost_usd=cost,
        cached=cached,
        outcome=outcome,
        error_type=error_type,
    )


# -- the file -----------------------------------------------------------------------


def test_records_append_as_one_private_line_each_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    first, second = record("alpha"), record("beta", success=False, error_type="timeout")
    usage.append(path, first)
    usage.append(path, second)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().count(b"\n") == 2
    assert usage.read_records(path) == usage.Scan([first, second], skipped=0)


def test_a_missing_journal_reads_as_empty(tmp_path: Path) -> None:
    assert usage.read_records(tmp_path / "none.jsonl") == usage.Scan([], 0)
    scan, seen = usage.tail_records(tmp_path / "none.jsonl")
    assert (scan.records, seen) == ([], None)


def test_lines_that_are_not_records_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    usage.append(path, record("alpha"))
    with open(path, "ab") as f:
        f.write(b'garbage\n{"agent": "x"}\n\xff\xfe\n{"agent":"a","tool":"t","success":true,')
        f.write(b'"started_at":"s","ended_at":"not a time","duration_s":1}\n')
        f.write(b'{"agent":"a","tool":"t","success":true,"started_at":"s",')
        f.write(b'"ended_at":"2026-12-05T10:00:00+00:00","duration_s":-1}\n')
    usage.append(path, record("beta"))
    scan = usage.read_records(path)
    assert [r.agent for r in scan.records] == ["alpha", "beta"]
    assert scan.skipped == 5


def test_the_journal_rotates_past_its_size_and_keeps_a_bounded_number_of_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.jsonl"
    line = len(usage.encode(record()))
    for _ in range(41):  # a file goes over at its 4th line: ten rotations, one line left
        usage.append(path, record(), max_bytes=3 * line, keep=2)
    assert path.stat().st_size == line
    assert usage.generation(path, 1).stat().st_size == 4 * line
    assert usage.generation(path, 2).stat().st_size == 4 * line
    assert not usage.generation(path, 3).exists()
    scan = usage.read_records(path, keep=2)
    assert (len(scan.records), scan.skipped) == (9, 0)  # the newest runs, whole


def test_writers_in_parallel_never_tear_a_line_or_rotate_twice(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    line = len(usage.encode(record()))

    def write(agent: str) -> None:
        for _ in range(150):
            usage.append(path, record(agent), max_bytes=100 * line, keep=50)

    threads = [threading.Thread(target=write, args=(f"a{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scan = usage.read_records(path, keep=50)
    assert scan.skipped == 0
    assert len(scan.records) == 600  # nothing lost: every generation kept


def test_a_tail_drops_the_partial_first_line(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    for n in range(10):
        usage.append(path, record(f"a{n}"))
    line = len(usage.encode(record("a0")))
    scan, seen = usage.tail_records(path, limit=3 * line + 5)
    assert [r.agent for r in scan.records] == ["a7", "a8", "a9"]
    assert scan.skipped == 0 and seen is not None


def test_a_follower_reads_only_what_was_appended_and_waits_for_a_whole_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.jsonl"
    follower = usage.Follower(path)
    assert follower.poll() == (usage.Scan([]), False)
    usage.append(path, record("a"))
    assert [r.agent for r in follower.poll()[0].records] == ["a"]
    whole = usage.encode(record("b"))
    with open(path, "ab") as f:
        f.write(whole[:10])
    assert follower.poll() == (usage.Scan([]), False)  # half a line: not yet
    with open(path, "ab") as f:
        f.write(whole[10:])
    assert [r.agent for r in follower.poll()[0].records] == ["b"]
    assert follower.poll() == (usage.Scan([]), False)


def test_a_follower_starts_over_from_the_tail_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    follower = usage.Follower(path)
    usage.append(path, record("old"))
    follower.poll()
    usage.rotate(path, max_bytes=0)
    usage.append(path, record("new"))
    scan, restart = follower.poll()
    assert restart and [r.agent for r in scan.records] == ["new"]


# -- parsing hostile lines ------------------------------------------------------------


@given(st.binary(max_size=400))
def test_any_bytes_decode_to_a_record_or_none(line: bytes) -> None:
    decoded = usage.decode(line)
    assert decoded is None or isinstance(decoded, UsageRecord)


_text = st.text(max_size=30)


@settings(max_examples=150)
@given(
    agent=_text,
    success=st.booleans(),
    duration=st.floats(min_value=0, max_value=1e9),
    cost=st.none() | st.floats(min_value=0, max_value=1e6),
    turns=st.none() | st.integers(min_value=0, max_value=10**6),
    caller=st.none() | _text,
    cached=st.booleans(),
)
def test_any_record_round_trips_through_its_line(
    agent: str,
    success: bool,
    duration: float,
    cost: float | None,
    turns: int | None,
    caller: str | None,
    cached: bool,
) -> None:
    original = UsageRecord(
        agent=agent,
        tool="dispatch",
        success=success,
        started_at="2026-12-05T09:00:00+00:00",
        ended_at="2026-12-05T09:00:01+00:00",
        duration_s=duration,
        cost_usd=cost,
        turns=turns,
        caller=caller,
        cached=cached,
    )
    line = usage.encode(original)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert usage.decode(line.rstrip(b"\n")) == original


# -- figures --------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 11)]
    assert figures.percentile(values, 50) == 5.0
    assert figures.percentile(values, 90) == 9.0
    assert figures.percentile([3.0], 90) == 3.0
    assert figures.percentile([], 50) is None


def test_figures_leave_cache_hits_and_failures_out_of_the_typical_duration() -> None:
    records = [record(duration=d, cost=c) for d, c in ((10.0, 0.10), (20.0, 0.20), (30.0, 0.30))]
    records += [
        record(duration=600.0, success=False, error_type="timeout", cost=None),
        record(duration=0.0, cached=True, cost=None),
        record(duration=5.0, outcome="partial", cost=0.05),
    ]
    alpha = figures.figures(records)["alpha"]
    assert (alpha.runs, alpha.successes, alpha.cache_hits) == (6, 5, 1)
    assert alpha.success_rate == round(5 / 6, 4)
    assert (alpha.p50_duration_s, alpha.p90_duration_s) == (10.0, 30.0)
    assert (alpha.p50_cost_usd, alpha.p90_cost_usd) == (0.1, 0.3)
    assert alpha.total_cost_usd == 0.65
    assert alpha.errors == {"timeout": 1} and alpha.outcomes == {"partial": 1}


def test_a_book_follows_the_journal_and_keeps_a_window_per_agent(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    book = figures.UsageBook(path, window=3)
    assert book.usage("alpha") is None and book.typical_seconds("alpha") is None
    for d in (100.0, 1.0, 2.0, 3.0):
        book.record(record(duration=d))
    usage.append(path, record("beta", duration=7.0))  # another process's run
    book.refresh()
    alpha = book.usage("alpha")
    assert alpha is not None and alpha.runs == 3  # the 100 s run left the window
    assert book.typical_seconds("alpha") == 3.0
    assert book.typical_seconds("beta") == 7.0


def test_a_journal_that_cannot_be_written_never_fails_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.jsonl"
    path.mkdir()  # a directory where the file should be
    book = figures.UsageBook(path)
    book.record(record())
    assert "could not append" in caplog.text


def test_a_book_counts_each_run_once_when_dispatches_end_in_many_threads(
    tmp_path: Path,
) -> None:
    book = figures.UsageBook(tmp_path / "usage.jsonl", window=1000)
    failures: list[BaseException] = []
    done = threading.Event()

    def dispatches() -> None:
        for _ in range(100):
            book.record(record(duration=1.0))

    def reader() -> None:  # the event loop reading figures meanwhile
        try:
            while not done.is_set():
                book.typical_seconds("alpha")
                book.usage("alpha")
        except BaseException as exc:
            failures.append(exc)

    watcher = threading.Thread(target=reader)
    watcher.start()
    writers = [threading.Thread(target=dispatches) for _ in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    watcher.join()
    assert failures == []
    alpha = book.usage("alpha")
    assert alpha is not None and alpha.runs == 400
