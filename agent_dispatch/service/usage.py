"""What each agent typically costs and takes, from the usage journal (issue #15).

`figures(records)` is the arithmetic, shared by `agent-dispatch stats` (over the whole
journal) and `UsageBook`, the summary a Dispatcher keeps for `list_agents`,
`inspect_agent` and the timeout hint: its own dispatches go in as they end, other
processes' come in from the journal's appended bytes when a listing asks
(`storage.usage.Follower`), and only the last `WINDOW` runs of each agent are kept,
so the figures are recent ones and the memory is bounded.

Durations are our wall time for successful runs that ran a child (cache hits and
failures are left out: a timeout's duration is its timeout); costs are every run
that ran a child and reported one. Percentiles are nearest-rank.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import trio

from agent_dispatch import offload
from agent_dispatch.models import DispatchRequest, DispatchResult
from agent_dispatch.storage import usage

log = logging.getLogger(__name__)

WINDOW = 500  # runs kept per agent by a UsageBook
OUTCOMES = ("done", "partial", "blocked", "unknown")


class AgentUsage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An agent's typical figures (over its recent runs, in `list_agents`)."""

    runs: int
    success_rate: float
    p50_duration_s: float | None = None
    p90_duration_s: float | None = None
    p50_cost_usd: float | None = None
    p90_cost_usd: float | None = None
    last_used: str | None = None


