"""The per-user service as real processes, where the OS is the subject: the detached
start, the lock that keeps a second service of one setup out, SIGTERM, the peer's uid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import trio

from agent_dispatch import rendezvous
from agent_dispatch.runtime.scripted import ScriptedRunner
from agent_dispatch.server.service_socket import lock_holder, peer_uid
from tests.service_support import running_service, write_config

CLI = [sys.executable, "-m", "agent_dispatch"]
SERVICE = [sys.executable, "-m", "agent_dispatch.server.service"]


@pytest.fixture
def env(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    write_config(service_env)
    yield service_env
    # never leave a service behind: kill the one the lock names if it still serves here
    holder = lock_holder(rendezvous.lock_path(service_env))
    if holder and holder != os.getpid() and rendezvous.socket_path(service_env).exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder, signal.SIGKILL)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_start_status_a_second_service_and_stop(env: dict[str, str]) -> None:
    assert cli(env, "service", "status", "--json").returncode == 1
    started = cli(env, "service", "start")
    assert started.returncode == 0, started.stderr
    assert "service started: version" in started.stdout
    status = json.loads(cli(env, "service", "status", "--json").stdout)
    assert status["running"] is True and status["sessions"] == 0
    assert status["socket"] == str(rendezvous.socket_path(env))
    pid = status["pid"]
    assert os.getpgid(pid) == pid  # detached: its own session and process group

    begun = time.monotonic()
    second = subprocess.run(SERVICE, env=env, capture_output=True, text=True, timeout=30)
    assert second.returncode == 0
    assert f"already runs (pid {pid}" in second.stderr
    third = cli(env, "service", "run")  # the CLI's way in: it execs the same module
    assert third.returncode == 0 and f"already runs (pid {pid}" in third.stderr
    assert time.monotonic() - begun < 20

    again = cli(env, "service", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    stopped = cli(env, "service", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"service stopped (pid {pid})" in stopped.stdout
    assert not rendezvous.socket_path(env).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "not running" in cli(env, "service", "status").stdout
    assert "service" in rendezvous.log_path(env).read_text()


def test_sigterm_ends_the_foreground_service_and_removes_its_socket(env: dict[str, str]) -> None:
    proc = subprocess.Popen(SERVICE, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not rendezvous.socket_path(env).exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not rendezvous.socket_path(env).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def test_doctor_flags_a_service_older_than_this_install(env: dict[str, str]) -> None:
    with trio.fail_after(60):
        async with running_service(env, ScriptedRunner(), version="0.0.1"):
            done = await trio.run_process(
                [*CLI, "doctor", "--json"], env=env, capture_stdout=True, check=False
            )
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["service"]["status"] == "warn"
    assert "version 0.0.1" in checks["service"]["message"]
    assert "older than this install" in checks["service"]["message"]
    assert checks["service"]["fix"] == "agent-dispatch service stop"


def test_doctor_says_a_stopped_service_starts_on_demand(env: dict[str, str]) -> None:
    checks = {c["name"]: c for c in json.loads(cli(env, "doctor", "--json").stdout)["checks"]}
    assert checks["service"] == {
        "name": "service",
        "status": "ok",
        "message": "not running (started on demand)",
        "fix": None,
    }


async def test_the_peer_uid_is_the_connecting_process_s() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    try:
        assert peer_uid(stream) == os.getuid()
    finally:
        await stream.aclose()
        right.close()


_CONNECT_AS_OTHER = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
hello = {"hello": "agent-dispatch", "protocol": 1, "version": "0.1.0", "pid": os.getpid(),
         "cwd": "/", "env": {}}
s.sendall(json.dumps(hello).encode() + b"\\n")
try:
    print(repr(s.recv(4096)))
except ConnectionResetError:  # closed with our hello unread
    print(repr(b""))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another uid")
def test_a_connection_from_another_uid_is_closed_unanswered(env: dict[str, str]) -> None:
    sock = rendezvous.socket_path(env)
    proc = subprocess.Popen(SERVICE, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        # Let uid 65534 reach the socket: the 0700 directories normally keep it out.
        for directory in (sock.parent.parent, sock.parent):
            os.chmod(directory, 0o711)  # noqa: S103 - the test's own sandbox, restored below
        os.chmod(sock, 0o666)  # noqa: S103
        try:
            other = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", _CONNECT_AS_OTHER, os.fspath(sock)],
                user=65534,
                capture_output=True,
                text=True,
                timeout=30,
                cwd="/",
            )
        finally:
            for directory in (sock.parent.parent, sock.parent):
                os.chmod(directory, 0o700)
        assert other.stdout.strip() == "b''", other.stderr  # closed, not welcomed
        assert "refused a connection from uid 65534" in rendezvous.log_path(env).read_text()
        assert json.loads(cli(env, "service", "status", "--json").stdout)["running"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
