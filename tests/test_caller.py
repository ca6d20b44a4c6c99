"""The caller's context: one Dispatcher, many callers, each child gets its caller's env.

The per-user service (issue #16) serves every session on one Dispatcher; each session
sets a CallerContext around its task. On the ScriptedRunner: the RunSpec shows the env.
"""

from __future__ import annotations

from pathlib import Path

import trio

from agent_dispatch.claude.invocation import STATUS_FOOTER
from agent_dispatch.models import DispatchRequest
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.caller import CallerContext, caller_context, current_caller
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config

OWN = {"PATH": "/usr/bin", "HOME": "/home/service"}


def _task(prompt: str) -> str:
    """The task's last line: the prompt without the status footer every prompt ends with."""
    return prompt.removesuffix("\n\n" + STATUS_FOOTER).rsplit("\n", 1)[-1]


def req(task: str) -> DispatchRequest:
    return DispatchRequest(agent="backend", task=task)


async def test_without_a_caller_the_child_gets_the_dispatchers_own_env(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    cfg = make_config(tmp_path)
    async with Dispatcher.open(cfg, env=OWN, jobs=JobStore(tmp_path / "j"), runner=runner) as d:
        assert current_caller() is None
        assert (await d.dispatch(req("mine"))).success
    assert runner.calls[0].spec.env == {**OWN, "AGENT_DISPATCH_DEPTH": "1"}


async def test_each_caller_s_child_gets_that_caller_s_env_and_depth(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    cfg = make_config(tmp_path)
    alice = CallerContext(
        env={"PATH": "/a", "ANTHROPIC_API_KEY": "ka", "CLAUDECODE": "1"}, cwd="/a"
    )
    bob = CallerContext(env={"PATH": "/b", "AGENT_DISPATCH_DEPTH": "1"}, cwd="/b")
    async with Dispatcher.open(cfg, env=OWN, jobs=JobStore(tmp_path / "j"), runner=runner) as d:

        async def call_as(who: CallerContext, task: str) -> None:
            with caller_context(who):
                assert (await d.dispatch(req(task))).success

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_as, alice, "for alice")
            nursery.start_soon(call_as, bob, "for bob")
    envs = {_task(call.prompt): call.spec.env for call in runner.calls}
    assert envs == {
        "for alice": {"PATH": "/a", "ANTHROPIC_API_KEY": "ka", "AGENT_DISPATCH_DEPTH": "1"},
        "for bob": {"PATH": "/b", "AGENT_DISPATCH_DEPTH": "2"},
    }


async def test_a_caller_at_the_depth_limit_is_refused_and_others_are_not(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    cfg = make_config(tmp_path)
    deep = CallerContext(env={"AGENT_DISPATCH_DEPTH": "3"})
    async with Dispatcher.open(cfg, env=OWN, jobs=JobStore(tmp_path / "j"), runner=runner) as d:
        with caller_context(deep):
            refused = await d.dispatch(req("too deep"))
        assert (await d.dispatch(req("fine"))).success
    assert refused.error_type == "recursion" and "dispatch depth 3" in (refused.error or "")
    assert [_task(call.prompt) for call in runner.calls] == ["fine"]


async def test_a_job_keeps_its_submitting_caller_s_env_after_the_caller_left(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(reply="late", release=gate))
    cfg = make_config(tmp_path)
    carol = CallerContext(env={"PATH": "/c", "CLAUDE_CONFIG_DIR": "/c/.claude"}, cwd="/c")
    async with Dispatcher.open(cfg, env=OWN, jobs=JobStore(tmp_path / "j"), runner=runner) as d:
        with caller_context(carol):
            job = await d.submit(req("a job"))
        assert current_caller() is None  # the session is gone; its job is not
        gate.set()
        with trio.fail_after(5):
            (done,) = await d.wait(job.id)
        assert done.result is not None and done.result.result == "late"
    (call,) = runner.calls
    assert call.spec.env == {
        "PATH": "/c",
        "CLAUDE_CONFIG_DIR": "/c/.claude",
        "AGENT_DISPATCH_DEPTH": "1",
    }
