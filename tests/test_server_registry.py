"""The registry of running servers (runtime/servers.py), kept by each server, read by doctor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from agent_dispatch import __version__, offload
from agent_dispatch.models import DispatchRequest
from agent_dispatch.runtime import servers
from agent_dispatch.runtime.orphans import process_start
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.server.registered import registered
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config
from tests.server_support import dead_pid
from tests.test_cli import Cli


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A short private XDG_RUNTIME_DIR (a long one would fall back to /tmp/agent-dispatch-UID)."""
    run = Path(tempfile.mkdtemp(prefix="adrt-", dir="/tmp"))
    try:
        yield run
    finally:
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def env(tmp_path: Path, runtime: Path) -> dict[str, str]:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    assert servers.registry_dir(env).is_relative_to(runtime)
    return env


def entry(pid: int, version: str = "0.1.0", **fields: object) -> servers.ServerEntry:
    defaults: dict[str, object] = {
        "pid": pid,
        "kind": "standalone",
        "version": version,
        "started_at": "2026-12-05T10:00:00+00:00",
        "config": "/c/agents.yaml",
        "jobs_dir": "/c/jobs",
        "process_started": process_start(pid),
    }
    return servers.ServerEntry(**{**defaults, **fields})  # type: ignore[arg-type]


async def test_readers_see_live_servers_and_remove_the_entries_of_dead_ones(
    env: dict[str, str],
) -> None:
    directory = servers.registry_dir(env)
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    gone = await dead_pid()
    servers.write(directory, entry(os.getpid(), jobs=["a" * 32]))
    servers.write(directory, entry(gone))
    reused = entry(os.getppid(), process_started=1)  # a live pid, another process's start
    servers.write(directory, reused)
    (directory / "notes.txt").write_text("not an entry")
    [live] = servers.live_entries(directory)
    assert (live.pid, live.jobs) == (os.getpid(), ["a" * 32])
    assert sorted(p.name for p in directory.iterdir()) == [f"{os.getpid()}.json", "notes.txt"]


async def test_an_entry_this_version_cannot_read_stays_while_its_pid_lives(
    env: dict[str, str],
) -> None:
    directory = servers.registry_dir(env)
    (directory / f"{os.getpid()}.json").write_bytes(b'{"pid": "from the future"}')
    gone = await dead_pid()
    (directory / f"{gone}.json").write_bytes(b"\x00garbage")
    assert servers.live_entries(directory) == []
    assert [p.name for p in directory.iterdir()] == [f"{os.getpid()}.json"]


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_an_entry_or_none(data: bytes) -> None:
    decoded = servers.decode(data)
    assert decoded is None or decoded.pid > 0


async def test_a_server_publishes_its_jobs_as_they_come_and_go_and_leaves_no_entry(
    tmp_path: Path, env: dict[str, str]
) -> None:
    release = trio.Event()
    runner = ScriptedRunner(default=Script(release=release))
    directory = servers.registry_dir(env)
    mine = directory / f"{os.getpid()}.json"

    def published() -> dict[str, object]:
        value: dict[str, object] = json.loads(mine.read_bytes())
        return value

    with offload.inline():  # the writes happen in the tasks: wait_all_tasks_blocked sees them
        async with Dispatcher.open(
            make_config(tmp_path), runner=runner, jobs=JobStore(tmp_path / "jobs")
        ) as d:
            async with registered(d, "service", tmp_path / "agents.yaml", env, version="9.9"):
                await trio.testing.wait_all_tasks_blocked()
                first = published()
                assert (first["kind"], first["version"], first["jobs"]) == ("service", "9.9", [])
                assert first["jobs_dir"] == str(tmp_path / "jobs")
                job = await d.submit(DispatchRequest(agent="backend", task="slow"))
                await trio.testing.wait_all_tasks_blocked()
                assert published()["jobs"] == [job.id]
                release.set()
                with trio.fail_after(10):
                    await d.wait([job.id])
                await trio.testing.wait_all_tasks_blocked()
                assert published()["jobs"] == []
            assert not mine.exists()


