"""Cases about load and lifecycle: queues, job listings, cancellation, stdin, the limit."""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from benchmarks.common import (
    BenchError,
    Ctx,
    Row,
    alternate,
    by_name,
    call_in,
    medians,
    open_servers,
    parallel_items,
    require_success,
)
from benchmarks.events import EventLog
from benchmarks.servers import Session

_STAMPS = ("created_at", "started_at", "completed_at")


# -- 1,000 queued async jobs -----------------------------------------------------------


async def _submit_many(ctx: Ctx, session: Session, count: int) -> None:
    """`count` dispatch_async calls, at most 8 in flight."""
    limiter = trio.CapacityLimiter(8)

    async def one() -> None:
        async with limiter:
            await session.call("dispatch_async", {"agent": "a0", "task": ctx.task("queue")})

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def case_queue(ctx: Ctx) -> list[Row]:
    """1,000 dispatch_async at latency 5 s, concurrency 5: memory, and a submit's latency."""
    total, latency, conc, probes = 1000, 5000, 5, 15
    growth: dict[str, list[float]] = {}
    submit: dict[str, list[float]] = {}
    for system in ctx.systems:  # one at a time: the other's queue must not load the machine
        async with open_servers(
            ctx, "queue", max_concurrency=conc, latency_ms=latency, systems=[system]
        ) as (session,):
            for _ in range(conc):  # fills every slot and warms the submit path
                await session.call("dispatch_async", {"agent": "a0", "task": ctx.task("queue")})
            await trio.sleep(0.5)
            before = session.rss_mb()
            await _submit_many(ctx, session, total - conc - probes)
            times = []
            for _ in range(probes):  # the last ones, timed one by one with the queue full
                seconds, answer = await session.call(
                    "dispatch_async", {"agent": "a0", "task": ctx.task("queue probe")}
                )
                if "job_id" not in answer:
                    raise BenchError(f"{system.name}: dispatch_async answered {str(answer)[:300]}")
                times.append(1000 * seconds)
            await trio.sleep(0.5)
            growth[system.name] = [session.rss_mb() - before]
            submit[system.name] = times
            ctx.log(f"    {system.name}: rss {before:.1f} -> {session.rss_mb():.1f} MiB")
    g_ours, g_orig = medians(growth)
    s_ours, s_orig = medians(submit)
    return [
        Row(
            "queue_rss",
            "1,000 queued async jobs: server RSS growth",
            "MiB",
            g_ours,
            g_orig,
            target="<= 30 MiB",
            passed=None if g_ours is None else g_ours <= 30,
            note="latency 5 s, concurrency 5; one sample each",
            samples=growth,
        ),
        Row(
            "queue_submit",
            "a dispatch_async while 1,000 jobs queue",
            "ms",
            s_ours,
            s_orig,
            target="<= 20 ms",
            passed=None if s_ours is None else s_ours <= 20,
            note=f"median of {probes} submits",
            samples=submit,
        ),
    ]


# -- dispatch_jobs over 10,000 records ---------------------------------------------------


def _stamp_like(value: Any, ts: float) -> Any:
    """`ts` in the same form as the template's value: ISO text or epoch number."""
    if isinstance(value, str):
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, int | float):
        return ts
    return value


def clone_records(template_path: Path, count: int) -> None:
    """`count` more records shaped like the server's own one (same keys, same layout),
    with fresh ids and timestamps one second apart, mtime matching created_at."""
    raw = template_path.read_text()
    template = json.loads(raw)
    indent = 2 if raw.startswith("{\n") else None
    separators = (",", ": ") if indent else (",", ":")
    directory = template_path.parent
    now = time.time() - 10
    for i in range(count):
        job_id = secrets.token_hex(16)
        ts = now - (count - i)
        record = dict(template, id=job_id)
        for key in _STAMPS:
            if key in record:
                record[key] = _stamp_like(record[key], ts)
        path = directory / f"{job_id}.json"
        path.write_text(json.dumps(record, indent=indent, separators=separators))
        os.chmod(path, 0o600)
        os.utime(path, (ts, ts))


async def case_jobs(ctx: Ctx) -> list[Row]:
    """dispatch_jobs (default limit 50) with 10,000 records in the jobs directory."""
    total = 10_000
    async with open_servers(ctx, "jobs", max_concurrency=5, latency_ms=0) as ss:
        named = by_name(ss)
        for s in ss:
            _, answer = await s.call(
                "dispatch", {"agent": "a0", "task": ctx.task("jobs"), "return_ref": True}
            )
            ref = answer.get("ref")
            if not isinstance(ref, str):
                raise BenchError(f"{s.name}: return_ref answered {str(answer)[:300]}")
            template = s.sandbox.jobs / f"{ref}.json"
            await trio.to_thread.run_sync(clone_records, template, total - 1)
            count = sum(1 for n in os.listdir(s.sandbox.jobs) if n.endswith(".json"))
            ctx.log(f"    {s.name}: {count} job records")

        async def listing(name: str, args: dict[str, Any]) -> float:
            seconds, answer = await named[name].call("dispatch_jobs", args)
            if "jobs" not in answer and "items" not in answer:
                raise BenchError(f"{name}: dispatch_jobs answered {str(answer)[:300]}")
            return 1000 * seconds

        for name in named:
            await listing(name, {})
        samples = await alternate(list(named), ctx.rounds(5, 3), lambda n: listing(n, {}))
        full_scan = await alternate(
            list(named), ctx.rounds(3, 1), lambda n: listing(n, {"status": "failed"})
        )
    ours, orig = medians(samples)
    f_ours, f_orig = medians(full_scan)
    return [
        Row(
            "jobs",
            "dispatch_jobs over 10,000 job records",
            "ms",
            ours,
            orig,
            target="<= 0.5 x original",
            passed=None if ours is None or orig is None else ours <= 0.5 * orig,
            note="newest 50, no filter",
            samples=samples,
        ),
        Row(
            "jobs_scan",
            'dispatch_jobs(status="failed") over 10,000 records (no match: full scan)',
            "ms",
            f_ours,
            f_orig,
            note="informational",
            samples=full_scan,
        ),
    ]


