"""The user's handshake record, end to end: two real `serve` processes in a row.

When the packaged record does not fit the installed versions (another mcp
release), the first start answers at the SDK's pace and records its own
handshake; the next start answers early from that record.
"""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from tests.server_support import PROTOCOL_VERSION, Workspace

pytest_plugins = ("tests.server_fixtures",)  # ws

# `serve`, with the packaged record swapped for a file that does not exist.
SERVE_WITHOUT_PACKAGED_RECORD = (
    "import pathlib, sys, agent_dispatch.server.early as early; "
    "early.HANDSHAKE_FILE = pathlib.Path(sys.argv[1]); "
    "from agent_dispatch.server.stdio import main; raise SystemExit(main())"
)
HANDSHAKE = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]


class Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream, self._buffer = stream, b""

    async def next(self) -> str | None:
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some()
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


async def start_list_and_stop(ws: Workspace, wait_for: str | None) -> tuple[list[str], int]:
    """One serve process: handshake, tools/list, then (after `wait_for` shows up in the
    log, if given) EOF. Returns its log lines and how many tools it listed."""
    env = ws.env(AGENT_DISPATCH_LOG_LEVEL="DEBUG", XDG_CACHE_HOME=str(ws.root / "cache"))
    argv = [sys.executable, "-c", SERVE_WITHOUT_PACKAGED_RECORD, str(ws.root / "absent.json")]
    proc = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    try:
        with trio.fail_after(20):
            await proc.stdin.send_all(b"".join(json.dumps(m).encode() + b"\n" for m in HANDSHAKE))
            out = Lines(proc.stdout)
            answers = [json.loads(await out.next() or "null") for _ in range(2)]
            assert [a["id"] for a in answers] == [1, 2]
            err = Lines(proc.stderr)
            while wait_for is not None and not any(wait_for in line for line in log):
                line = await err.next()
                assert line is not None, log
                log.append(line)
            await proc.stdin.aclose()
            while (line := await err.next()) is not None:
                log.append(line)
            assert await proc.wait() == 0, log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return log, len(answers[1]["result"]["tools"])


async def test_the_first_start_records_the_handshake_and_the_next_answers_from_it(
    ws: Workspace,
) -> None:
    record = ws.root / "cache" / "agent-dispatch" / "handshake.json"
    first, listed = await start_list_and_stop(ws, wait_for="recorded the handshake")
    assert not [line for line in first if "before the SDK was ready" in line]
    assert record.exists()
    second, listed_again = await start_list_and_stop(ws, wait_for=None)
    early = [line.split(" DEBUG ")[-1] for line in second if "before the SDK was ready" in line]
    assert early == [
        "answered initialize before the SDK was ready",
        "answered tools/list before the SDK was ready",
    ]
    assert listed == listed_again == 21
    assert not [line for line in second if "recorded the handshake" in line]  # it was fresh
