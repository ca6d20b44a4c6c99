"""Dispatcher: the one limiter, the cache, recursion, timeouts, groups, fan-out, dialogue."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from agent_dispatch.errors import InvalidArgument, UnknownAgent, UnknownGroup
from agent_dispatch.models import Config, DispatchRequest, ProgressEvent
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore, parse_config
from agent_dispatch.storage.jobs import JobStore
from tests.fake_claude import fake_env, pid_alive, read_runs, wait_dead, wait_started


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_config(tmp: Path, *, settings: str = "", agents: str = "") -> Config:
    for name in ("backend", "web"):
        (tmp / name).mkdir(exist_ok=True)
    text = f"""
agents:
  backend: {{directory: {tmp / "backend"}, timeout: 2}}
  web: {{directory: {tmp / "web"}}}
{agents}
groups:
  team:
    description: The product team
    shared_context: We ship on Fridays.
    members: [{{agent: backend, use_for: APIs}}, {{agent: web}}]
settings:
  max_concurrency: 2
{settings}
"""
    return parse_config(text.encode())


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    path.mkdir()
    return path


@pytest.fixture
async def dispatcher(tmp_path: Path, log_dir: Path) -> AsyncIterator[Dispatcher]:
    async with Dispatcher.open(
        make_config(tmp_path), env=fake_env(log_dir), jobs=JobStore(tmp_path / "jobs")
    ) as d:
        yield d


def req(task: str, agent: str = "backend", **kw: Any) -> DispatchRequest:
    return DispatchRequest(agent=agent, task=task, **kw)


def peak_overlap(runs: list[dict[str, Any]]) -> int:
    """Most children alive at once, from each run's recorded start and end."""
    edges = []
    for run in runs:
        assert run["end"] is not None, run
        edges += [(run["start"], 1), (run["end"]["time"], -1)]
    live = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        live += delta
        peak = max(peak, live)
    return peak


async def test_dispatch_returns_the_answer_and_runs_in_the_agent_directory(
    dispatcher: Dispatcher, log_dir: Path, tmp_path: Path
) -> None:
    result = await dispatcher.dispatch(req("hello there", caller="infra", goal="greet"))
    assert result.success and result.result == "fake reply to: ## Goal"
    (run,) = read_runs(log_dir)
    assert run["cwd"] == str(tmp_path / "backend")
    assert run["stdin"] == "devnull"
    assert run["depth"] == "1"
    assert "## Dispatched by\ninfra" in run["prompt"] and "## Task\nhello there" in run["prompt"]
    assert result.session_id == run["argv"][run["argv"].index("--session-id") + 1]


