"""The per-user service under load (issue #16): many thin fronts, one service, one limit.

Only ours has a service (`serve` is the front; the original has none), so the case
runs against ours alone. One sandbox, `max_concurrency` 5, the fake at 300 ms:

1. 50 fronts (10 with `--quick`) spawned at once with no service running: each opens a real MCP
   session (the client's initialize, as `servers.serve` does), lists the tools
   and sends one `dispatch`; all 50 stay connected until the last dispatch
   answered. The fronts race to start the service: the service log (level INFO)
   counts the services that started; the fake's FIFO the children alive at once;
   `/proc` each front's RSS while all 50 are connected; `service status` how many
   sessions the service held at that moment.
2. With that service running, fronts spawned one at a time: from the spawn until
   the client has the tool list (the warm case every `claude -p` child meets).

The service is stopped at the end (`agent-dispatch service stop`), errors included.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from agent_dispatch import rendezvous
from benchmarks.common import BenchError, Ctx, Row, require_success
from benchmarks.events import EventLog, reap_strays
from benchmarks.servers import Sandbox, Session, stop_service

FRONTS = 50
FRONTS_QUICK = 10  # --quick: fewer fronts, for a smoke run
LATENCY_MS = 300
CONCURRENCY = 5
_PID_WRAPPER = 'echo $$ > "$BENCH_PIDFILE"; exec "$@"'
_STARTED = re.compile(r"service \S+ starting \(pid (\d+)")


@dataclass
class LoadResult:
    """What phase 1 saw."""

    to_tools: list[float] = field(default_factory=list)  # ms, spawn until tools listed
    rss: list[float] = field(default_factory=list)  # MiB per front, all connected
    sessions: int = -1  # the service's own count, all connected
    service_pid: int = -1


def rss_mb(pid: int) -> float:
    """A process's resident set in MiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


@asynccontextmanager
async def open_front(
    sandbox: Sandbox, env: Mapping[str, str], pidfile: Path
) -> AsyncIterator[tuple[Session, float]]:
    """Spawn one front (its pid written to `pidfile`) with a client session; yields
    the session and the seconds from the spawn until the tool list arrived."""
    argv = ["/bin/sh", "-c", _PID_WRAPPER, "sh", *sandbox.system.argv]
    params = StdioServerParameters(
        command=argv[0],
        args=argv[1:],
        env=dict(env) | {"BENCH_PIDFILE": str(pidfile)},
        cwd=str(sandbox.root),
    )
    start = trio.current_time()
    with _append(sandbox.log) as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None) as c:
            session = Session(sandbox, c)
            tools = await session.list_tools()
            elapsed = trio.current_time() - start
            if "dispatch" not in tools:
                raise BenchError(f"the front listed no dispatch tool: {tools}")
            session.pid = int(await trio.Path(pidfile).read_text())  # written before exec
            yield session, elapsed


def _append(path: Path) -> TextIO:
    return open(path, "a")  # the caller's with-block closes it


