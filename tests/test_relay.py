"""The `serve` front against a fake service: the handshake, the relay, the refusals.

The fake (tests/relay_support.py) is a thread on the sandbox's socket; the front is a
real process (`python -m agent_dispatch serve`), since its pipes and exit are the subject.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_dispatch import __version__, handshake
from agent_dispatch.runtime import servers
from tests.relay_support import FakeService, Sandbox, front, sandbox

HEAVY = ("trio", "anyio", "mcp", "mcp_types", "msgspec", "yaml", "cyclopts")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with sandbox(tmp_path) as box:
        yield box


def test_importing_the_front_loads_no_framework_no_other_face_and_no_slow_stdlib() -> None:
    code = (
        "import sys, json, agent_dispatch.relay, agent_dispatch.launch;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    heavy = {m for m in loaded if m.split(".")[0] in HEAVY}
    faces = {
        m
        for m in loaded
        if m.startswith(("agent_dispatch.service", "agent_dispatch.server", "agent_dispatch.cli"))
    }
    assert heavy == set() and faces == set()
    assert "agent_dispatch.relay" in loaded
    # nor what costs a front (so every `claude -p` child) ~45 ms of start-up: only a
    # front that must start the service imports subprocess
    slow = {"typing", "dataclasses", "pathlib", "inspect", "subprocess"}
    assert loaded & slow == set()


def test_the_package_still_exports_every_name_on_first_use() -> None:
    code = "from agent_dispatch import Dispatcher, load_config, __version__; print(__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, timeout=60, text=True
    )
    assert out.stdout.strip() == __version__


def test_the_front_says_hello_with_its_context_and_relays_bytes_untouched(box: Sandbox) -> None:
    fake = FakeService(box.socket)
    box.env["CALLER_CONTEXT"] = "this caller only"
    proc = front(box)
    # Not JSON-RPC, not even one line: the front copies bytes, it does not parse them.
    payload = b'{"jsonrpc":"2.0"}\n\x00\xffpartial line ' + bytes(range(256)) * 400
    out, err = proc.communicate(payload, timeout=20)
    fake.close()
    assert (proc.returncode, err) == (0, b"")
    assert out == payload  # echoed back whole, after stdin EOF closed our write side
    (hello,) = fake.hellos
    assert hello.pid == proc.pid and hello.version == __version__
    assert hello.cwd == str(box.root)
    assert hello.env["CALLER_CONTEXT"] == "this caller only"
    assert hello.env == box.env


def test_the_service_closing_the_session_ends_the_front_with_status_0(box: Sandbox) -> None:
    def hang_up(conn: socket.socket) -> None:
        conn.sendall(b"bye\n")

    fake = FakeService(box.socket, handler=hang_up)
    with front(box) as proc:
        assert proc.stdout is not None
        assert proc.stdout.read() == b"bye\n"  # EOF: the front closed its stdout by exiting
        assert proc.wait(timeout=10) == 0
    fake.close()


def test_a_welcomed_front_is_in_the_registry_of_running_servers_until_it_ends(
    box: Sandbox,
) -> None:
    seen: list[list[servers.ServerEntry]] = []
    directory = Path(box.env["XDG_RUNTIME_DIR"]) / "agent-dispatch" / "servers"

    def look_then_hang_up(conn: socket.socket) -> None:
        got = b""
        while b"\n" not in got:  # relayed: the front registered before it relays
            chunk = conn.recv(100)
            assert chunk, "the front hung up"
            got += chunk
        seen.append(servers.live_entries(directory))  # the front is up, its session open
        conn.sendall(b"bye\n")

    fake = FakeService(box.socket, handler=look_then_hang_up)
    with front(box) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"ping\n")
        proc.stdin.flush()
        assert proc.stdout.read() == b"bye\n"
        assert proc.wait(timeout=10) == 0
    fake.close()
    [[entry]] = seen
    assert (entry.pid, entry.kind, entry.version) == (proc.pid, "front", __version__)
    assert entry.config == box.env["AGENT_DISPATCH_CONFIG"]
    assert entry.process_started is not None
    assert list(directory.iterdir()) == []  # removed on the way out


@pytest.mark.parametrize("code", ["protocol", "bad_hello"])
def test_a_refusal_is_reported_on_stderr_with_status_1(box: Sandbox, code: str) -> None:
    fake = FakeService(box.socket, reply=lambda _: handshake.encode_refusal(code, "no thanks"))
    proc = front(box)
    out, err = proc.communicate(timeout=20)
    fake.close()
    assert proc.returncode == 1
    assert out == b""
    assert err.decode() == (
        f"agent-dispatch serve: the service refused this front ({code}): no thanks\n"
    )


@pytest.mark.parametrize("code", ["outdated", "draining"])
def test_a_refusing_service_on_its_way_out_is_waited_for_and_its_successor_used(
    box: Sandbox, code: str
) -> None:
    successor: list[FakeService] = []

    def refuse_then_leave(hello: handshake.Hello) -> bytes:
        # On its way out: the socket goes, a new service binds the same path.
        old.close()
        successor.append(FakeService(box.socket))
        return handshake.encode_refusal(code, "finishing my jobs")

    old = FakeService(box.socket, reply=refuse_then_leave)
    proc = front(box)
    out, err = proc.communicate(b"ping\n", timeout=20)
    successor[0].close()
    assert (proc.returncode, out, err) == (0, b"ping\n", b"")
    assert len(old.hellos) == len(successor[0].hellos) == 1


def test_signals_end_the_front_quietly(box: Sandbox) -> None:
    started = threading.Event()

    def wait_for_eof(conn: socket.socket) -> None:
        started.set()
        while conn.recv(65536):
            pass

    fake = FakeService(box.socket, handler=wait_for_eof)
    for signum in (signal.SIGTERM, signal.SIGINT):
        started.clear()
        proc = front(box)
        assert started.wait(20)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out, err) == (0, b"", b"")
    fake.close()


def test_a_client_that_stops_reading_ends_the_front_quietly(box: Sandbox) -> None:
    def flood(conn: socket.socket) -> None:
        try:
            while True:
                conn.sendall(b"x" * 65536)
        except OSError:
            pass  # the front hung up

    fake = FakeService(box.socket, handler=flood)
    with front(box) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()  # the client is gone: the front's next write gets EPIPE
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == b""
    assert fake.served.wait(10)  # the service saw the session end
    fake.close()


def test_a_runtime_directory_owned_by_someone_else_is_a_clear_error(box: Sandbox) -> None:
    runtime = Path(box.env["XDG_RUNTIME_DIR"]) / "agent-dispatch"
    runtime.mkdir(mode=0o755)
    os.chmod(runtime, 0o755)  # noqa: S103 - not private: the subject
    proc = front(box)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and out == b""
    assert b"must be 0700" in err and err.startswith(b"agent-dispatch serve: ")


def test_an_environment_too_large_for_the_hello_is_a_clear_error(box: Sandbox) -> None:
    fake = FakeService(box.socket)
    for i in range(10):  # 1.1 MB in all; one string may not pass 128 KiB on exec
        box.env[f"HUGE_{i}"] = "x" * 110_000
    proc = front(box)
    out, err = proc.communicate(timeout=20)
    fake.close()
    assert proc.returncode == 1 and out == b""
    assert b"the environment is too large to send" in err
    assert fake.hellos == []  # nothing was sent
