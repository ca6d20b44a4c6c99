"""Cases about speed: fan-out, per-call overhead, async waits, server start."""

from __future__ import annotations

import functools
import math

import trio

from benchmarks import floor
from benchmarks.common import (
    BenchError,
    Ctx,
    Row,
    alternate,
    by_name,
    floor_sandbox,
    median,
    medians,
    open_servers,
    parallel_items,
    require_success,
    results_of,
)
from benchmarks.servers import Sandbox, Session, serve, stop_service

# Both servers refuse more than 100 items in one dispatch_parallel at these
# concurrencies; bigger batches go as concurrent calls of at most this many.
PARALLEL_CHUNK = 100


async def run_parallel(ctx: Ctx, session: Session, items: int) -> float:
    """Seconds for `items` dispatches through dispatch_parallel (chunks sent concurrently)."""
    sizes = [min(PARALLEL_CHUNK, items - i) for i in range(0, items, PARALLEL_CHUNK)]

    async def chunk(size: int) -> None:
        _, answer = await session.call(
            "dispatch_parallel", {"dispatches": parallel_items(ctx, size)}
        )
        results = results_of(answer)
        if len(results) != size or not all(r.get("success") for r in results):
            raise BenchError(f"{session.name}: dispatch_parallel had failures: {str(answer)[:300]}")

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for size in sizes:
            nursery.start_soon(chunk, size)
    return trio.current_time() - start


async def case_parallel(ctx: Ctx) -> list[Row]:
    """dispatch_parallel, 20 items, max_concurrency 5, latency 200 ms."""
    items, conc, latency = 20, 5, 200
    ideal = math.ceil(items / conc) * latency
    async with open_servers(ctx, "parallel", max_concurrency=conc, latency_ms=latency) as ss:
        named = by_name(ss)
        bare = floor_sandbox(ctx, "parallel")
        for s in ss:
            await run_parallel(ctx, s, 2)

        async def measure(name: str) -> float:
            if name == "floor":
                return 1000 * await floor.fanout(
                    bare, items=items, concurrency=conc, latency_ms=latency
                )
            return 1000 * await run_parallel(ctx, named[name], items)

        samples = await alternate([*named, "floor"], ctx.rounds(5, 3), measure)
    ours, orig = medians(samples)
    passed = None
    if ours is not None:
        passed = ours <= 1.10 * ideal and (orig is None or ours <= 0.80 * orig)
    return [
        Row(
            "parallel",
            "dispatch_parallel 20 items, concurrency 5, latency 200 ms",
            "ms",
            ours,
            orig,
            floor=median(samples["floor"]),
            target=f"<= {1.10 * ideal:.0f} ms (1.10 x ideal {ideal} ms) and <= 0.80 x original",
            passed=passed,
            samples=samples,
        )
    ]


async def case_fanout(ctx: Ctx) -> list[Row]:
    """Throughput for items x concurrency at latency 100 ms, against the bare-trio floor."""
    latency = 100
    item_counts = (10, 50) if ctx.quick else (10, 50, 200)
    rows = []
    for conc in (1, 5, 20):
        case = f"fanout-c{conc}"
        async with open_servers(ctx, case, max_concurrency=conc, latency_ms=latency) as ss:
            named = by_name(ss)
            bare = floor_sandbox(ctx, case)
            for s in ss:
                await run_parallel(ctx, s, min(conc, 5))
            for items in item_counts:
                measure = functools.partial(_fanout_once, ctx, named, bare, items, conc, latency)
                samples = await alternate([*named, "floor"], ctx.rounds(3, 3), measure)
                ours, orig = medians(samples)
                low = median(samples["floor"])
                rows.append(
                    Row(
                        "fanout",
                        f"fan-out {items} items x concurrency {conc}",
                        "items/s",
                        ours,
                        orig,
                        floor=low,
                        target=">= 0.90 x floor",
                        passed=None if ours is None or low is None else ours >= 0.90 * low,
                        note=f"ideal {_ideal_rate(items, conc, latency):.1f} items/s",
                        samples=samples,
                    )
                )
                ctx.log(f"    {rows[-1].label}: " + _fmt_samples(samples))
    return rows


def _ideal_rate(items: int, conc: int, latency_ms: int) -> float:
    return 1000 * items / (math.ceil(items / conc) * latency_ms)


async def _fanout_once(
    ctx: Ctx,
    named: dict[str, Session],
    bare: Sandbox,
    items: int,
    conc: int,
    latency: int,
    name: str,
) -> float:
    """Items per second for one fan-out by `name` (a server, or the floor)."""
    if name == "floor":
        seconds = await floor.fanout(bare, items=items, concurrency=conc, latency_ms=latency)
    else:
        seconds = await run_parallel(ctx, named[name], items)
    return items / seconds


def _fmt_samples(samples: dict[str, list[float]]) -> str:
    return ", ".join(f"{k} {median(v) or 0:.1f}" for k, v in samples.items())


async def case_overhead(ctx: Ctx) -> list[Row]:
    """One dispatch at latency 0: the server's own cost per call."""
    async with open_servers(ctx, "overhead", max_concurrency=5, latency_ms=0) as ss:
        named = by_name(ss)
        bare = floor_sandbox(ctx, "overhead")

        async def measure(name: str) -> float:
            if name == "floor":
                return 1000 * await floor.fanout(bare, items=1, concurrency=1, latency_ms=0)
            seconds, answer = await named[name].call(
                "dispatch", {"agent": "a0", "task": ctx.task("overhead")}
            )
            require_success(answer, f"{name} dispatch")
            return 1000 * seconds

        for name in named:
            for _ in range(3):
                await measure(name)
        samples = await alternate([*named, "floor"], ctx.rounds(30, 15), measure)
    ours, orig = medians(samples)
    return [
        Row(
            "overhead",
            "one dispatch at latency 0 (pure overhead)",
            "ms",
            ours,
            orig,
            floor=median(samples["floor"]),
            target="<= 0.6 x original",
            passed=None if ours is None or orig is None else ours <= 0.6 * orig,
            samples=samples,
        )
    ]


