"""Hostile files in the jobs directory: FIFOs, symlinks, huge files, random bytes.

Each one is "unreadable": named with its reason, never followed, never read
whole, never fatal. Store calls run in a thread under `trio.fail_after`, so a
read that blocks (the old `open()` on a FIFO) fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.errors import JobNotFound
from agent_dispatch.runtime.orphans import stop_groups
from agent_dispatch.storage.files import FileTooLarge, NotRegularFile, read_regular
from agent_dispatch.storage.jobs import (
    MAX_RECORD_BYTES,
    Job,
    JobStore,
    Unreadable,
    decode_record,
    new_job_id,
    now_iso,
)

T = TypeVar("T")
PROMPT = 5.0  # seconds: a non-blocking read takes microseconds; a blocked one never ends


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    directory = tmp_path / "jobs"
    directory.mkdir(mode=0o700)
    return JobStore(directory)


def good_job(store: JobStore) -> Job:
    job = Job(id=new_job_id(), agent="alpha", task="t", status="done", created_at=now_iso(),
              owner_pid=os.getpid())  # fmt: skip
    store.save(job)
    return job


@contextlib.contextmanager
def fifo_record(store: JobStore) -> Iterator[tuple[str, Path]]:
    """A FIFO named like a record. On the way out a writer opens and closes it, which
    frees a reader the code under test may have left blocked in open()."""
    job_id = new_job_id()
    path = store.directory / f"{job_id}.json"
    os.mkfifo(path, 0o600)
    try:
        yield job_id, path
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


async def promptly(fn: Callable[[], T]) -> T:
    """fn() in a thread; fails the test (instead of hanging it) when it blocks."""
    with trio.fail_after(PROMPT):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def require_error(store: JobStore, job_id: str) -> str:
    with pytest.raises(JobNotFound) as info:
        store.require(job_id)
    assert info.value.hint.startswith("Nothing can be recovered from it; remove it with: rm ")
    return info.value.message


async def test_a_fifo_record_is_unreadable_and_nothing_waits_for_a_writer(
    store: JobStore,
) -> None:
    good = good_job(store)
    with fifo_record(store) as (job_id, path):
        found = await promptly(lambda: store.read(job_id))
        assert found == Unreadable(str(path), "a FIFO, not a regular file")
        assert await promptly(lambda: store.load(job_id)) is None
        message = await promptly(lambda: require_error(store, job_id))
        assert (
            message == f"job {job_id}: its record {path} is unreadable (a FIFO, not a regular file)"
        )
        listing = await promptly(store.listing)
        assert [j.id for j in listing.jobs] == [good.id]
        assert listing.unreadable == [found]
        assert await promptly(lambda: store.gc(max_age_days=None)) == [good.id]
        assert (
            await promptly(
                lambda: store.recover_stale(pid_alive=lambda pid: False, stop_groups=stop_groups)
            )
            == []
        )
        assert path.exists()  # reported, never deleted


async def test_a_symlink_to_dev_zero_is_unreadable_not_read(store: JobStore) -> None:
    job_id = new_job_id()
    path = store.directory / f"{job_id}.json"
    path.symlink_to("/dev/zero")
    bad = Unreadable(str(path), "a symbolic link, not a regular file")
    assert await promptly(lambda: store.read(job_id)) == bad
    assert "(a symbolic link, not a regular file)" in require_error(store, job_id)
    assert (await promptly(store.listing)).unreadable == [bad]


async def test_a_symlink_to_a_good_record_is_not_followed_either(store: JobStore) -> None:
    good = good_job(store)
    link = store.directory / f"{new_job_id()}.json"
    link.symlink_to(store.directory / f"{good.id}.json")
    listing = await promptly(store.listing)
    assert [j.id for j in listing.jobs] == [good.id]
    assert [u.path for u in listing.unreadable] == [str(link)]


async def test_an_oversized_record_is_unreadable_without_being_read(store: JobStore) -> None:
    job_id = new_job_id()
    path = store.directory / f"{job_id}.json"
    with path.open("wb") as f:
        f.truncate(MAX_RECORD_BYTES + 1)  # sparse: costs no disk
    reason = f"larger than {MAX_RECORD_BYTES} bytes"
    assert await promptly(lambda: store.read(job_id)) == Unreadable(str(path), reason)
    assert f"({reason})" in require_error(store, job_id)
    assert (await promptly(store.listing)).unreadable == [Unreadable(str(path), reason)]


def test_a_directory_named_like_a_record_is_unreadable(store: JobStore) -> None:
    job_id = new_job_id()
    (store.directory / f"{job_id}.json").mkdir()
    found = store.read(job_id)
    assert isinstance(found, Unreadable) and found.reason == "a directory, not a regular file"


def test_the_guarded_read_never_follows_blocks_or_overreads(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    assert read_regular(big, 100)[0] == b"x" * 100
    with pytest.raises(FileTooLarge):
        read_regular(big, 99)
    assert read_regular(big, 10, head=True)[0] == b"x" * 10
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match="a FIFO"):
        read_regular(fifo, 10)
    link = tmp_path / "link"
    link.symlink_to(big)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        read_regular(link, 100)
    assert read_regular(link, 100, follow_symlinks=True)[0] == b"x" * 100


# -- the decoder on hostile bytes ----------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_ID = "0" * 32


def _nearly_a_record(doc: object) -> bytes:
    record = {"id": _ID, "agent": "a", "task": "t", "status": "done", "created_at": "x",
              "owner_pid": 1}  # fmt: skip
    if isinstance(doc, dict):
        record.update(doc)
    return msgspec.json.encode(record)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=512)
    | _JSON.map(msgspec.json.encode)
    | _JSON.map(_nearly_a_record)
    | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)
    | st.integers(1, 5000).map(lambda n: b'{"id":' * n)
)
def test_the_record_decoder_never_raises(data: bytes) -> None:
    found = decode_record(data, _ID)
    assert isinstance(found, Job | str)
    if isinstance(found, Job):
        assert found.id == _ID
    else:
        assert found.startswith("not a valid job record")
