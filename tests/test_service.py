"""The per-user service (issue #16), in this process on the ScriptedRunner: sessions over
its Unix socket share one Dispatcher; jobs outlive sessions; idle exit; drain; refusals.

What only separate processes show (the lock between two services, SO_PEERCRED across
users, the detached start) is in test_service_process.py.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
import trio
import trio.testing

import agent_dispatch.server.app  # noqa: F401 - imported here: no SDK import thread mid-test
from agent_dispatch import handshake, rendezvous
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.server.service import ServiceRunning, serve_service
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import JobStore
from tests.front_support import initialize
from tests.service_support import (
    VERSION,
    connected,
    running_service,
    session,
    status,
    write_config,
)


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """Autojump: time moves only when every task waits. running_service runs the
    service's blocking calls inline (offload.inline), so no worker thread is ever
    in flight when the clock jumps to a deadline."""
    return autojump_clock


@pytest.fixture
def env(service_env: dict[str, str]) -> dict[str, str]:
    write_config(service_env)
    return service_env


async def test_the_socket_is_private_and_a_session_lists_the_tools(env: dict[str, str]) -> None:
    runner = ScriptedRunner()
    with trio.fail_after(30):
        async with running_service(env, runner), session(env) as conn:
            await conn.send({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}})
            reply = await conn.recv()
    assert reply is not None and reply["id"] == 7
    assert len(reply["result"]["tools"]) == 21
    assert not rendezvous.socket_path(env).exists()  # removed on the way out


async def test_the_socket_file_is_0600(env: dict[str, str]) -> None:
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner()):
            mode = os.stat(rendezvous.socket_path(env)).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


async def test_two_sessions_share_one_limit(env: dict[str, str]) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(reply="first", release=gate), prompt="one")
    with trio.fail_after(30):
        async with running_service(env, runner):
            async with session(env) as a, session(env) as b:
                one = await a.call("dispatch_async", agent="backend", task="one")
                await runner.wait_calls(1)
                two = await b.call("dispatch_async", agent="web", task="two")
                seen = await status(env)
                assert (seen.sessions, seen.running, seen.queued) == (2, 1, 1)
                assert len(runner.calls) == 1  # the one slot is taken by a's job
                gate.set()
                waited = await b.call("dispatch_wait", job_ids=[one["job_id"], two["job_id"]])
    assert [job["status"] for job in waited["jobs"]] == ["done", "done"]
    assert runner.peak == 1


async def test_a_session_that_ends_mid_job_leaves_the_job_running_for_another(
    env: dict[str, str],
) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(reply="the answer", release=gate))
    with trio.fail_after(30):
        async with running_service(env, runner) as running:
            async with session(env) as a:
                job = await a.call("dispatch_async", agent="backend", task="long")
                (call,) = await runner.wait_calls(1)
                await a.end()
            assert running.service.sessions == 0
            assert not call.done.is_set() and not call.cancelled
            async with session(env) as b:
                assert (await b.call("dispatch_status", job_id=job["job_id"]))["status"] in (
                    "running",
                    "pending",
                )
                gate.set()
                waited = await b.call("dispatch_wait", job_id=job["job_id"])
                fetched = await b.call("fetch_result", ref=job["job_id"])
    assert waited["status"] == "done"
    assert fetched["result"] == "the answer"


async def test_each_session_s_env_and_depth_reach_its_children(env: dict[str, str]) -> None:
    runner = ScriptedRunner()
    alice = {"PATH": "/a", "ANTHROPIC_API_KEY": "ka", "CLAUDECODE": "1"}
    bob = {"PATH": "/b", "AGENT_DISPATCH_DEPTH": "2"}
    with trio.fail_after(30):
        async with running_service(env, runner):
            async with session(env, alice) as a, session(env, bob) as b:
                assert (await a.call("dispatch", agent="backend", task="for alice"))["success"]
                assert (await b.call("dispatch", agent="backend", task="for bob"))["success"]
                deep = {"PATH": "/c", "AGENT_DISPATCH_DEPTH": "3"}
                async with session(env, deep) as c:
                    refused = await c.call("dispatch", agent="backend", task="too deep")
    envs = [call.spec.env for call in runner.calls]
    assert envs == [
        {"PATH": "/a", "ANTHROPIC_API_KEY": "ka", "AGENT_DISPATCH_DEPTH": "1"},
        {"PATH": "/b", "AGENT_DISPATCH_DEPTH": "3"},
    ]
    assert refused["error_type"] == "recursion"


@pytest.mark.parametrize(
    ("line", "code", "says"),
    [
        (b"not json\n", "bad_hello", "not JSON"),
        (b'{"hello": "agent-dispatch", "protocol": 9}\n', "protocol", "protocol 9"),
        (b'{"hello": "agent-dispatch", "protocol": 1, "version": "1"}\n', "bad_hello", "'pid'"),
        (b"x" * (handshake.MAX_HELLO_BYTES + 10), "bad_hello", "over the"),
    ],
)
async def test_a_bad_hello_is_refused_and_the_service_lives_on(
    env: dict[str, str], line: bytes, code: str, says: str
) -> None:
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner()) as running:
            async with connected(env) as conn:
                await conn.send_line(line)
                reply = handshake.parse_reply(await conn.read_line())
                assert await conn.read_line() == b""  # and the connection is closed
            async with session(env) as good:
                assert (await good.call("dispatch", agent="backend", task="hi"))["success"]
            assert not running.exited.is_set()
    assert isinstance(reply, handshake.Refusal)
    assert reply.code == code and says in reply.reason


async def test_a_silent_connection_is_refused_after_the_hello_timeout(
    env: dict[str, str], clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        async with running_service(env, ScriptedRunner()), connected(env) as conn:
            reply = handshake.parse_reply(await conn.read_line())
    assert reply == handshake.Refusal("bad_hello", "hello: none within 10 s")


async def test_mcp_bytes_sent_right_behind_the_hello_are_not_lost(env: dict[str, str]) -> None:
    hello = handshake.encode_hello(VERSION, os.getpid(), "/", {"PATH": "/bin"})
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner()), connected(env) as conn:
            await conn.send_line(hello + json.dumps(initialize()).encode() + b"\n")
            assert isinstance(handshake.parse_reply(await conn.read_line()), handshake.Welcome)
            reply = await conn.recv()
    assert reply is not None and reply["id"] == 1 and "serverInfo" in reply["result"]


async def test_a_stale_socket_file_is_replaced(env: dict[str, str]) -> None:
    path = rendezvous.socket_path(env)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))
    stale.close()  # the file stays, nothing listens: what a killed service leaves
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner()), session(env) as conn:
            assert (await conn.call("dispatch", agent="backend", task="hi"))["success"]


async def test_a_second_service_of_the_setup_refuses_to_start(env: dict[str, str]) -> None:
    store = ConfigStore(Path(env["AGENT_DISPATCH_CONFIG"]))
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner()):
            with pytest.raises(ServiceRunning, match=f"pid {os.getpid()}"):
                await serve_service(store, env=env, runner=ScriptedRunner())
            assert (await status(env)).pid == os.getpid()  # the first one still serves


async def test_separate_setups_run_separate_services(env: dict[str, str], tmp_path: Path) -> None:
    other = {**env, "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "other-jobs")}
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner()), running_service(other, ScriptedRunner()):
            assert rendezvous.socket_path(env) != rendezvous.socket_path(other)
            assert (await status(env)).sessions == (await status(other)).sessions == 0


async def test_the_status_request_reports_version_sessions_and_jobs(env: dict[str, str]) -> None:
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner(), version="1.2.3"), session(env):
            seen = await status(env)
    assert seen.version == "1.2.3" and seen.pid == os.getpid()
    assert (seen.sessions, seen.running, seen.queued, seen.draining) == (1, 0, 0, False)
    assert seen.uptime >= 0


async def test_with_no_session_and_no_job_it_exits_after_the_idle_time(
    env: dict[str, str], clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5000):
        async with running_service(env, ScriptedRunner()) as running:
            start = trio.current_time()
            await running.exited.wait()
            assert 900 <= trio.current_time() - start < 901
    assert not rendezvous.socket_path(env).exists()


async def test_an_open_session_or_a_running_job_keeps_it_alive(
    env: dict[str, str], clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(reply="done", release=gate))
    with trio.fail_after(10_000):
        async with running_service(env, runner) as running:
            async with session(env) as conn:
                await conn.call("dispatch_async", agent="backend", task="long")
                await trio.sleep(1000)
                assert not running.exited.is_set()  # a session is open
                await conn.end()
            await trio.sleep(1000)
            assert not running.exited.is_set()  # a job runs (its timeout is 3600 s)
            gate.set()
            released = trio.current_time()
            await running.exited.wait()
            assert 900 <= trio.current_time() - released < 901


async def test_idle_seconds_0_means_it_never_exits_on_its_own(
    service_env: dict[str, str], clock: trio.testing.MockClock
) -> None:
    write_config(service_env, idle=0)
    with trio.fail_after(100_000):
        async with running_service(service_env, ScriptedRunner()) as running:
            await trio.sleep(50_000)
            assert not running.exited.is_set()


async def test_a_newer_front_drains_the_service_which_exits_after_its_jobs(
    env: dict[str, str],
) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(reply="finished", release=gate))
    with trio.fail_after(30):
        async with running_service(env, runner) as running:
            async with session(env) as conn:
                job = await conn.call("dispatch_async", agent="backend", task="long")
                await runner.wait_calls(1)
                async with connected(env) as newer:
                    reply = await newer.hello(version="99.0.0")
                assert isinstance(reply, handshake.Refusal) and reply.code == "outdated"
                await running.service.closed.wait()
                assert not rendezvous.socket_path(env).exists()
                assert running.service.draining and not running.exited.is_set()
                gate.set()
                await running.exited.wait()
    assert JobStore(Path(env["AGENT_DISPATCH_JOBS_DIR"])).require(job["job_id"]).status == "done"


async def test_an_older_or_equal_front_is_welcomed(env: dict[str, str]) -> None:
    with trio.fail_after(30):
        async with running_service(env, ScriptedRunner(), version="0.5.0") as running:
            for version in ("0.5.0", "0.4.9"):
                async with connected(env) as conn:
                    reply = await conn.hello(version=version)
                assert isinstance(reply, handshake.Welcome) and reply.version == "0.5.0"
            assert not running.service.draining


async def test_cancelling_the_service_cancels_its_jobs_and_records_them(
    env: dict[str, str],
) -> None:
    runner = ScriptedRunner()
    runner.on(Script(reply="never", release=trio.Event()))
    with trio.fail_after(30):
        async with running_service(env, runner):
            async with session(env) as conn:
                job = await conn.call("dispatch_async", agent="backend", task="long")
                await runner.wait_calls(1)
    record = JobStore(Path(env["AGENT_DISPATCH_JOBS_DIR"])).require(job["job_id"])
    assert record.status == "cancelled" and "shut down" in (record.error or "")
    assert runner.calls[0].cancelled


async def test_a_front_that_says_hello_once_draining_began_is_told_so(
    env: dict[str, str],
) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(reply="finished", release=gate))
    with trio.fail_after(30):
        async with running_service(env, runner) as running, session(env) as conn:
            await conn.call("dispatch_async", agent="backend", task="keeps it draining")
            async with connected(env) as early:
                await status(env)  # accepted after `early`: so `early` is accepted too
                async with connected(env) as newer:
                    refused = await newer.hello(version="99.0.0")
                    assert isinstance(refused, handshake.Refusal) and refused.code == "outdated"
                await running.service.closed.wait()
                reply = await early.hello()
            gate.set()
    assert isinstance(reply, handshake.Refusal) and reply.code == "draining"