async def _submit(session: Session, task: str) -> str:
    _, answer = await session.call("dispatch_async", {"agent": "a0", "task": task})
    job_id = answer.get("job_id")
    if not isinstance(job_id, str):
        raise BenchError(f"{session.name}: dispatch_async answered {str(answer)[:300]}")
    return job_id


async def _wait(session: Session, job_id: str) -> None:
    _, answer = await session.call("dispatch_wait", {"job_id": job_id, "timeout_seconds": 60})
    if answer.get("status") != "done":
        raise BenchError(f"{session.name}: dispatch_wait answered {str(answer)[:300]}")


async def case_async_wait(ctx: Ctx) -> list[Row]:
    """dispatch_async then dispatch_wait at latency 200 ms: does the wait wake at once?"""
    latency = 200
    async with open_servers(ctx, "async_wait", max_concurrency=5, latency_ms=latency) as ss:
        named = by_name(ss)
        bare = floor_sandbox(ctx, "async_wait")

        async def measure(name: str) -> float:
            if name == "floor":
                return 1000 * await floor.fanout(bare, items=1, concurrency=1, latency_ms=latency)
            start = trio.current_time()
            await _wait(named[name], await _submit(named[name], ctx.task("async")))
            return 1000 * (trio.current_time() - start)

        for name in named:
            await measure(name)
        samples = await alternate([*named, "floor"], ctx.rounds(9, 5), measure)
    ours, orig = medians(samples)
    return [
        Row(
            "async_wait",
            "dispatch_async + dispatch_wait, latency 200 ms",
            "ms",
            ours,
            orig,
            floor=median(samples["floor"]),
            target=f"<= {latency + 25} ms (latency + 25 ms)",
            passed=None if ours is None else ours <= latency + 25,
            samples=samples,
        )
    ]


async def case_async_many(ctx: Ctx) -> list[Row]:
    """10 dispatch_async (concurrency 5, latency 200 ms), then wait for all of them."""
    jobs, conc, latency = 10, 5, 200
    ideal = math.ceil(jobs / conc) * latency
    async with open_servers(ctx, "async_many", max_concurrency=conc, latency_ms=latency) as ss:
        named = by_name(ss)
        bare = floor_sandbox(ctx, "async_many")

        async def measure(name: str) -> float:
            if name == "floor":
                return 1000 * await floor.fanout(
                    bare, items=jobs, concurrency=conc, latency_ms=latency
                )
            session = named[name]
            start = trio.current_time()
            ids = [await _submit(session, ctx.task("async many")) for _ in range(jobs)]
            if name == "ours":  # one event-driven wait for all of them
                _, answer = await session.call(
                    "dispatch_wait", {"job_ids": ids, "mode": "all", "timeout_seconds": 60}
                )
                if any(j.get("status") != "done" for j in answer.get("jobs", [None])):
                    raise BenchError(f"ours: dispatch_wait answered {str(answer)[:300]}")
            else:  # the original waits for one job_id per call
                for job_id in ids:
                    await _wait(session, job_id)
            return 1000 * (trio.current_time() - start)

        for name in named:
            await _wait(named[name], await _submit(named[name], ctx.task("warm")))
        samples = await alternate([*named, "floor"], ctx.rounds(5, 3), measure)
    ours, orig = medians(samples)
    return [
        Row(
            "async_many",
            "10 async jobs, then wait for all (concurrency 5, latency 200 ms)",
            "ms",
            ours,
            orig,
            floor=median(samples["floor"]),
            target=f"<= {1.15 * ideal:.0f} ms (1.15 x ideal {ideal} ms)",
            passed=None if ours is None else ours <= 1.15 * ideal,
            note="the original has no multi-job wait: one dispatch_wait per job",
            samples=samples,
        )
    ]


async def case_startup(ctx: Ctx) -> list[Row]:
    """Spawn the server, initialize, until tools/list answers; then until a first call does.

    Ours is the front: its service starts with the warm-up spawn and serves every sample."""
    sandboxes = {}
    for system in ctx.systems:
        sandboxes[system.name] = Sandbox(ctx.tmp / "startup" / system.name, system, ctx.run_id)
        sandboxes[system.name].write_config(5)
    first_call: dict[str, list[float]] = {}

    async def measure(name: str) -> float:
        start = trio.current_time()
        async with serve(sandboxes[name], wrap_pid=False) as session:
            listed = trio.current_time() - start
            await session.call("list_agents", {})
            first_call.setdefault(name, []).append(1000 * (trio.current_time() - start))
        return 1000 * listed

    try:
        for name in sandboxes:  # warm the page cache and .pyc files (and start our service)
            await measure(name)
        first_call.clear()
        samples = await alternate(list(sandboxes), ctx.rounds(7, 3), measure)
    finally:
        with trio.CancelScope(shield=True):
            for sandbox in sandboxes.values():
                await stop_service(sandbox)
    ours, orig = medians(samples)
    return [
        Row(
            "startup",
            "server start until tools/list answers",
            "ms",
            ours,
            orig,
            target="<= 0.6 x original",
            passed=None if ours is None or orig is None else ours <= 0.6 * orig,
            samples=samples,
        ),
        Row(
            "startup-call",
            "... until a first tools/call (list_agents) answers",
            "ms",
            *medians(first_call),
            note="informational",
            samples=first_call,
        ),
    ]
