"""The front and the real service, in the test's own sandbox (tests/server_fixtures.py `ws`:
XDG_RUNTIME_DIR, XDG_CACHE_HOME, the config and the jobs dir under tmp; the services are
killed at teardown). The OS is the subject: real fronts, a real service, fake claudes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from agent_dispatch import rendezvous
from tests.fake_claude import pid_alive, read_runs, wait_started
from tests.relay_support import services_of
from tests.server_support import StdioServer, Workspace, blocked, stdio_server

pytest_plugins = ("tests.server_fixtures",)  # ws


def structured(result: dict[str, Any]) -> Any:
    assert not result.get("isError"), result
    return result["structuredContent"]


def the_service(ws: Workspace) -> int:
    (pid,) = services_of(ws.runtime)
    return pid


async def test_ten_fronts_started_at_once_make_one_service(ws: Workspace) -> None:
    arrived = 0
    all_in = trio.Event()
    services: list[list[int]] = []

    async def one_front() -> None:
        nonlocal arrived
        async with stdio_server(ws, "relay") as server:
            out = structured(await server.call("list_agents"))
            assert [a["name"] for a in out["agents"]] == ["alpha", "beta"]
            arrived += 1
            if arrived == 10:
                services.append(services_of(ws.runtime))  # while all ten are connected
                all_in.set()
            await all_in.wait()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one_front)
    assert len(services) == 1 and len(services[0]) == 1, services


async def test_a_stale_socket_file_is_replaced_by_a_new_service(ws: Workspace) -> None:
    path = rendezvous.socket_path(ws.env())
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))  # bound, never listening, closed: a service that died
    dead.close()
    with trio.fail_after(20):
        async with stdio_server(ws, "relay") as server:
            out = structured(await server.call("list_agents"))
    assert [a["name"] for a in out["agents"]] == ["alpha", "beta"]
    assert server.stderr() == ""


async def test_a_front_killed_mid_job_leaves_the_job_running_for_another_front(
    ws: Workspace,
) -> None:
    task, release = blocked(ws, "A", "@fake reply=outlived its session")
    with trio.fail_after(30):
        async with stdio_server(ws, "relay") as first:
            job = structured(await first.call("dispatch_async", agent="alpha", task=task))
            run = (await wait_started(ws.log))[0]
            first.proc.kill()  # the Claude Code session died
            assert await first.wait() == -signal.SIGKILL
        async with stdio_server(ws, "relay") as second:
            status = structured(await second.call("dispatch_status", job_id=job["job_id"]))
            assert status["status"] == "running" and pid_alive(run["pid"])
            release.touch()
            done = structured(
                await second.call("dispatch_wait", job_id=job["job_id"], timeout_seconds=20)
            )
    assert done["status"] == "done"
    assert done["result"]["result"] == "outlived its session"


async def test_a_service_killed_with_sigkill_is_replaced_and_its_jobs_settled(
    ws: Workspace,
) -> None:
    task, _ = blocked(ws, "K")
    with trio.fail_after(30):
        async with stdio_server(ws, "relay") as first:
            job = structured(await first.call("dispatch_async", agent="alpha", task=task))
            (run,) = await wait_started(ws.log)
            old = the_service(ws)
            os.kill(old, signal.SIGKILL)
            assert await first.wait() == 0  # its session ended: the front leaves quietly
            assert first.stderr() == ""
        async with stdio_server(ws, "relay") as second:
            status = structured(await second.call("dispatch_status", job_id=job["job_id"]))
            new = the_service(ws)
            assert pid_alive(run["pid"]) is False  # the orphan's group: stopped at start
    assert new != old
    assert status["status"] == "failed"  # the owner-pid recovery of the next service
    assert status["completed_at"]


async def list_runs_of(server: StdioServer, agent: str, task: str) -> Any:
    return structured(await server.call("dispatch", agent=agent, task=task))


async def test_each_fronts_environment_and_depth_reach_its_own_children(ws: Workspace) -> None:
    log_a, log_b = ws.root / "log-a", ws.root / "log-b"
    log_a.mkdir()
    log_b.mkdir()
    with trio.fail_after(30):
        async with (
            stdio_server(ws, "relay", FAKE_CLAUDE_LOG=str(log_a)) as top,
            stdio_server(
                ws, "relay", FAKE_CLAUDE_LOG=str(log_b), AGENT_DISPATCH_DEPTH="1"
            ) as nested,
        ):
            assert (await list_runs_of(top, "alpha", "from the top"))["success"] is True
            assert (await list_runs_of(nested, "beta", "from a child"))["success"] is True
    (a,) = read_runs(log_a)
    (b,) = read_runs(log_b)
    assert "from the top" in a["prompt"] and "from a child" in b["prompt"]
    assert (a["cwd"], a["depth"]) == (str(ws.alpha), "1")
    assert (b["cwd"], b["depth"]) == (str(ws.beta), "2")  # the nested caller's depth + 1


# An older service: the real one, its version patched before its module loads (it takes
# `agent_dispatch.__version__` then).
OLD_SERVICE = (
    "import sys, agent_dispatch; agent_dispatch.__version__ = '0.0.1'; "
    "from agent_dispatch.server import service; sys.exit(service.main())"
)


async def wait_accepting(path: Path) -> None:
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
            return
        except OSError:
            await trio.sleep(0.02)  # another process starting: nothing to wait on but time
        finally:
            probe.close()


async def test_a_front_newer_than_the_service_gets_a_fresh_service(ws: Workspace) -> None:
    path = rendezvous.socket_path(ws.env())
    old = await trio.lowlevel.open_process(
        [sys.executable, "-c", OLD_SERVICE],
        env=ws.env(),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(30):
            await wait_accepting(path)
            async with stdio_server(ws, "relay") as server:
                out = structured(await server.call("list_agents"))
                new = the_service(ws)
            assert await old.wait() == 0  # refused us as outdated, drained and left
    finally:
        if old.returncode is None:
            os.killpg(old.pid, signal.SIGKILL)
            await old.wait()
    assert [a["name"] for a in out["agents"]] == ["alpha", "beta"]
    assert new != old.pid
    assert server.stderr() == ""
