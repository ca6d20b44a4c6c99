"""What every case shares: the run context, result rows, server sets, alternation."""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from benchmarks.events import EventLog, reap_strays
from benchmarks.servers import Sandbox, Session, System, serve, stop_service


class BenchError(Exception):
    """A server answered something the harness cannot measure."""


@dataclass
class Row:
    """One line of the results table. Values are medians unless the note says otherwise."""

    case: str
    label: str
    unit: str
    ours: float | None
    original: float | None = None
    floor: float | None = None
    target: str = ""
    passed: bool | None = None  # None: informational, no target
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """ours / original (for a throughput, >1 means ours is faster)."""
        if self.ours is None or not self.original:
            return None
        return self.ours / self.original


@dataclass
class Ctx:
    """The run: which servers, where, how many rounds."""

    systems: list[System]
    tmp: Path
    run_id: str
    quick: bool = False
    rounds_override: int | None = None
    log: Callable[[str], None] = print
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def rounds(self, full: int, quick: int) -> int:
        if self.rounds_override is not None:
            return self.rounds_override
        return quick if self.quick else full

    def task(self, prefix: str) -> str:
        """A task text never sent before (so no result cache can answer it)."""
        return f"{prefix} #{next(self._counter)}"

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.systems)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def medians(samples: Mapping[str, Sequence[float]]) -> tuple[float | None, float | None]:
    """(ours, original): the median of each system's samples, None when it has none."""
    return median(samples.get("ours", [])), median(samples.get("original", []))


@asynccontextmanager
async def open_servers(
    ctx: Ctx,
    case: str,
    *,
    max_concurrency: int,
    latency_ms: int,
    events: bool = False,
    stdin_wait: bool = False,
    systems: Sequence[System] | None = None,
) -> AsyncIterator[list[Session]]:
    """Start each system's server in its own sandbox; reap stray children afterwards."""
    sandboxes: list[Sandbox] = []
    try:
        async with AsyncExitStack() as stack:
            sessions = []
            for system in systems if systems is not None else ctx.systems:
                sandbox = Sandbox(ctx.tmp / case / system.name, system, ctx.run_id)
                sandboxes.append(sandbox)
                sandbox.write_config(max_concurrency)
                log = None
                if events:
                    log = await stack.enter_async_context(
                        EventLog.open(sandbox.root / "events.fifo")
                    )
                session = await stack.enter_async_context(
                    serve(
                        sandbox,
                        latency_ms=latency_ms,
                        events=None if log is None else log.path,
                        stdin_wait=stdin_wait,
                    )
                )
                session.events = log
                sessions.append(session)
            yield sessions
    finally:
        with trio.CancelScope(shield=True):
            for sandbox in sandboxes:
                await stop_service(sandbox)  # else it idles on, and reap_strays kills it
            killed = await reap_strays(ctx.run_id)
        if killed:
            ctx.log(f"    ({case}: killed {len(killed)} leftover processes)")


async def alternate(
    names: Sequence[str],
    rounds: int,
    measure: Callable[[str], Awaitable[float]],
) -> dict[str, list[float]]:
    """`rounds` samples per name; the order flips every round so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = list(names) if r % 2 == 0 else list(reversed(names))
        for name in order:
            samples[name].append(await measure(name))
    return samples


def floor_sandbox(ctx: Ctx, case: str) -> Sandbox:
    """A sandbox for the bare-trio floor runs (no server, same fake and env)."""
    return Sandbox(ctx.tmp / case / "floor", System("floor", ()), ctx.run_id)


def by_name(sessions: Sequence[Session]) -> dict[str, Session]:
    return {s.name: s for s in sessions}


def parallel_items(ctx: Ctx, count: int, agent: str = "a0") -> str:
    """dispatch_parallel's `dispatches` as the JSON string both servers accept."""
    return json.dumps([{"agent": agent, "task": ctx.task("parallel item")} for _ in range(count)])


def results_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("results", "items", "individual_results"):
        value = answer.get(key)
        if isinstance(value, list):
            return value
    raise BenchError(f"unexpected dispatch_parallel answer: {json.dumps(answer)[:300]}")


def require_success(answer: dict[str, Any], what: str) -> None:
    if answer.get("success") is not True:
        raise BenchError(f"{what} failed: {json.dumps(answer)[:300]}")


async def call_in(
    scope: trio.CancelScope, session: Session, tool: str, args: dict[str, Any]
) -> None:
    """A tools/call that `scope.cancel()` abandons (the client sends notifications/cancelled)."""
    with scope:
        await session.call(tool, args)