async def service_status(sandbox: Sandbox, env: Mapping[str, str]) -> dict[str, object]:
    """`agent-dispatch service status --json` for the sandbox's setup."""
    python = sandbox.system.argv[0]
    done = await trio.run_process(
        [python, "-m", "agent_dispatch", "service", "status", "--json"],
        env=dict(env),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    try:
        status = json.loads(done.stdout)
    except ValueError:
        raise BenchError(f"service status answered {done.stdout[:300]!r}") from None
    if not isinstance(status, dict):
        raise BenchError(f"service status answered {status!r}")
    return status


async def all_at_once(
    ctx: Ctx, sandbox: Sandbox, env: Mapping[str, str], fronts: int
) -> LoadResult:
    """Phase 1: `fronts` fronts at once, each lists tools and dispatches once; all stay
    connected until every dispatch answered, then RSS and the service's sessions."""
    result = LoadResult()
    pids: list[int] = []
    all_in = trio.Event()

    async def snapshot() -> None:
        result.rss = [rss_mb(pid) for pid in pids]
        status = await service_status(sandbox, env)
        result.sessions = int(str(status.get("sessions", -1)))
        result.service_pid = int(str(status.get("pid", -1)))
        all_in.set()

    async def one(i: int) -> None:
        pidfile = sandbox.root / f"front{i}.pid"
        async with open_front(sandbox, env, pidfile) as (session, seconds):
            result.to_tools.append(1000 * seconds)
            assert session.pid is not None
            _, answer = await session.call("dispatch", {"agent": "a0", "task": ctx.task("svc")})
            require_success(answer, f"front {i} dispatch")
            pids.append(session.pid)
            if len(pids) == fronts:
                await snapshot()
            await all_in.wait()

    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            for i in range(fronts):
                nursery.start_soon(one, i)
    return result


async def one_at_a_time(ctx: Ctx, sandbox: Sandbox, env: Mapping[str, str]) -> list[float]:
    """Phase 2: ms from a front's spawn until the tool list, the service running."""
    times = []
    for i in range(ctx.rounds(20, 10)):
        with trio.fail_after(30):
            async with open_front(sandbox, env, sandbox.root / f"warm{i}.pid") as (_, seconds):
                times.append(1000 * seconds)
    return times


def services_started(log: Path) -> list[int]:
    """The pids of the services that started (their INFO line in the setup's log)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [int(pid) for pid in _STARTED.findall(text)]


async def case_service(ctx: Ctx) -> list[Row]:
    """50 fronts at once against one sandboxed service (max_concurrency 5), then fronts
    one by one with the service running."""
    ours = [s for s in ctx.systems if s.name == "ours"]
    if not ours:
        return []
    fronts = FRONTS_QUICK if ctx.quick else FRONTS
    sandbox = Sandbox(ctx.tmp / "service" / "ours", ours[0], ctx.run_id)
    sandbox.write_config(CONCURRENCY)
    fifo = sandbox.root / "events.fifo"
    env = sandbox.env(latency_ms=LATENCY_MS, events=fifo) | {"AGENT_DISPATCH_LOG_LEVEL": "INFO"}
    log = rendezvous.log_path(env)
    if not rendezvous.socket_path(env).is_relative_to(sandbox.runtime):
        raise BenchError(f"the service socket {rendezvous.socket_path(env)} is outside the sandbox")
    try:
        async with EventLog.open(fifo) as events:
            load = await all_at_once(ctx, sandbox, env, fronts)
            with trio.fail_after(30):
                await events.wait_idle()
            peak, children = events.peak, len(events.starts)
            warm = await one_at_a_time(ctx, sandbox, env)
    finally:
        with trio.CancelScope(shield=True):
            stopped = await stop_service(sandbox)
            ctx.log(f"    {stopped}")
            killed = await reap_strays(ctx.run_id)
        if killed:
            ctx.log(f"    (service: killed {len(killed)} leftover processes)")
    started = services_started(log)
    ctx.log(
        f"    services started: {started}; status pid {load.service_pid}, "
        f"{load.sessions} sessions with all fronts in; {children} children, peak {peak}"
    )
    if children != fronts:
        raise BenchError(f"{children} children started for {fronts} dispatches")
    return rows(fronts, load, warm, started, peak)


def rows(
    fronts: int, load: LoadResult, warm: list[float], started: list[int], peak: int
) -> list[Row]:
    cold = f"{fronts} fronts at once, max_concurrency {CONCURRENCY}, latency {LATENCY_MS} ms"
    return [
        Row(
            "service_procs",
            f"{cold}: service processes started",
            "processes",
            float(len(started)),
            target="exactly 1",
            passed=len(started) == 1,
            note=f"the service counted {load.sessions} sessions at once",
        ),
        Row(
            "service_peak",
            f"{cold}, one dispatch each: peak live children",
            "children",
            float(peak),
            target=f"never above {CONCURRENCY}",
            passed=peak <= CONCURRENCY,
            note="maximum, not median",
        ),
        Row(
            "service_front_rss",
            f"{cold}: a front's RSS, all connected",
            "MiB",
            statistics.median(load.rss),
            target="<= 30 MiB",
            passed=max(load.rss) <= 30,
            note=f"median; max {max(load.rss):.1f} MiB",
            samples={"ours": load.rss},
        ),
        Row(
            "service_front_start",
            "a front's spawn until the client has the tool list, service running",
            "ms",
            statistics.median(warm),
            target="<= 300 ms",
            passed=statistics.median(warm) <= 300,
            note=f"median of {len(warm)}, one at a time; p90 {p90(warm):.0f} ms",
            samples={"ours": warm},
        ),
        Row(
            "service_front_start_cold",
            f"{cold}: spawn until the tool list (the service starting meanwhile)",
            "ms",
            statistics.median(load.to_tools),
            note=f"informational; p90 {p90(load.to_tools):.0f} ms",
            samples={"ours": load.to_tools},
        ),
    ]
