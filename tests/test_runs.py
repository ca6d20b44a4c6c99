"""run_once: the slot, the progress relay (stamped, ordered, never blocking the runner)
and the lifecycle events a library user follows a run by."""

from __future__ import annotations

import time
from functools import partial

import msgspec
import trio
import trio.testing

from agent_dispatch.claude.invocation import Invocation
from agent_dispatch.models import DispatchResult, ProgressEvent
from agent_dispatch.runtime.runner import (
    DirectoryMissing,
    EventCallback,
    Runner,
    RunOutcome,
    RunSpec,
)
from agent_dispatch.runtime.scripted import Script, ScriptedRunner, result_line
from agent_dispatch.service.runs import RunStats, run_once

SESSION = "0b5c4b7e-1a5e-4a0e-9a43-6d1f2b3c4d5e"
TEXT = ProgressEvent("text", "working")


def spec(prompt: str = "do it") -> RunSpec:
    return RunSpec(
        agent="backend",
        directory="/nonexistent",
        invocation=Invocation(prompt=prompt, session_id=SESSION),
        env={},
        timeout=60,
    )


class Collector:
    """An on_progress that records events and sets `seen[kind]` when one arrives."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self.seen: dict[str, trio.Event] = {}

    def saw(self, kind: str) -> trio.Event:
        return self.seen.setdefault(kind, trio.Event())

    async def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)
        self.saw(event.kind).set()

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def run(
    runner: Runner,
    limiter: trio.CapacityLimiter | None = None,
    on_progress: Collector | None = None,
    *,
    lifecycle: bool = False,
    stats: RunStats | None = None,
) -> DispatchResult:
    return await run_once(
        runner,
        limiter or trio.CapacityLimiter(1),
        spec(),
        agent_timeout=60,
        max_budget_usd=None,
        response_format="",
        on_progress=on_progress,
        lifecycle=lifecycle,
        stats=stats,
    )


async def test_every_relayed_event_is_stamped_with_the_time_the_service_saw_it() -> None:
    tool = ProgressEvent("tool_use", "Using tool: Bash", tool="Bash", tool_input={"x": 1})
    collect = Collector()
    before = time.time()
    with trio.fail_after(5):
        await run(ScriptedRunner(Script(events=[TEXT, tool])), on_progress=collect)
    after = time.time()
    assert [msgspec.structs.replace(e, at=0.0) for e in collect.events] == [TEXT, tool]
    assert all(before <= e.at <= after for e in collect.events)


async def test_a_run_that_waits_for_a_slot_says_queued_then_started_then_its_text() -> None:
    limiter = trio.CapacityLimiter(1)
    holder = object()
    limiter.acquire_on_behalf_of_nowait(holder)
    collect = Collector()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            runner = ScriptedRunner(Script(events=[TEXT]))
            nursery.start_soon(partial(run, runner, limiter, collect, lifecycle=True))
            await collect.saw("queued").wait()
            assert collect.kinds == ["queued"]  # nothing started while the slot is taken
            limiter.release_on_behalf_of(holder)
    assert collect.kinds == ["queued", "started", "text"]
    queued, started, _ = collect.events
    assert queued.message == "Queued: no free slot (1 in use)"
    assert (started.pid, started.session_id, started.message) == (None, SESSION, "Started")
    assert 0 < queued.at <= started.at


async def test_a_run_with_a_free_slot_says_started_and_never_queued() -> None:
    collect = Collector()
    with trio.fail_after(5):
        await run(ScriptedRunner(Script(events=[TEXT])), on_progress=collect, lifecycle=True)
    assert collect.kinds == ["started", "text"]


async def test_without_lifecycle_a_queued_run_relays_only_its_childs_events() -> None:
    """The MCP face and the jobs see what they always saw."""
    limiter = trio.CapacityLimiter(1)
    holder = object()
    limiter.acquire_on_behalf_of_nowait(holder)
    collect = Collector()
    runner = ScriptedRunner(Script(events=[TEXT]))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, runner, limiter, collect)
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().tasks_waiting == 1 and not runner.calls
            limiter.release_on_behalf_of(holder)
    assert collect.kinds == ["text"]


class PidRunner:
    """A runner whose child has a pid (ScriptedRunner's runs have none)."""

    async def run(
        self,
        spec: RunSpec,
        *,
        on_event: EventCallback | None = None,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> RunOutcome:
        task_status.started(4242)
        if on_event is not None:
            on_event(TEXT)
        return RunOutcome(returncode=0, stdout=result_line("ok", session_id=SESSION))


async def test_started_carries_the_pid_the_runner_started_with() -> None:
    collect = Collector()
    spawned: list[int | None] = []
    with trio.fail_after(5):
        result = await run_once(
            PidRunner(),
            trio.CapacityLimiter(1),
            spec(),
            agent_timeout=60,
            max_budget_usd=None,
            response_format="",
            on_progress=collect,
            on_spawn=spawned.append,
            lifecycle=True,
        )
    assert result.success and spawned == [4242]
    started, text = collect.events
    assert (started.kind, started.pid, started.message) == ("started", 4242, "Started (pid 4242)")
    assert text.kind == "text"


async def test_a_run_that_cannot_start_never_says_started() -> None:
    collect = Collector()
    runner = ScriptedRunner(Script(fail=DirectoryMissing("/nonexistent")))
    with trio.fail_after(5):
        result = await run(runner, on_progress=collect, lifecycle=True)
    assert not result.success and result.error_type == "not_found"
    assert collect.events == []


async def test_a_slow_consumer_never_holds_up_the_runner_and_every_lost_event_is_counted() -> None:
    gate = trio.Event()
    events: list[ProgressEvent] = []

    async def slow(event: ProgressEvent) -> None:
        await gate.wait()
        events.append(event)

    emitted = [ProgressEvent("text", f"line {i}") for i in range(1000)]
    runner = ScriptedRunner(Script(events=emitted))
    stats = RunStats()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    run_once,
                    runner,
                    trio.CapacityLimiter(1),
                    spec(),
                    agent_timeout=60,
                    max_budget_usd=None,
                    response_format="",
                    on_progress=slow,
                    lifecycle=True,
                    stats=stats,
                )
            )
            (call,) = await runner.wait_calls(1)
            await call.done.wait()  # the run ended while the consumer is stuck on event one
            assert stats.dropped > 0
            gate.set()
    assert len(events) + stats.dropped == len(emitted) + 1  # + started
    assert events[0].kind == "started"
    kept = [e.message for e in events[1:]]
    assert kept == sorted(kept, key=lambda m: int(m.split()[1]))  # in order, gaps only


async def test_a_run_cancelled_while_queued_leaves_the_limiter_as_it_was() -> None:
    limiter = trio.CapacityLimiter(1)
    holder = object()
    limiter.acquire_on_behalf_of_nowait(holder)
    collect = Collector()
    runner = ScriptedRunner()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run, runner, limiter, collect, lifecycle=True))
            await collect.saw("queued").wait()
            nursery.cancel_scope.cancel()
    assert limiter.statistics().tasks_waiting == 0 and limiter.borrowed_tokens == 1
    limiter.release_on_behalf_of(holder)
    assert limiter.borrowed_tokens == 0 and not runner.calls


async def test_a_run_cancelled_while_running_gives_its_slot_back() -> None:
    limiter = trio.CapacityLimiter(1)
    runner = ScriptedRunner(Script(release=trio.Event()))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, runner, limiter)
            (call,) = await runner.wait_calls(1)
            assert limiter.borrowed_tokens == 1
            nursery.cancel_scope.cancel()
    assert call.cancelled and limiter.borrowed_tokens == 0
