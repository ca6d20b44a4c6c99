"""Dispatcher: the one limiter, the cache, recursion, timeouts, groups, fan-out, dialogue.

The service runs on the ScriptedRunner here (no child processes, `autojump_clock`
where time matters) and the tests assert on the RunSpecs it handed the runner;
what only a real child shows is in test_claude_runner.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from agent_dispatch.claude.invocation import STATUS_FOOTER
from agent_dispatch.errors import InvalidArgument, UnknownAgent, UnknownGroup
from agent_dispatch.models import DispatchRequest, ProgressEvent
from agent_dispatch.runtime.claude_runner import ClaudeRunner
from agent_dispatch.runtime.runner import (
    ClaudeNotFound,
    CommandTooLong,
    CouldNotStart,
    DirectoryMissing,
    StartFailed,
)
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.policy import TOOLS
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config

ENV = {"PATH": "/usr/bin", "HOME": "/home/someone"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
async def dispatcher(tmp_path: Path, runner: ScriptedRunner) -> AsyncIterator[Dispatcher]:
    async with Dispatcher.open(
        make_config(tmp_path), env=ENV, jobs=JobStore(tmp_path / "jobs"), runner=runner, cache=True
    ) as d:
        yield d


def req(task: str, agent: str = "backend", **kw: Any) -> DispatchRequest:
    return DispatchRequest(agent=agent, task=task, **kw)


async def test_a_dispatch_hands_the_runner_the_agent_directory_prompt_env_and_timeout(
    dispatcher: Dispatcher, runner: ScriptedRunner, tmp_path: Path
) -> None:
    runner.on(Script(reply="hi"))
    result = await dispatcher.dispatch(req("hello there", caller="infra", goal="greet"))
    assert result.success and result.result == "hi"
    (call,) = runner.calls
    spec = call.spec
    assert spec.agent == "backend" and spec.directory == str(tmp_path / "backend")
    assert spec.timeout == 2 and spec.claude_path is None
    assert spec.env == {**ENV, "AGENT_DISPATCH_DEPTH": "1"}
    inv = spec.invocation
    assert "## Dispatched by\ninfra" in inv.prompt and "## Task\nhello there" in inv.prompt
    assert not inv.resume and not inv.stream
    assert result.session_id == inv.session_id


async def test_the_child_env_drops_the_parent_session_and_adds_one_to_the_depth(
    tmp_path: Path, runner: ScriptedRunner
) -> None:
    parent = {"CLAUDECODE": "1", "CLAUDE_CODE_ENTRYPOINT": "cli", "CLAUDE_CODE_SSE_PORT": "41234"}
    env = {**ENV, **parent, "AGENT_DISPATCH_DEPTH": "1"}
    cfg = make_config(tmp_path)
    async with Dispatcher.open(cfg, env=env, jobs=JobStore(tmp_path / "j"), runner=runner) as d:
        assert (await d.dispatch(req("nested"))).success
    (call,) = runner.calls
    assert call.spec.env == {**ENV, "AGENT_DISPATCH_DEPTH": "2"}


async def test_two_slots_bound_every_path_at_once(
    dispatcher: Dispatcher, runner: ScriptedRunner, autojump_clock: trio.testing.MockClock
) -> None:
    runner.default = Script(delay=0.3, events=[ProgressEvent("text", "working")])
    events: list[ProgressEvent] = []

    async def collect(event: ProgressEvent) -> None:
        events.append(event)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(dispatcher.dispatch, req(f"d{i}"))
            nursery.start_soon(dispatcher.dispatch_stream, req(f"s{i}"), collect)
        nursery.start_soon(
            dispatcher.dispatch_parallel, [req(f"p{i}", agent="web") for i in range(3)]
        )
        nursery.start_soon(dispatcher.dispatch_session, req("x"))
    assert len(runner.calls) == 10
    assert runner.peak == 2  # never more than the limit, and the limit is used
    assert dispatcher.limiter.borrowed_tokens == 0
    assert [e.message for e in events] == ["working"] * 3
    streams = [c.spec.invocation.stream for c in runner.calls]
    assert streams.count(True) == 3


async def test_every_dispatch_path_runs_through_the_given_runner(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.on(Script(reply="done [RESOLVED]"), agent="web", prompt="agree")
    await dispatcher.dispatch(req("one"))
    await dispatcher.dispatch_session(req("two"))
    await dispatcher.dispatch_stream(req("three"))
    await dispatcher.dispatch_parallel([req("four")], aggregate="web")
    await dispatcher.dispatch_dialogue(requester="backend", responder="web", topic="agree")
    job = await dispatcher.dispatch_async(req("six"))
    with trio.fail_after(5):
        jobs = await dispatcher.wait([job.id])
    assert jobs[0].status == "done"
    # A job run by a runner without a local process records no process group.
    assert jobs[0].child_pgid is None and jobs[0].child_started is None
    prompts = [c.prompt.removesuffix("\n\n" + STATUS_FOOTER) for c in runner.calls]
    assert prompts[:4] == ["one", "two", "three", "four"]
    assert "Several agents worked on related tasks" in prompts[4]  # the aggregation
    assert len(prompts) == 8 and prompts[-1] == "six"  # two dialogue turns, then the job
    assert dispatcher.limiter.borrowed_tokens == 0


async def test_a_dispatch_hands_the_runner_the_kill_grace_setting(
    tmp_path: Path, runner: ScriptedRunner
) -> None:
    cfg = make_config(tmp_path, settings="  kill_grace_seconds: 7.5")
    async with Dispatcher.open(cfg, env=ENV, jobs=JobStore(tmp_path / "jobs"), runner=runner) as d:
        await d.dispatch(req("hello"))
    assert runner.calls[0].spec.grace == 7.5


async def test_cache_hit_miss_ttl_and_eviction_with_injected_clock(
    tmp_path: Path, runner: ScriptedRunner
) -> None:
    clock = Clock()
    cfg = make_config(tmp_path, settings="  cache: {ttl: 60, max_size: 1}")
    async with Dispatcher.open(
        cfg, env=ENV, clock=clock, jobs=JobStore(tmp_path / "jobs"), runner=runner, cache=True
    ) as d:
        first = await d.dispatch(req("same"))
        again = await d.dispatch(req("same"))
        assert again.cached is True and again.result == first.result
        assert len(runner.calls) == 1
        clock.now = 60.0  # TTL is measured from insertion
        await d.dispatch(req("same"))
        assert len(runner.calls) == 2
        await d.dispatch(req("other"))  # max_size 1: evicts "same"
        await d.dispatch(req("same"))
        assert len(runner.calls) == 4
        stats = d.cache.stats()
        assert (stats.hits, stats.misses, stats.evictions) == (1, 4, 2)


async def test_sessions_and_streams_are_never_cached(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    await dispatcher.dispatch_session(req("t"))
    await dispatcher.dispatch_session(req("t"))
    await dispatcher.dispatch_stream(req("t"))
    assert len(runner.calls) == 3


async def test_failures_and_denials_are_not_cached(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    denial = {"permission_denials": [{"tool_name": "Bash"}]}
    runner.on(Script(reply="wrote", fields=denial), prompt="write")
    api_error = Script(reply="API Error: 500", fields={"is_error": True}, returncode=1)
    runner.on(api_error, prompt="boom")
    for _ in range(2):
        denied = await dispatcher.dispatch(req("write it"))
        assert denied.success and denied.denied_tools == ["Bash"]
        failed = await dispatcher.dispatch(req("boom"))
        assert not failed.success
    assert len(runner.calls) == 4


async def test_recursion_limit_runs_nothing(tmp_path: Path, runner: ScriptedRunner) -> None:
    env = {**ENV, "AGENT_DISPATCH_DEPTH": "3"}
    cfg = make_config(tmp_path)
    async with Dispatcher.open(cfg, env=env, jobs=JobStore(tmp_path / "j"), runner=runner) as d:
        result = await d.dispatch(req("nested"))
    assert result.error_type == "recursion" and not result.success
    assert runner.calls == []


async def test_a_run_past_its_timeout_is_a_timeout_with_a_resumable_session(
    dispatcher: Dispatcher, runner: ScriptedRunner, autojump_clock: trio.testing.MockClock
) -> None:
    runner.default = Script(delay=3600)
    start = trio.current_time()
    result = await dispatcher.dispatch(req("slow"))  # backend's own timeout: 2 s
    assert trio.current_time() - start == pytest.approx(2)
    assert result.error_type == "timeout" and not result.success
    (call,) = runner.calls
    assert call.timed_out and result.session_id == call.spec.invocation.session_id
    assert "dispatch_session" in (result.hint or "")


async def test_cancelling_the_caller_stops_the_run_and_frees_the_slot(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(release=trio.Event())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dispatcher.dispatch, req("x"))
            (call,) = await runner.wait_calls(1)
            assert dispatcher.limiter.borrowed_tokens == 1
            nursery.cancel_scope.cancel()
    assert call.cancelled
    assert dispatcher.limiter.borrowed_tokens == 0


async def test_the_library_honours_a_short_timeout_as_given_and_rejects_bad_ones(
    dispatcher: Dispatcher, runner: ScriptedRunner, autojump_clock: trio.testing.MockClock
) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="timeout_seconds"):
            await dispatcher.dispatch(req("t", timeout_seconds=bad))
    # 1 s is 1 s: a 3 s run times out instead of being given 10 s silently.
    runner.default = Script(delay=3)
    result = await dispatcher.dispatch(req("t", agent="web", timeout_seconds=0.5))
    assert not result.success and result.error_type == "timeout"
    assert runner.calls[0].spec.timeout == 0.5


async def test_the_tools_policy_clamps_a_short_timeout_up_to_ten_seconds(
    tmp_path: Path, runner: ScriptedRunner, autojump_clock: trio.testing.MockClock
) -> None:
    async with Dispatcher.open(
        make_config(tmp_path), env=ENV, jobs=JobStore(tmp_path / "j"), runner=runner, policy=TOOLS
    ) as d:
        # 1 s clamps up to 10 s: a 3 s run finishes instead of timing out.
        runner.default = Script(delay=3)
        result = await d.dispatch(req("t", agent="web", timeout_seconds=1))
    assert result.success
    assert runner.calls[0].spec.timeout == 10


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
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    await dispatcher.dispatch(req("build it", group="team", context="extra"))
    prompt = runner.calls[0].prompt
    assert "The product team" in prompt and "We ship on Fridays." in prompt
    assert "Your role in this group: APIs" in prompt
    assert prompt.index("extra") < prompt.index("## Task")


@pytest.mark.parametrize(
    ("failure", "error_type", "error"),
    [
        (DirectoryMissing("/gone"), "not_found", "agent directory does not exist: /gone"),
        (ClaudeNotFound(None, None), "not_found", "claude executable not found (claude on PATH)"),
        (CommandTooLong(["claude", "x" * 200]), "cli_error", "too long for the OS"),
        (CouldNotStart("[Errno 13] Permission denied"), "not_found", "could not start claude"),
    ],
)
async def test_a_run_that_cannot_start_is_a_failed_result_and_never_cached(
    dispatcher: Dispatcher,
    runner: ScriptedRunner,
    failure: StartFailed,
    error_type: str,
    error: str,
) -> None:
    runner.default = Script(fail=failure)
    for _ in range(2):
        result = await dispatcher.dispatch(req("t"))
        assert not result.success and result.error_type == error_type
        assert error in (result.error or "") and result.hint
    assert len(runner.calls) == 2
    assert dispatcher.limiter.borrowed_tokens == 0


async def test_parallel_validates_everything_before_running(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    batch = [req("fine"), req("t", agent="ghost")]
    with pytest.raises(UnknownAgent, match=r"dispatches\[1\]"):
        await dispatcher.dispatch_parallel(batch)
    assert runner.calls == []


async def test_a_refused_field_is_named_once_and_an_item_by_its_place(
    dispatcher: Dispatcher, runner: ScriptedRunner
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
    assert runner.calls == []


async def test_parallel_keeps_input_order_and_aggregates(
    dispatcher: Dispatcher, runner: ScriptedRunner, autojump_clock: trio.testing.MockClock
) -> None:
    runner.on(Script(delay=0.3, reply="scripted reply to: first"), prompt="first")
    batch = [req("first"), req("second", agent="web"), req("third")]
    outcome = await dispatcher.dispatch_parallel(batch, aggregate="web")
    assert [r.result for r in outcome.results] == [
        "scripted reply to: first",
        "scripted reply to: second",
        "scripted reply to: third",
    ]
    assert outcome.aggregated is not None and outcome.aggregated.success
    aggregate = runner.calls[-1]
    assert aggregate.spec.agent == "web" and "scripted reply to: second" in aggregate.prompt


async def test_dialogue_stops_at_resolved_and_resumes_sessions(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply="settled [RESOLVED]")
    result = await dispatcher.dispatch_dialogue(
        requester="backend", responder="web", topic="agree on an API", max_rounds=3
    )
    assert result.resolved and result.rounds == 1
    assert [t.role for t in result.conversation] == ["requester", "responder"]
    assert result.final_answer == "settled"
    assert [c.spec.agent for c in runner.calls] == ["backend", "web"]


async def test_dialogue_surfaces_a_failed_turn(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply="API Error: 500", fields={"is_error": True}, returncode=1)
    result = await dispatcher.dispatch_dialogue(requester="backend", responder="web", topic="x")
    assert not result.resolved and result.error and "requester backend failed" in result.error
    assert result.conversation[0].success is False


async def test_config_change_resizes_the_limiter_and_drops_the_agents_cache(
    tmp_path: Path, runner: ScriptedRunner
) -> None:
    path = tmp_path / "agents.yaml"
    cfg = make_config(tmp_path)
    path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(cfg)))
    store = ConfigStore(path)
    async with Dispatcher.open(
        store, env=ENV, jobs=JobStore(tmp_path / "j"), runner=runner, cache=True
    ) as d:
        await d.dispatch(req("t"))
        assert d.cache.stats().size == 1
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
        assert d.cache.stats().size == 0
        await d.dispatch(req("t"))
    assert runner.calls[-1].spec.invocation.model == "opus"


async def test_the_default_runner_is_the_local_claude_runner(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with Dispatcher.open(cfg, env=dict(os.environ), jobs=JobStore(tmp_path / "j")) as d:
        assert isinstance(d.runner, ClaudeRunner)