# -- cancel, then dispatch again -----------------------------------------------------------


async def case_cancel(ctx: Ctx) -> list[Row]:
    """Concurrency 1, latency 3 s: cancel a running dispatch; when does the next child start?"""
    latency = 3000
    async with open_servers(
        ctx, "cancel", max_concurrency=1, latency_ms=latency, events=True
    ) as ss:
        named = by_name(ss)

        async def after_cancel(name: str, how: str) -> float:
            session = named[name]
            log = session.events
            assert log is not None
            base = len(log.starts)
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    first = trio.CancelScope()
                    if how == "request":
                        args = {"agent": "a0", "task": ctx.task("cancel me")}
                        nursery.start_soon(call_in, first, session, "dispatch", args)
                        await log.wait_starts(base + 1)
                        cancelled_at = trio.current_time()
                        first.cancel()
                    else:
                        _, answer = await session.call(
                            "dispatch_async", {"agent": "a0", "task": ctx.task("cancel me")}
                        )
                        await log.wait_starts(base + 1)
                        cancelled_at = trio.current_time()
                        await session.call("dispatch_cancel", {"job_id": answer["job_id"]})
                    second = trio.CancelScope()
                    args = {"agent": "a0", "task": ctx.task("after cancel")}
                    nursery.start_soon(call_in, second, session, "dispatch", args)
                    started = await log.wait_starts(base + 2)
                    second.cancel()
            with trio.move_on_after(2 * latency / 1000 + 5):
                await log.wait_idle()
            return 1000 * (started - cancelled_at)

        rounds = ctx.rounds(3, 2)
        request = await alternate(list(named), rounds, lambda n: after_cancel(n, "request"))
        job = await alternate(list(named), rounds, lambda n: after_cancel(n, "job"))
    ours, orig = medians(request)
    j_ours, j_orig = medians(job)
    return [
        Row(
            "cancel",
            "cancel a running dispatch (MCP request), next child starts after",
            "ms",
            ours,
            orig,
            target="<= 100 ms",
            passed=None if ours is None else ours <= 100,
            note="concurrency 1, latency 3 s",
            samples=request,
        ),
        Row(
            "cancel_job",
            "dispatch_cancel a running async job, next child starts after",
            "ms",
            j_ours,
            j_orig,
            note="informational; measured from sending dispatch_cancel",
            samples=job,
        ),
    ]


# -- a child that waits on an open stdin pipe ------------------------------------------------


async def case_stdin(ctx: Ctx) -> list[Row]:
    """The fake waits up to 3 s when its stdin is a pipe, as the real CLI does."""
    async with open_servers(ctx, "stdin", max_concurrency=5, latency_ms=0, stdin_wait=True) as ss:
        named = by_name(ss)

        async def measure(name: str) -> float:
            seconds, answer = await named[name].call(
                "dispatch", {"agent": "a0", "task": ctx.task("stdin")}
            )
            require_success(answer, f"{name} dispatch")
            return 1000 * seconds

        samples = await alternate(list(named), ctx.rounds(3, 2), measure)
    ours, orig = medians(samples)
    return [
        Row(
            "stdin",
            "dispatch whose child waits 3 s on a stdin pipe (latency 0)",
            "ms",
            ours,
            orig,
            target="< 1000 ms (no 3 s stdin wait)",
            passed=None if ours is None else ours < 1000,
            samples=samples,
        )
    ]


# -- peak live children --------------------------------------------------------------------


async def _mixed_load(ctx: Ctx, session: Session, log: EventLog) -> float:
    log.reset_peak()
    job_ids: list[str] = []

    async def submit_jobs() -> None:
        for _ in range(10):
            _, answer = await session.call(
                "dispatch_async", {"agent": "a0", "task": ctx.task("mixed async")}
            )
            job_ids.append(answer["job_id"])

    async def sync_one() -> None:
        _, answer = await session.call("dispatch", {"agent": "a0", "task": ctx.task("mixed")})
        require_success(answer, f"{session.name} dispatch")

    async def parallel() -> None:
        await session.call("dispatch_parallel", {"dispatches": parallel_items(ctx, 10)})

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_jobs)
            nursery.start_soon(parallel)
            for _ in range(5):
                nursery.start_soon(sync_one)
        for job_id in job_ids:
            await session.call("dispatch_wait", {"job_id": job_id, "timeout_seconds": 60})
        await log.wait_idle()
    return float(log.peak)


async def case_peak(ctx: Ctx) -> list[Row]:
    """5 sync + 10 async + a 10-item parallel at once; the most children ever alive."""
    async with open_servers(ctx, "peak", max_concurrency=5, latency_ms=100, events=True) as ss:
        named = by_name(ss)

        async def measure(name: str) -> float:
            log = named[name].events
            assert log is not None
            return await _mixed_load(ctx, named[name], log)

        samples = await alternate(list(named), ctx.rounds(3, 1), measure)
    ours = max(samples["ours"]) if samples.get("ours") else None
    orig = max(samples["original"]) if samples.get("original") else None
    return [
        Row(
            "peak",
            "peak live children, mixed sync + async + parallel, max_concurrency 5",
            "children",
            ours,
            orig,
            target="never above 5",
            passed=None if ours is None else ours <= 5,
            note="maximum over rounds, not median",
            samples=samples,
        )
    ]
