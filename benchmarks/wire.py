"""The wire under abuse: long lines and a client that writes without reading.

    .venv/bin/python -m benchmarks.wire [--source DIR]

Starts `serve` (from this checkout, or from the agent_dispatch package in
--source DIR, e.g. a worktree of an older commit, for the baseline) and reports:
- for lines of 100 and 200 MB: seconds until a `ping` sent after the line is
  answered, and the server's peak RSS (VmHWM);
- for 20,000 `tools/list` written by a client that never reads: how many the
  server took before the pipe filled (what it buffers), and its peak RSS.
Each measurement has a 90 s ceiling; a run that hits it says so.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INIT = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}
CEILING = 90.0
STALL = 10.0  # no room in the pipe for this long: the server stopped reading


def start(source: Path | None, home: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["AGENT_DISPATCH_CONFIG"] = str(home / "cfg" / "agents.yaml")
    env["AGENT_DISPATCH_JOBS_DIR"] = str(home / "jobs")
    (home / "cfg").mkdir(mode=0o700, parents=True, exist_ok=True)
    config = home / "cfg" / "agents.yaml"
    config.write_text("agents: {}\n")
    config.chmod(0o600)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    code = "from agent_dispatch.server.stdio import main; raise SystemExit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=source or home,  # `python -c` puts the cwd first on sys.path
    )


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def send(proc: subprocess.Popen[bytes], message: dict[str, object]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def ready(proc: subprocess.Popen[bytes]) -> None:
    """Initialized, and the SDK loaded: a ping is answered only by the SDK."""
    send(proc, INIT)
    wait_for(proc, "init")
    send(proc, {"jsonrpc": "2.0", "id": "ready", "method": "ping"})
    wait_for(proc, "ready")


def wait_for(proc: subprocess.Popen[bytes], rid: str) -> bool:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if json.loads(line).get("id") == rid:
            return True
    return False


def long_line(source: Path | None, megabytes: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(source, Path(tmp))
        try:
            ready(proc)
            assert proc.stdin is not None
            head = b'{"jsonrpc":"2.0","id":"big","method":"tools/call","params":'
            filler = b"a" * (megabytes * 10**6)
            body = b'{"name":"list_agents","arguments":{"x":"' + filler + b'"}}}\n'
            started = time.monotonic()
            proc.stdin.write(head + body)
            proc.stdin.flush()
            send(proc, {"jsonrpc": "2.0", "id": "after", "method": "ping"})
            answered = wait_for(proc, "after")
            took = time.monotonic() - started
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    state = "" if answered else " (no answer)"
    return f"{megabytes} MB line: ping answered after {took:.2f} s{state}, peak RSS {rss:.0f} MiB"


def no_reader(source: Path | None, count: int = 20_000) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(source, Path(tmp))
        try:
            ready(proc)
            assert proc.stdin is not None
            os.set_blocking(proc.stdin.fileno(), False)
            data = b"".join(
                json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/list"}).encode() + b"\n"
                for i in range(count)
            )
            sent, started = 0, time.monotonic()
            fd = proc.stdin.fileno()
            while sent < len(data) and time.monotonic() - started < CEILING:
                # Writable within STALL seconds, or the server has stopped reading.
                _, writable, _ = select.select([], [fd], [], STALL)
                if not writable:
                    break
                try:
                    sent += os.write(fd, data[sent : sent + 65536])
                except BlockingIOError:
                    continue
            taken = data[:sent].count(b"\n")
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    return f"{count} tools/list, never read: the server took {taken}, peak RSS {rss:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire")
    parser.add_argument("--source", type=Path, help="run agent_dispatch from this directory")
    args = parser.parse_args()
    print(f"serve from {args.source or 'this checkout'}")
    for megabytes in (100, 200):
        print(long_line(args.source, megabytes), flush=True)
    print(no_reader(args.source), flush=True)


if __name__ == "__main__":
    main()
