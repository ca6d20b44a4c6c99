"""The floor: the same fan-out run by a bare trio script that only spawns the fake.

No MCP, no config, no result parsing: a CapacityLimiter and `trio.run_process`
with stdin from /dev/null and both pipes captured. It is what this machine can
do at all with that fake, that concurrency and that latency.
"""

from __future__ import annotations

import subprocess
import uuid

import trio

from benchmarks.servers import Sandbox


async def fanout(sandbox: Sandbox, *, items: int, concurrency: int, latency_ms: int) -> float:
    """Seconds to run `items` fake children, at most `concurrency` at a time."""
    limiter = trio.CapacityLimiter(concurrency)
    env = sandbox.env(latency_ms=latency_ms)
    claude = str(sandbox.bin / "claude")
    cwd = sandbox.root / "projects" / sandbox.agents[0]

    async def one(i: int) -> None:
        argv = [claude, "-p", "--output-format", "json", "--session-id", str(uuid.uuid4())]
        argv += ["--", f"floor task {i}"]
        async with limiter:
            await trio.run_process(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                start_new_session=True,
            )

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(items):
            nursery.start_soon(one, i)
    return trio.current_time() - start
