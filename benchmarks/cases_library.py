"""The library case: a 100-item fan-out from a user's nursery, against the bare-trio floor.

No MCP and no server: the harness process opens a `Dispatcher` on the sandbox's
agent and fake `claude` (the same fake, env and latency the floor uses) and runs
the batch the two ways a trio program would: `async for ... in d.as_completed(...)`
and a nursery of `d.dispatch` calls. Each form's wall clock is compared with
`floor.fanout` for the same items, concurrency and latency (rounds alternate).
"""

from __future__ import annotations

import functools

import trio

from agent_dispatch import AgentConfig, Config, Dispatcher, DispatchRequest, JobStore, Settings
from benchmarks import floor
from benchmarks.common import BenchError, Ctx, Row, alternate, floor_sandbox, median
from benchmarks.events import reap_strays
from benchmarks.servers import Sandbox, System

ITEMS = 100
LATENCY_MS = 100
TARGET = 1.05  # x the floor's wall clock
FORMS = {
    "as_completed": "async for in d.as_completed(100 requests)",
    "nursery": "a nursery of 100 d.dispatch calls",
}


async def _as_completed(d: Dispatcher, requests: list[DispatchRequest]) -> None:
    async for _, result in d.as_completed(requests):
        if not result.success:
            raise BenchError(f"library as_completed: a dispatch failed: {result.error}")


async def _nursery(d: Dispatcher, requests: list[DispatchRequest]) -> None:
    async def one(req: DispatchRequest) -> None:
        result = await d.dispatch(req)
        if not result.success:
            raise BenchError(f"library nursery: a dispatch failed: {result.error}")

    async with trio.open_nursery() as nursery:
        for req in requests:
            nursery.start_soon(one, req)


async def _measure(
    ctx: Ctx, d: Dispatcher, bare: Sandbox, conc: int, items: int, name: str
) -> float:
    """Milliseconds for one fan-out of `items` by `name` (a library form, or the floor)."""
    if name == "floor":
        return 1000 * await floor.fanout(bare, items=items, concurrency=conc, latency_ms=LATENCY_MS)
    requests = [DispatchRequest(agent="a0", task=ctx.task("library item")) for _ in range(items)]
    start = trio.current_time()
    await (_as_completed if name == "as_completed" else _nursery)(d, requests)
    return 1000 * (trio.current_time() - start)


async def case_library(ctx: Ctx) -> list[Row]:
    """100 items at concurrency 5 and 20, latency 100 ms: each form / the floor <= 1.05."""
    if not ctx.has("ours"):
        return []
    rows = []
    for conc in (5, 20):
        case = f"library-c{conc}"
        sandbox = Sandbox(ctx.tmp / case / "library", System("library", ()), ctx.run_id)
        bare = floor_sandbox(ctx, case)
        agent = AgentConfig(directory=str(sandbox.root / "projects" / "a0"))
        config = Config(agents={"a0": agent}, settings=Settings(max_concurrency=conc))
        try:
            async with Dispatcher.open(
                config, env=sandbox.env(latency_ms=LATENCY_MS), jobs=JobStore(sandbox.jobs)
            ) as d:
                await _measure(ctx, d, bare, conc, conc, "nursery")  # warm-up
                measure = functools.partial(_measure, ctx, d, bare, conc, ITEMS)
                samples = await alternate([*FORMS, "floor"], ctx.rounds(5, 3), measure)
        finally:
            await reap_strays(ctx.run_id)
        low = median(samples["floor"])
        for form, what in FORMS.items():
            ours = median(samples[form])
            rows.append(
                Row(
                    "library",
                    f"library fan-out, {what}, concurrency {conc}",
                    "ms",
                    ours,
                    floor=low,
                    target=f"<= {TARGET:.2f} x floor",
                    passed=None if ours is None or low is None else ours <= TARGET * low,
                    note=f"latency {LATENCY_MS} ms; ideal {-(-ITEMS // conc) * LATENCY_MS} ms",
                    samples={form: samples[form], "floor": samples["floor"]},
                )
            )
            ratio = (ours or 0) / (low or 1)
            ctx.log(
                f"    {rows[-1].label}: {ours or 0:.0f} ms, floor {low or 0:.0f} ms, {ratio:.3f}"
            )
    return rows
