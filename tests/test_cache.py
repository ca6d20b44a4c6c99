"""ResultCache: TTL from insertion, FIFO eviction, counters, per-agent invalidation."""

from __future__ import annotations

from agent_dispatch.models import DispatchResult
from agent_dispatch.service.cache import ResultCache, cache_key, is_cacheable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ok(agent: str = "a", text: str = "answer") -> DispatchResult:
    return DispatchResult(agent=agent, success=True, result=text, session_id="s")


def key(task: str, agent: str = "a", snapshot: object = None) -> str:
    return cache_key(
        agent=agent,
        task=task,
        context="",
        caller="",
        goal="",
        response_format="",
        agent_snapshot=snapshot,
    )


def test_miss_then_hit_marks_cached_and_counts() -> None:
    cache = ResultCache(ttl=60, max_size=10, clock=FakeClock())
    assert cache.get(key("t")) is None
    assert cache.put(key("t"), "a", ok())
    hit = cache.get(key("t"))
    assert hit is not None and hit.cached is True and hit.result == "answer"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 1, 1)
    assert stats.hit_rate == 0.5


def test_entry_expires_at_ttl_from_insertion() -> None:
    clock = FakeClock()
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    cache.put(key("t"), "a", ok())
    clock.now += 59.9
    assert cache.get(key("t")) is not None
    clock.now += 0.1
    assert cache.get(key("t")) is None
    assert cache.stats().size == 0


def test_finished_and_unknown_outcomes_are_stored() -> None:
    for outcome in ("done", "unknown", None):
        result = DispatchResult(agent="a", success=True, result="r", outcome=outcome)
        assert is_cacheable(result), outcome


def test_fifo_eviction_at_max_size_counts_evictions() -> None:
    cache = ResultCache(ttl=60, max_size=2, clock=FakeClock())
    for task in ("one", "two"):
        cache.put(key(task), "a", ok())
    cache.get(key("one"))  # a hit does not refresh FIFO order
    cache.put(key("three"), "a", ok())
    assert cache.get(key("one")) is None
    assert cache.get(key("two")) is not None
    assert cache.get(key("three")) is not None
    assert cache.stats().evictions == 1


def test_only_clean_successes_are_stored() -> None:
    cache = ResultCache(ttl=60, max_size=10, clock=FakeClock())
    dirty = [
        DispatchResult(agent="a", success=False, error="x", error_type="cli_error"),
        DispatchResult(agent="a", success=True, result="r", denied_tools=["Bash"]),
        DispatchResult(agent="a", success=True, result="r", budget_exceeded=True),
        DispatchResult(agent="a", success=True, result=""),
        DispatchResult(agent="a", success=True, result="half", outcome="partial"),
        DispatchResult(agent="a", success=True, result="stuck", outcome="blocked"),
    ]
    for i, result in enumerate(dirty):
        assert not is_cacheable(result)
        assert not cache.put(key(str(i)), "a", result)
    assert cache.stats().size == 0


def test_invalidate_agent_drops_only_that_agent() -> None:
    cache = ResultCache(ttl=60, max_size=10, clock=FakeClock())
    cache.put(key("t", "a"), "a", ok("a"))
    cache.put(key("t", "b"), "b", ok("b"))
    assert cache.invalidate_agent("a") == 1
    assert cache.get(key("t", "a")) is None
    assert cache.get(key("t", "b")) is not None


def test_key_changes_with_agent_snapshot_and_every_field() -> None:
    base = dict(
        agent="a",
        task="t",
        context="",
        caller="",
        goal="",
        response_format="",
        agent_snapshot={"model": None},
    )
    variants = [dict(base, **{f: "x"}) for f in ("task", "context", "caller", "goal")]
    variants.append(dict(base, response_format="json"))
    variants.append(dict(base, agent_snapshot={"model": "opus"}))
    keys = {cache_key(**v) for v in variants}  # type: ignore[arg-type]
    assert len(keys) == len(variants)
    assert cache_key(**base) not in keys  # type: ignore[arg-type]


def test_configure_shrinks_and_clear_empties() -> None:
    cache = ResultCache(ttl=60, max_size=5, clock=FakeClock())
    for task in "abcde":
        cache.put(key(task), "a", ok())
    cache.configure(ttl=60, max_size=2)
    assert cache.stats().size == 2
    assert cache.clear() == 2
    assert cache.stats().size == 0


def test_zero_ttl_or_size_disables_storage() -> None:
    assert not ResultCache(ttl=0, max_size=5).put(key("t"), "a", ok())
    assert not ResultCache(ttl=60, max_size=0).put(key("t"), "a", ok())