class AgentFigures(msgspec.Struct, kw_only=True):
    """One agent's figures in full, as `agent-dispatch stats` shows them."""

    agent: str
    runs: int
    successes: int
    success_rate: float
    cache_hits: int
    outcomes: dict[str, int]
    errors: dict[str, int]
    p50_duration_s: float | None
    p90_duration_s: float | None
    p50_cost_usd: float | None
    p90_cost_usd: float | None
    total_cost_usd: float
    last_used: str | None


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank `q` percentile (0 < q <= 100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def agent_figures(agent: str, records: Iterable[usage.UsageRecord]) -> AgentFigures:
    """The figures of `agent` over `records` (all of them are taken to be its own)."""
    runs = successes = hits = 0
    durations: list[float] = []
    costs: list[float] = []
    outcomes: dict[str, int] = {}
    errors: dict[str, int] = {}
    last: str | None = None
    for record in records:
        runs += 1
        successes += record.success
        hits += record.cached
        if record.outcome:
            outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
        if record.error_type:
            errors[record.error_type] = errors.get(record.error_type, 0) + 1
        if not record.cached:
            if record.success:
                durations.append(record.duration_s)
            if record.cost_usd is not None:
                costs.append(record.cost_usd)
        if last is None or record.ended_at > last:
            last = record.ended_at
    return AgentFigures(
        agent=agent,
        runs=runs,
        successes=successes,
        success_rate=round(successes / runs, 4) if runs else 0.0,
        cache_hits=hits,
        outcomes=outcomes,
        errors=errors,
        p50_duration_s=_round(percentile(durations, 50), 2),
        p90_duration_s=_round(percentile(durations, 90), 2),
        p50_cost_usd=_round(percentile(costs, 50), 6),
        p90_cost_usd=_round(percentile(costs, 90), 6),
        total_cost_usd=round(float(sum(costs)), 6),
        last_used=last,
    )


def figures(records: Iterable[usage.UsageRecord]) -> dict[str, AgentFigures]:
    """Per agent (sorted by name), the figures of its records."""
    by_agent: dict[str, list[usage.UsageRecord]] = {}
    for record in records:
        by_agent.setdefault(record.agent, []).append(record)
    return {name: agent_figures(name, by_agent[name]) for name in sorted(by_agent)}


def brief(full: AgentFigures) -> AgentUsage:
    return AgentUsage(
        runs=full.runs,
        success_rate=full.success_rate,
        p50_duration_s=full.p50_duration_s,
        p90_duration_s=full.p90_duration_s,
        p50_cost_usd=full.p50_cost_usd,
        p90_cost_usd=full.p90_cost_usd,
        last_used=full.last_used,
    )


class UsageBook:
    """The journal of one setup, appended to, and summarised per agent over recent runs.

    `record` appends (blocking IO: call it from a worker thread) and remembers the
    record; `refresh` reads what other processes appended since the last look (blocking
    too); `usage` and `typical_seconds` read memory only. A journal that cannot be
    written or read is logged and skipped: it never fails a dispatch or a listing.
    Thread-safe: dispatches end (and listings refresh) in several worker threads at
    once while the event loop reads; one lock orders the reads of the file, another
    guards the figures for the moment they change or are copied.
    """

    def __init__(self, path: Path, *, window: int = WINDOW) -> None:
        self.path = path
        self.window = window
        self._follower = usage.Follower(path)
        self._runs: dict[str, deque[usage.UsageRecord]] = {}
        self._reading = threading.Lock()  # one Follower.poll at a time
        self._figures = threading.Lock()  # _runs, changed or copied

    def _remember(self, records: Iterable[usage.UsageRecord], *, restart: bool) -> None:
        with self._figures:
            if restart:
                self._runs.clear()
            for record in records:
                runs = self._runs.get(record.agent)
                if runs is None:
                    runs = self._runs[record.agent] = deque(maxlen=self.window)
                runs.append(record)

    def _recent(self, agent: str) -> list[usage.UsageRecord]:
        with self._figures:
            return list(self._runs.get(agent, ()))

    def record(self, record: usage.UsageRecord) -> None:
        try:
            usage.append(self.path, record)
        except OSError as exc:
            log.warning("usage journal %s: could not append: %s", self.path, exc)
        self.refresh()  # what others appended first, then ours is in the file too

    def refresh(self) -> None:
        with self._reading:
            try:
                scan, restart = self._follower.poll()
            except OSError as exc:
                log.warning("usage journal %s: could not read: %s", self.path, exc)
                return
            self._remember(scan.records, restart=restart)
        if scan.skipped:
            log.warning("usage journal %s: skipped %d unreadable line(s)", self.path, scan.skipped)

    def usage(self, agent: str) -> AgentUsage | None:
        runs = self._recent(agent)
        return brief(agent_figures(agent, runs)) if runs else None

    def typical_seconds(self, agent: str) -> float | None:
        """The p90 of the agent's recent successful durations (None: no such run yet)."""
        runs = self._recent(agent)
        return percentile([r.duration_s for r in runs if r.success and not r.cached], 90)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def usage_record(
    tool: str,
    req: DispatchRequest,
    result: DispatchResult,
    started_at: str,
    duration_s: float,
    *,
    cached: bool,
    job_id: str | None = None,
) -> usage.UsageRecord:
    """The journal's line for a dispatch that ended with `result`. A cache hit ran no
    child and billed nothing: no cost, no turns (the result keeps the original's)."""
    return usage.UsageRecord(
        agent=req.agent,
        tool=tool,
        success=result.success,
        started_at=started_at,
        ended_at=now_iso(),
        duration_s=round(max(0.0, duration_s), 3),
        outcome=result.outcome,
        error_type=result.error_type,
        cost_usd=None if cached else result.cost_usd,
        turns=None if cached else result.num_turns,
        session_id=result.session_id,
        caller=req.caller or None,
        cached=cached,
        job_id=job_id,
    )


async def journalled(
    book: UsageBook | None,
    execute: Callable[[], Awaitable[tuple[DispatchResult, bool]]],
    tool: str,
    req: DispatchRequest,
    job_id: str | None = None,
) -> DispatchResult:
    """Run `execute` (a result and whether the cache gave it); journal its end in `book`.
    A run that is cancelled has no end to journal."""
    if book is None:
        result, _ = await execute()
        return result
    started, clock = now_iso(), trio.current_time()
    result, cached = await execute()
    duration = trio.current_time() - clock
    record = usage_record(tool, req, result, started, duration, cached=cached, job_id=job_id)
    await offload.run_sync(book.record, record)
    return result
