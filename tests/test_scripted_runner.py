"""ScriptedRunner, the Runner fake: scripts, events, waits, timeouts, cancellation, records."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from agent_dispatch.claude.invocation import Invocation
from agent_dispatch.models import ProgressEvent
from agent_dispatch.runtime.runner import ClaudeNotFound, RunSpec
from agent_dispatch.runtime.scripted import Script, ScriptedRunner

SESSION = "0b5c4b7e-1a5e-4a0e-9a43-6d1f2b3c4d5e"


def spec(prompt: str = "do it", *, agent: str = "backend", timeout: float = 60) -> RunSpec:
    return RunSpec(
        agent=agent,
        directory="/nonexistent",
        invocation=Invocation(prompt=prompt, session_id=SESSION),
        env={},
        timeout=timeout,
    )


def answer(stdout: bytes) -> dict[str, object]:
    value: dict[str, object] = json.loads(stdout)
    return value


async def test_the_default_answer_is_a_successful_result_naming_the_prompt() -> None:
    runner = ScriptedRunner()
    outcome = await runner.run(spec("first line\nsecond"))
    assert outcome.returncode == 0 and not outcome.timed_out
    result = answer(outcome.stdout)
    assert result["result"] == "scripted reply to: first line"
    assert result["session_id"] == SESSION and result["is_error"] is False
    assert [c.prompt for c in runner.calls] == ["first line\nsecond"]


async def test_rules_match_by_agent_and_prompt_in_order_and_once_rules_are_used_up() -> None:
    runner = ScriptedRunner(default=Script(reply="default"))
    runner.on(Script(reply="web only"), agent="web")
    runner.on(Script(reply="once"), prompt="urgent", once=True)
    runner.on(lambda s: Script(reply=s.invocation.prompt.upper()), prompt="shout")
    replies = [
        answer((await runner.run(s)).stdout)["result"]
        for s in (
            spec("urgent"),
            spec("urgent"),
            spec("urgent", agent="web"),
            spec("shout it"),
        )
    ]
    assert replies == ["once", "default", "web only", "SHOUT IT"]


async def test_fields_raw_stdout_and_exit_status_are_passed_through() -> None:
    runner = ScriptedRunner()
    runner.on(Script(reply="no", fields={"is_error": True}, returncode=1), prompt="fail")
    runner.on(Script(stdout=b"plain text\n", stderr=b"warn\n"), prompt="raw")
    failed = await runner.run(spec("fail"))
    assert failed.returncode == 1 and answer(failed.stdout)["is_error"] is True
    raw = await runner.run(spec("raw"))
    assert (raw.stdout, raw.stderr) == (b"plain text\n", b"warn\n")


async def test_events_reach_on_event_and_the_run_starts_without_a_process_group() -> None:
    events = [ProgressEvent("text", "thinking"), ProgressEvent("tool_use", "Bash")]
    runner = ScriptedRunner(default=Script(events=events))
    seen: list[ProgressEvent] = []
    async with trio.open_nursery() as nursery:
        started = await nursery.start(runner.run, spec())
    assert started is None
    await runner.run(spec(), on_event=seen.append)
    assert seen == events


async def test_a_run_blocks_until_released(autojump_clock: trio.testing.MockClock) -> None:
    gate = trio.Event()
    runner = ScriptedRunner(default=Script(release=gate, reply="after the gate"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, spec())
        (call,) = await runner.wait_calls(1)
        await trio.sleep(50)  # autojump: the gate, not the clock, holds the run (timeout 60)
        assert not call.done.is_set() and runner.running == 1
        gate.set()
    assert call.done.is_set() and not call.cancelled and runner.running == 0


async def test_a_delay_runs_on_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    runner = ScriptedRunner(default=Script(delay=120))
    start = trio.current_time()
    outcome = await runner.run(spec(timeout=300))
    assert trio.current_time() - start == pytest.approx(120)
    assert not outcome.timed_out


async def test_a_run_longer_than_its_timeout_times_out_without_a_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = ScriptedRunner(default=Script(delay=500))
    start = trio.current_time()
    outcome = await runner.run(spec(timeout=30))
    assert trio.current_time() - start == pytest.approx(30)
    assert outcome.timed_out and outcome.stdout == b"" and runner.calls[0].timed_out


async def test_cancellation_propagates_and_is_recorded() -> None:
    runner = ScriptedRunner(default=Script(release=trio.Event()))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, spec())
            (call,) = await runner.wait_calls(1)
            nursery.cancel_scope.cancel()
    assert call.cancelled and call.done.is_set() and runner.running == 0


async def test_a_scripted_start_failure_is_raised_and_nothing_runs() -> None:
    runner = ScriptedRunner(default=Script(fail=ClaudeNotFound(None, None)))
    with pytest.raises(ClaudeNotFound):
        await runner.run(spec())
    assert len(runner.calls) == 1 and runner.peak == 0


async def test_peak_counts_the_runs_alive_at_once(autojump_clock: trio.testing.MockClock) -> None:
    runner = ScriptedRunner(default=Script(delay=1))
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(runner.run, spec())
    assert runner.peak == 3 and runner.running == 0 and len(runner.calls) == 3