async def test_a_task_too_long_for_one_argument_goes_to_the_child_on_stdin(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    task = "@fake reply=got it all\n" + "y" * 200_000 + "\nTHE END"  # Linux: 128 KiB per arg
    result = await dispatcher.dispatch(req(task))
    assert result.success and result.result == "got it all", result
    (run,) = read_runs(log_dir)
    assert run["stdin"] == "pipe" and run["stdin_bytes"] > 200_000
    assert "--" not in run["argv"] and run["prompt"].endswith("THE END")
    streamed = await dispatcher.dispatch_stream(req(task + " again"), _ignore)
    assert streamed.success and streamed.result == "got it all"


async def _ignore(event: ProgressEvent) -> None:
    pass


async def test_a_command_line_the_os_refuses_is_named_not_blamed_on_claude(
    tmp_path: Path, log_dir: Path
) -> None:
    long_instructions = "i" * 200_000  # these stay an argument (--append-system-prompt)
    cfg = make_config(
        tmp_path,
        agents=f"  big: {{directory: {tmp_path / 'web'}, instructions: {long_instructions}}}",
    )
    async with Dispatcher.open(cfg, env=fake_env(log_dir), jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("hello", agent="big"))
    assert result.success is False and result.error_type == "cli_error"
    assert "too long for the OS: one argument is 200023 bytes" in (result.error or "")
    assert result.hint is not None and "instructions" in result.hint
    assert read_runs(log_dir) == []


async def test_two_slots_bound_every_path_at_once(dispatcher: Dispatcher, log_dir: Path) -> None:
    events: list[ProgressEvent] = []

    async def collect(event: ProgressEvent) -> None:
        events.append(event)

    slow = "@fake sleep=0.3"
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(dispatcher.dispatch, req(f"d{i}\n{slow}"))
            nursery.start_soon(dispatcher.dispatch_stream, req(f"s{i}\n{slow}"), collect)
        nursery.start_soon(
            dispatcher.dispatch_parallel,
            [req(f"p{i}\n{slow}", agent="web") for i in range(3)],
        )
        nursery.start_soon(dispatcher.dispatch_session, req(f"x\n{slow}"))
    runs = read_runs(log_dir)
    assert len(runs) == 10
    assert peak_overlap(runs) == 2  # never more than the limit, and the limit is used
    assert dispatcher.limiter.borrowed_tokens == 0
    assert any(e.kind == "text" for e in events)


async def test_cache_hit_miss_ttl_and_eviction_with_injected_clock(
    tmp_path: Path, log_dir: Path
) -> None:
    clock = Clock()
    cfg = make_config(tmp_path, settings="  cache: {ttl: 60, max_size: 1}")
    async with Dispatcher.open(
        cfg, env=fake_env(log_dir), clock=clock, jobs=JobStore(tmp_path / "jobs")
    ) as d:
        first = await d.dispatch(req("same"))
        again = await d.dispatch(req("same"))
        assert again.cached is True and again.result == first.result
        assert len(read_runs(log_dir)) == 1
        clock.now = 60.0  # TTL is measured from insertion
        await d.dispatch(req("same"))
        assert len(read_runs(log_dir)) == 2
        await d.dispatch(req("other"))  # max_size 1: evicts "same"
        await d.dispatch(req("same"))
        assert len(read_runs(log_dir)) == 4
        stats = d.cache.stats()
        assert (stats["hits"], stats["misses"], stats["evictions"]) == (1, 4, 2)


async def test_sessions_and_streams_are_never_cached(dispatcher: Dispatcher, log_dir: Path) -> None:
    await dispatcher.dispatch_session(req("t"))
    await dispatcher.dispatch_session(req("t"))
    await dispatcher.dispatch_stream(req("t"))
    assert len(read_runs(log_dir)) == 3


async def test_failures_and_denials_are_not_cached(dispatcher: Dispatcher, log_dir: Path) -> None:
    for _ in range(2):
        denied = await dispatcher.dispatch(req("@fake deny=Bash\nwrite it"))
        assert denied.success and denied.denied_tools == ["Bash"]
        failed = await dispatcher.dispatch(req("@fake api_error=500\nboom"))
        assert not failed.success
    assert len(read_runs(log_dir)) == 4


async def test_recursion_limit_spawns_nothing(tmp_path: Path, log_dir: Path) -> None:
    env = fake_env(log_dir, AGENT_DISPATCH_DEPTH="3")
    async with Dispatcher.open(make_config(tmp_path), env=env, jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("nested"))
    assert result.error_type == "recursion" and not result.success
    assert read_runs(log_dir) == []


async def test_child_gets_depth_plus_one(tmp_path: Path, log_dir: Path) -> None:
    parent = {"CLAUDECODE": "1", "CLAUDE_CODE_ENTRYPOINT": "cli", "CLAUDE_CODE_SSE_PORT": "41234"}
    env = fake_env(log_dir, base={**os.environ, **parent}, AGENT_DISPATCH_DEPTH="1")
    async with Dispatcher.open(make_config(tmp_path), env=env, jobs=JobStore(tmp_path / "j")) as d:
        assert (await d.dispatch(req("nested"))).success
    (run,) = read_runs(log_dir)
    assert run["depth"] == "2"
    assert {name: run["env"][name] for name in parent} == dict.fromkeys(parent)


async def test_agent_timeout_kills_the_group_and_returns_a_resumable_session(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    with trio.fail_after(10):
        result = await dispatcher.dispatch(req("@fake grandchild=30\n@fake sleep=30\nslow"))
    assert result.error_type == "timeout" and not result.success
    (run,) = read_runs(log_dir)
    assert result.session_id == run["argv"][run["argv"].index("--session-id") + 1]
    assert "dispatch_session" in (result.hint or "")
    with trio.fail_after(5):
        await wait_dead(run["pid"], *run["grandchildren"])


async def test_a_result_followed_by_a_hang_until_the_deadline_is_a_success_not_a_timeout(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    # backend's own timeout is 2 s, shorter than the grace a finished leader gets to exit
    with trio.fail_after(10):
        result = await dispatcher.dispatch(req("@fake reply=all done\n@fake hang_after_result"))
    assert result.success is True and result.result == "all done"
    assert result.hint == (
        "The result was complete before the deadline (2s); claude did not exit after "
        "printing it, so the finished process was stopped."
    )
    (run,) = read_runs(log_dir)
    with trio.fail_after(5):
        await wait_dead(run["pid"])


async def test_cancelling_the_caller_kills_the_child_and_frees_the_slot(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dispatcher.dispatch, req("@fake grandchild=30\n@fake sleep=30\nx"))
            (run,) = await wait_started(log_dir)
            nursery.cancel_scope.cancel()
        assert not pid_alive(run["pid"])
        await wait_dead(*run["grandchildren"])
    assert dispatcher.limiter.borrowed_tokens == 0


async def test_timeout_seconds_is_clamped_and_bad_values_rejected(dispatcher: Dispatcher) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="timeout_seconds"):
            await dispatcher.dispatch(req("t", timeout_seconds=bad))
    # 1 s clamps up to 10 s: a 3 s child finishes instead of timing out.
    result = await dispatcher.dispatch(req("@fake sleep=3\nt", agent="web", timeout_seconds=1))
    assert result.success


async def test_unknown_agent_bad_name_and_group_errors(dispatcher: Dispatcher) -> None:
    with pytest.raises(UnknownAgent):
        await dispatcher.dispatch(req("t", agent="nobody"))
    with pytest.raises(InvalidArgument, match="invalid agent name"):
        await dispatcher.dispatch(req("t", agent="backend\n"))
    with pytest.raises(UnknownGroup):
        await dispatcher.dispatch(req("t", group="nope"))
    with pytest.raises(InvalidArgument, match="session_id"):
        await dispatcher.dispatch_session(req("t", session_id="--resume"))


async def test_group_context_is_folded_into_the_prompt(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    await dispatcher.dispatch(req("build it", group="team", context="extra"))
    (run,) = read_runs(log_dir)
    prompt = run["prompt"]
    assert "The product team" in prompt and "We ship on Fridays." in prompt
    assert "Your role in this group: APIs" in prompt
    assert prompt.index("extra") < prompt.index("## Task")


async def test_missing_directory_and_missing_claude_are_not_found(
    tmp_path: Path, log_dir: Path
) -> None:
    cfg = make_config(tmp_path)
    env = fake_env(log_dir, PATH="/nonexistent")
    async with Dispatcher.open(cfg, env=env, jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("t"))
        assert result.error_type == "not_found" and "claude" in (result.error or "")
    (tmp_path / "web").rmdir()
    async with Dispatcher.open(cfg, env=fake_env(log_dir), jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("t", agent="web"))
        assert result.error_type == "not_found" and "directory" in (result.error or "")
    assert read_runs(log_dir) == []


async def test_parallel_validates_everything_before_spawning(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    batch = [req("fine"), req("t", agent="ghost")]
    with pytest.raises(UnknownAgent, match=r"dispatches\[1\]"):
        await dispatcher.dispatch_parallel(batch)
    assert read_runs(log_dir) == []


async def test_a_refused_field_is_named_once_and_an_item_by_its_place(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    with pytest.raises(InvalidArgument) as single:
        await dispatcher.dispatch_session(req("t", session_id="-x"))
    assert single.value.message == "session_id: must not start with '-' (got '-x')"
    with pytest.raises(InvalidArgument) as item:
        await dispatcher.dispatch_parallel([req("fine"), req("t", session_id="-x")])
    assert item.value.message == "dispatches[1].session_id: must not start with '-' (got '-x')"
    with pytest.raises(InvalidArgument) as timeout:
        await dispatcher.dispatch_parallel([req("t", timeout_seconds=-5)])
    assert timeout.value.message == "dispatches[0].timeout_seconds: must not be negative, got -5"
    assert read_runs(log_dir) == []


async def test_parallel_keeps_input_order_and_aggregates(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    batch = [req("@fake sleep=0.3\nfirst"), req("second", agent="web"), req("third")]
    outcome = await dispatcher.dispatch_parallel(batch, aggregate="web")
    assert [r.result for r in outcome.results] == [
        "fake reply to: first",
        "fake reply to: second",
        "fake reply to: third",
    ]
    assert outcome.aggregated is not None and outcome.aggregated.success
    aggregate_run = read_runs(log_dir)[-1]
    assert "fake reply to: second" in aggregate_run["prompt"]


async def test_dialogue_stops_at_resolved_and_resumes_sessions(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    topic = "agree on an API\n@fake reply=settled [RESOLVED]"
    result = await dispatcher.dispatch_dialogue(
        requester="backend", responder="web", topic=topic, max_rounds=3
    )
    assert result.resolved and result.rounds == 1
    assert [t.role for t in result.conversation] == ["requester", "responder"]
    assert result.final_answer == "settled"


async def test_dialogue_surfaces_a_failed_turn(dispatcher: Dispatcher) -> None:
    topic = "x\n@fake api_error=500"
    result = await dispatcher.dispatch_dialogue(requester="backend", responder="web", topic=topic)
    assert not result.resolved and result.error and "requester backend failed" in result.error
    assert result.conversation[0].success is False


async def test_config_change_resizes_the_limiter_and_drops_the_agents_cache(
    tmp_path: Path, log_dir: Path
) -> None:
    path = tmp_path / "agents.yaml"
    cfg = make_config(tmp_path)
    path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(cfg)))
    store = ConfigStore(path)
    async with Dispatcher.open(store, env=fake_env(log_dir), jobs=JobStore(tmp_path / "j")) as d:
        await d.dispatch(req("t"))
        assert d.cache.stats()["size"] == 1
        store.update(
            lambda c: msgspec.structs.replace(
                c,
                settings=msgspec.structs.replace(c.settings, max_concurrency=4),
                agents={
                    **c.agents,
                    "backend": msgspec.structs.replace(c.agents["backend"], model="opus"),
                },
            )
        )
        d.config()
        assert d.limiter.total_tokens == 4
        assert d.cache.stats()["size"] == 0


async def test_a_missing_claude_names_the_setting_that_named_it(
    tmp_path: Path, log_dir: Path
) -> None:
    missing = str(tmp_path / "nowhere" / "claude")
    env = fake_env(log_dir, AGENT_DISPATCH_CLAUDE=missing)
    async with Dispatcher.open(make_config(tmp_path), env=env, jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("hello"))
    assert result.error_type == "not_found"
    assert result.error == f"claude executable not found (AGENT_DISPATCH_CLAUDE={missing!r})"
    assert result.hint is not None and "AGENT_DISPATCH_CLAUDE" in result.hint
    assert "npm install" not in result.hint