@pytest.mark.parametrize(
    ("argv", "serves"),
    [
        (["/home/me/.venv/bin/agent-dispatch", "serve"], True),
        (["/usr/bin/python3", "/usr/local/bin/agent-dispatch", "serve", "--standalone"], True),
        (["python", "-m", "agent_dispatch", "serve"], True),
        (["agent-dispatch", "service", "run"], False),
        (["python", "-m", "agent_dispatch", "service", "run"], False),
        (["agent-dispatch", "stats"], False),
        (["vim", "serve"], False),
        (["python", "-m", "agent_dispatch"], False),
        ([], False),
    ],
)
def test_serve_commands_of_any_version_are_recognised(argv: list[str], serves: bool) -> None:
    assert servers.is_serve_command(argv) is serves


@given(st.lists(st.sampled_from(["agent-dispatch", "serve", "-m", "agent_dispatch", "x", ""])))
def test_any_argv_is_read_without_raising(argv: list[str]) -> None:
    assert isinstance(servers.is_serve_command(argv), bool)


def test_serve_processes_are_found_by_their_command_line_and_their_registry(
    tmp_path: Path, runtime: Path
) -> None:
    proc = tmp_path / "proc"
    processes = {
        10: (b"agent-dispatch\0serve\0", f"HOME=/h\0XDG_RUNTIME_DIR={runtime}\0".encode()),
        11: (b"sleep\x0030\0", b""),
        12: (b"", b""),
        13: (b"python\0-m\0agent_dispatch\0serve\0", b"XDG_RUNTIME_DIR=/nowhere\0"),
    }
    for pid, (argv, environ) in processes.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(argv)
        (proc / str(pid) / "environ").write_bytes(environ)
    (proc / "self").mkdir()
    mine = str(runtime / "agent-dispatch")
    found = servers.serve_processes(proc)
    assert [(pid, where) for pid, _, where in found] == [
        (10, mine),
        (13, "/tmp/agent-dispatch-" + str(os.getuid())),
    ]
    # another sandbox's `serve` (its own runtime dir) is not a stray of this registry
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    assert servers.unregistered([], env, proc) == [(10, "agent-dispatch serve")]
    assert servers.unregistered([entry(10)], env, proc) == []


# -- doctor ----------------------------------------------------------------------------


@pytest.fixture
def cli(
    tmp_path: Path,
    runtime: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    cli = Cli(tmp_path, monkeypatch, capsys)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert servers.registry_dir().is_relative_to(runtime)
    return cli


def servers_check(cli: Cli) -> dict[str, str]:
    checks = json.loads(cli("doctor", "--json").out)["checks"]
    [check] = [c for c in checks if c["name"] == "servers"]
    return dict(check)


def test_doctor_names_servers_of_an_older_version_and_how_to_stop_them(cli: Cli) -> None:
    assert servers_check(cli)["message"] == "none running"
    directory = servers.registry_dir()
    servers.write(directory, entry(os.getpid(), version="0.0.1", jobs=["b" * 32]))
    check = servers_check(cli)
    assert check["status"] == "warn"
    assert f"pid {os.getpid()} (standalone 0.0.1" in check["message"]
    assert "cancels the 1 job they run" in check["message"]
    assert check["fix"] == f"kill {os.getpid()}"


def test_doctor_names_serve_processes_missing_from_the_registry(cli: Cli) -> None:
    # an older version's `serve` (from before the registry): only its command line tells
    code = "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"
    old = subprocess.Popen(
        [sys.executable, "-c", code, "agent-dispatch", "serve"], stdout=subprocess.PIPE
    )
    try:
        assert old.stdout is not None and old.stdout.readline() == b"up\n"
        check = servers_check(cli)
    finally:
        old.kill()
        old.wait()
        if old.stdout is not None:
            old.stdout.close()
    assert check["status"] == "warn"
    assert f"pid {old.pid} (" in check["message"] and "without the registry" in check["message"]
    assert check["fix"] == f"kill {old.pid}"


def test_doctor_lists_current_servers_as_ok(cli: Cli) -> None:
    servers.write(servers.registry_dir(), entry(os.getpid(), version=__version__))
    check = servers_check(cli)
    assert check["status"] == "ok" and f"pid {os.getpid()} (standalone" in check["message"]
