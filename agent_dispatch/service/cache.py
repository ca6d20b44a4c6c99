"""A small TTL + max-size result cache with FIFO eviction and an injectable clock."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from agent_dispatch.models import DispatchResult


class CacheStats(msgspec.Struct, kw_only=True):
    """The cache's size and counters, as `cache_stats` answers them."""

    size: int
    max_size: int
    hits: int
    misses: int
    evictions: int
    hit_rate: float
    ttl: float


def cache_key(
    *,
    agent: str,
    task: str,
    context: str,
    caller: str,
    goal: str,
    response_format: str,
    agent_snapshot: object,
) -> str:
    """A stable key over everything that changes the answer.

    `agent_snapshot` is the agent's *effective* config (any msgspec-encodable
    value), so editing an agent can never serve an answer made under the old
    settings.
    """
    payload = msgspec.json.encode(
        [agent, task, context, caller, goal, response_format, agent_snapshot]
    )
    return hashlib.sha256(payload).hexdigest()


def is_cacheable(result: DispatchResult) -> bool:
    """Only clean successes are stored: no denials, no budget overrun, real output, and
    not a run the agent says it left unfinished (partial or blocked: asking again should
    run it again)."""
    return (
        result.success
        and result.outcome not in ("partial", "blocked")
        and not result.denied_tools
        and not result.budget_exceeded
        and result.error_type is None
        and bool(result.result)
    )


@dataclass(slots=True)
class _Entry:
    agent: str
    result: DispatchResult
    stored_at: float


class ResultCache:
    """TTL measured from insertion; FIFO eviction once `max_size` entries are held."""

    def __init__(
        self, *, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def configure(self, *, ttl: float, max_size: int) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._evict_to(max_size)

    def get(self, key: str) -> DispatchResult | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at >= self._ttl:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return msgspec.structs.replace(entry.result, cached=True)

    def put(self, key: str, agent: str, result: DispatchResult) -> bool:
        """Store `result` if it is a clean success; returns whether it was stored."""
        if self._max_size <= 0 or self._ttl <= 0 or not is_cacheable(result):
            return False
        self._entries.pop(key, None)  # a re-insert counts as new for FIFO and TTL
        self._evict_to(self._max_size - 1)
        self._entries[key] = _Entry(agent, result, self._clock())
        return True

    def invalidate_agent(self, agent: str) -> int:
        doomed = [k for k, e in self._entries.items() if e.agent == agent]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    def clear(self) -> int:
        n = len(self._entries)
        self._entries.clear()
        return n

    def stats(self) -> CacheStats:
        now = self._clock()
        for k in [k for k, e in self._entries.items() if now - e.stored_at >= self._ttl]:
            del self._entries[k]
        looked_up = self.hits + self.misses
        return CacheStats(
            size=len(self._entries),
            max_size=self._max_size,
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            hit_rate=round(self.hits / looked_up, 4) if looked_up else 0.0,
            ttl=self._ttl,
        )

    def _evict_to(self, size: int) -> None:
        while len(self._entries) > max(size, 0):
            del self._entries[next(iter(self._entries))]
            self.evictions += 1
