"""The library as a trio developer uses it: exceptions as themselves, cancellation as a
bare trio.Cancelled, one shared limiter, library defaults, fan-out in completion order,
jobs with typed answers. Runs go to the ScriptedRunner; a real process only where the
OS is the subject (Ctrl-C's exit status)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from agent_dispatch.errors import InvalidArgument, UnknownAgent
from agent_dispatch.models import DispatchRequest, DispatchResult, ProgressEvent, WaitMode
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.async_jobs import CancelResult
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.policy import TOOLS
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config
from tests.server_support import dead_pid, job_record

ENV = {"PATH": os.environ.get("PATH", "")}


def req(task: str, agent: str = "web", **kw: object) -> DispatchRequest:
    """A request to `web` (the shared config gives it the default 300 s timeout)."""
    return DispatchRequest(agent=agent, task=task, **kw)  # type: ignore[arg-type]


def opened(
    tmp_path: Path, runner: ScriptedRunner, **kw: Any
) -> AbstractAsyncContextManager[Dispatcher]:
    return Dispatcher.open(
        make_config(tmp_path),
        env=ENV,
        jobs=JobStore(tmp_path / "jobs"),
        runner=runner,
        **kw,
    )


# -- exceptions come out as themselves ------------------------------------------


async def test_an_exception_raised_in_the_body_comes_out_of_open_as_itself(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="mine") as caught:
        async with opened(tmp_path, ScriptedRunner()):
            raise ValueError("mine")
    assert type(caught.value) is ValueError
    assert caught.value.__context__ is None  # not "during handling of" a group


async def test_a_bad_request_raises_its_own_error_through_open(tmp_path: Path) -> None:
    with pytest.raises(UnknownAgent):
        async with opened(tmp_path, ScriptedRunner()) as d:
            await d.dispatch(req("t", agent="nobody"))


async def test_a_dispatch_cancelled_by_a_scope_raises_bare_cancelled_after_the_run_is_gone(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner(Script(release=trio.Event()))
    seen: list[BaseException] = []
    async with opened(tmp_path, runner) as d:
        with trio.fail_after(5):
            with trio.CancelScope() as scope:

                async def cancel_once_running() -> None:
                    await runner.wait_calls(1)
                    scope.cancel()

                async with trio.open_nursery() as helper:
                    helper.start_soon(cancel_once_running)
                    try:
                        await d.dispatch(req("hang"))
                    except trio.Cancelled as exc:
                        seen.append(exc)
                        raise
        assert d.limiter.borrowed_tokens == 0
    assert len(seen) == 1 and type(seen[0]) is trio.Cancelled
    assert runner.calls[0].cancelled and runner.calls[0].done.is_set()


def test_ctrl_c_in_the_body_ends_the_program_as_an_interrupt(tmp_path: Path) -> None:
    """The OS is the subject: a real interpreter, a real SIGINT, its real exit status."""
    script = textwrap.dedent(
        f"""
        import os, signal, trio
        # As in a terminal: a shell's background job (a CI step, `cmd &`) starts with
        # SIGINT ignored, and then Python installs no KeyboardInterrupt handler at all.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from agent_dispatch import Dispatcher
        from agent_dispatch.models import Config
        from agent_dispatch.storage.jobs import JobStore

        async def main():
            async with Dispatcher.open(Config(), jobs=JobStore({str(tmp_path / "j")!r})):
                os.kill(os.getpid(), signal.SIGINT)
                await trio.sleep(30)

        trio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == -signal.SIGINT, done.stderr.decode()[-2000:]
    assert b"ExceptionGroup" not in done.stderr


def test_under_asyncio_the_library_says_it_runs_on_trio(tmp_path: Path) -> None:
    async def main() -> None:
        async with Dispatcher.open(make_config(tmp_path)):
            pass  # pragma: no cover - never entered

    with pytest.raises(RuntimeError, match=r"runs on trio.*under asyncio"):
        asyncio.run(main())


# -- the limiter and the library's defaults ---------------------------------------


async def test_a_callers_limiter_bounds_the_runs_and_is_left_as_the_caller_set_it(
    tmp_path: Path,
) -> None:
    shared = trio.CapacityLimiter(2)
    runner = ScriptedRunner(Script(release=(gate := trio.Event())))
    async with opened(tmp_path, runner, limiter=shared) as d:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(d.dispatch, req(f"t{i}"))
                await runner.wait_calls(2)
                await trio.testing.wait_all_tasks_blocked()
                assert shared.borrowed_tokens == 2 and len(runner.calls) == 2
                gate.set()
        assert d.limiter is shared
    assert runner.peak == 2 and shared.total_tokens == 2 and shared.borrowed_tokens == 0


async def test_max_concurrency_overrides_the_config_and_a_limiter_with_it_is_refused(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path, ScriptedRunner(), max_concurrency=7) as d:
        assert d.limiter.total_tokens == 7
    with pytest.raises(InvalidArgument, match="max_concurrency"):
        async with opened(
            tmp_path, ScriptedRunner(), max_concurrency=2, limiter=trio.CapacityLimiter(2)
        ):
            pass  # pragma: no cover
    with pytest.raises(InvalidArgument, match="max_concurrency"):
        async with opened(tmp_path, ScriptedRunner(), max_concurrency=0):
            pass  # pragma: no cover


async def test_the_cache_is_off_unless_asked_for(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    async with opened(tmp_path, runner) as d:
        first = await d.dispatch(req("same"))
        second = await d.dispatch(req("same"))
    assert len(runner.calls) == 2 and not second.cached and first.success
    runner = ScriptedRunner()
    async with opened(tmp_path, runner, cache=True) as d:
        await d.dispatch(req("same"))
        again = await d.dispatch(req("same"))
    assert len(runner.calls) == 1 and again.cached


async def test_the_library_takes_a_batch_of_any_size_and_the_tools_cap_it(
    tmp_path: Path,
) -> None:
    batch = [req(f"t{i}") for i in range(150)]
    runner = ScriptedRunner()
    async with opened(tmp_path, runner) as d:
        done = await d.dispatch_parallel(batch)
    assert len(done.results) == 150 and all(r.success for r in done.results)
    async with opened(tmp_path, ScriptedRunner(), policy=TOOLS) as d:
        with pytest.raises(InvalidArgument, match="more than the limit of 100"):
            await d.dispatch_parallel(batch)


# -- as_completed -----------------------------------------------------------------


def _delayed(spec_prompt: str) -> Script:
    """A run that takes the seconds its task names ("after 3")."""
    found = re.search(r"after (\d+)", spec_prompt)
    assert found is not None
    return Script(delay=float(found.group(1)))


def _cancelled_by_task(runner: ScriptedRunner) -> dict[str, bool]:
    return {re.search(r"after \d+", c.prompt).group(0): c.cancelled for c in runner.calls}  # type: ignore[union-attr]


async def test_as_completed_yields_in_completion_order_with_each_index(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner(lambda spec: _delayed(spec.invocation.prompt))
    delays = [3, 1, 2, 5, 4]
    got: list[tuple[int, DispatchResult]] = []
    async with opened(tmp_path, runner, max_concurrency=5) as d:
        async for index, result in d.as_completed([req(f"after {s}") for s in delays]):
            got.append((index, result))
    assert [i for i, _ in got] == [1, 2, 0, 4, 3]
    assert all(r.result == f"scripted reply to: after {delays[i]}" for i, r in got)


async def test_as_completed_is_bounded_by_the_one_limiter_and_has_no_item_cap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner(Script(delay=1))
    async with opened(tmp_path, runner, max_concurrency=5) as d:
        seen = {index async for index, _ in d.as_completed([req(f"t{i}") for i in range(300)])}
    assert seen == set(range(300)) and runner.peak == 5


async def test_leaving_an_as_completed_loop_stops_the_runs_left(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner(lambda spec: _delayed(spec.invocation.prompt))
    async with opened(tmp_path, runner, max_concurrency=10) as d:
        async for index, _ in d.as_completed([req(f"after {s}") for s in (1, 50, 60)]):
            assert index == 0
            break
        with trio.fail_after(5):  # the two left are stopped, not run to their end
            for call in await runner.wait_calls(3):
                await call.done.wait()
        assert trio.current_time() < 50
        assert _cancelled_by_task(runner) == {"after 1": False, "after 50": True, "after 60": True}
        assert d.limiter.borrowed_tokens == 0


async def test_a_cancelled_as_completed_loop_stops_the_rest_before_cancelled_propagates(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner(lambda spec: _delayed(spec.invocation.prompt))
    async with opened(tmp_path, runner, max_concurrency=5) as d:
        got: list[int] = []
        with trio.move_on_after(10):
            async with d.as_completed([req(f"after {s}") for s in (1, 100, 200)]) as results:
                async for index, _ in results:
                    got.append(index)
        assert got == [0]
        assert all(c.done.is_set() for c in runner.calls)  # gone already, not later
        assert _cancelled_by_task(runner) == {
            "after 1": False,
            "after 100": True,
            "after 200": True,
        }
        assert d.limiter.borrowed_tokens == 0


async def test_as_completed_checks_every_item_before_anything_runs(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    async with opened(tmp_path, runner) as d:
        with pytest.raises(UnknownAgent, match=r"dispatches\[1\]"):
            d.as_completed([req("fine"), req("bad", agent="nobody")])
        with pytest.raises(InvalidArgument, match="at least one"):
            d.as_completed([])
    assert runner.calls == []


# -- jobs on the Dispatcher ---------------------------------------------------------


async def test_jobs_submit_wait_any_and_cancel_with_typed_answers(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    gate = trio.Event()
    runner.on(Script(release=gate), prompt="slow")
    async with opened(tmp_path, runner) as d:
        with trio.fail_after(10):
            slow = await d.submit(req("slow"))
            quick = await d.submit(req("quick"))
            [s, q] = await d.wait([slow.id, quick.id], mode=WaitMode.ANY)
            assert q.status == "done" and s.status in ("pending", "running")
            outcome = await d.cancel(slow.id)
            assert outcome.outcome in (CancelResult.CANCELLED, CancelResult.CANCELLED_RUNNING)
            assert outcome.status == "cancelled" and outcome.job_id == slow.id
            again = await d.cancel(slow.id)
            assert again.outcome is CancelResult.ALREADY_TERMINAL
            assert (await d.job(slow.id)).error == "cancelled by Dispatcher.cancel()"
            listed = await d.list_jobs()
            assert {j.id for j in listed.jobs} == {slow.id, quick.id}


async def test_a_sub_second_wait_is_honoured(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner(Script(release=trio.Event()))
    async with opened(tmp_path, runner) as d:
        job = await d.submit(req("hang"))
        start = trio.current_time()
        waited = await d.wait_up_to(job.id, 0.2)
        assert waited.timed_out and trio.current_time() - start == pytest.approx(0.2)
        start = trio.current_time()
        with trio.move_on_after(0.3):
            await d.wait(job.id)
        assert trio.current_time() - start == pytest.approx(0.3)
        await d.cancel(job.id)


async def test_open_settles_a_dead_processes_jobs_without_being_asked(tmp_path: Path) -> None:
    orphan = job_record("web", days_ago=0, status="pending")
    orphan.owner_pid = await dead_pid()
    JobStore(tmp_path / "jobs").save(orphan)
    async with opened(tmp_path, ScriptedRunner()) as d:
        with trio.fail_after(10):
            job = await d.job(orphan.id)
    assert job.status == "failed" and "never started" in (job.error or "")


# -- stream and start ---------------------------------------------------------------


def _events(n: int) -> tuple[ProgressEvent, ...]:
    return tuple(ProgressEvent("text", f"line {i}") for i in range(n))


async def test_stream_yields_started_then_the_childs_events_stamped_then_the_result(
    tmp_path: Path,
) -> None:
    tool = ProgressEvent("tool_use", "Using tool: Bash", tool="Bash", tool_input={"cmd": "ls"})
    runner = ScriptedRunner(Script(events=(*_events(2), tool), reply="all done"))
    async with opened(tmp_path, runner) as d:
        with trio.fail_after(5):
            async with d.stream(req("go")) as run:
                seen = [event async for event in run]
    assert [e.kind for e in seen] == ["started", "text", "text", "tool_use"]
    assert seen[0].session_id == run.session_id == runner.calls[0].spec.invocation.session_id
    assert all(e.at > 0 for e in seen)
    assert seen[-1].tool == "Bash" and seen[-1].tool_input == {"cmd": "ls"}
    assert run.result.result == "all done" and run.done and run.dropped == 0


async def test_a_slow_reader_never_delays_the_result_and_loses_the_oldest_events(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    runner = ScriptedRunner(Script(events=_events(50), delay=1.5))
    async with opened(tmp_path, runner) as d:
        async with d.stream(req("chatty"), buffer=10) as run:
            first = await run.__anext__()
            await trio.sleep(1)  # one slow step of the reader: 50 events arrived meanwhile
            ended = None
            rest = []
            async for event in run:
                rest.append(event)
                if ended is None and run.done:
                    ended = trio.current_time()
                await trio.sleep(1)  # a 1 s/event reader
    assert first.kind == "started"
    assert ended is not None and ended < 3  # the 1.5 s run ended; the reader was behind
    assert [e.message for e in rest] == [f"line {i}" for i in range(40, 50)]  # newest kept
    assert run.dropped == 40 and run.result.success


async def test_a_run_waiting_for_a_slot_says_queued_first(tmp_path: Path) -> None:
    gate = trio.Event()
    runner = ScriptedRunner()
    runner.on(Script(release=gate), prompt="hold")
    async with opened(tmp_path, runner, max_concurrency=1) as d:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(d.dispatch, req("hold"))
                await runner.wait_calls(1)
                async with d.stream(req("next")) as run:
                    first = await run.__anext__()
                    assert first.kind == "queued" and run.pid is None
                    gate.set()
                    kinds = [first.kind] + [e.kind async for e in run]
    assert kinds == ["queued", "started"] and run.result.success


async def test_leaving_the_stream_block_early_stops_the_run(tmp_path: Path) -> None:
    runner = ScriptedRunner(Script(release=trio.Event()))
    async with opened(tmp_path, runner) as d:
        with trio.fail_after(5):
            async with d.stream(req("hang")) as run:
                await run.wait_started()
            assert runner.calls[0].cancelled and runner.calls[0].done.is_set()
            assert d.limiter.borrowed_tokens == 0
    assert run.cancelled
    with pytest.raises(RuntimeError, match="cancelled"):
        run.result  # noqa: B018 - the property raises


async def test_nursery_start_returns_the_run_once_started_and_it_goes_on(
    tmp_path: Path,
) -> None:
    gate = trio.Event()
    runner = ScriptedRunner(Script(release=gate, reply="later"))
    async with opened(tmp_path, runner) as d:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                run = await nursery.start(d.start, req("bg"))
                assert run.session_id is not None and not run.done
                gate.set()
                result = await run.wait()
    assert result.result == "later"


async def test_a_started_run_cancelled_by_its_handle_frees_its_slot(tmp_path: Path) -> None:
    runner = ScriptedRunner(Script(release=trio.Event()))
    async with opened(tmp_path, runner) as d:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                run = await nursery.start(d.start, req("bg"))
                run.cancel()
            assert run.cancelled and runner.calls[0].cancelled
            assert d.limiter.borrowed_tokens == 0


async def test_a_stream_cancelled_from_outside_raises_bare_cancelled(tmp_path: Path) -> None:
    runner = ScriptedRunner(Script(release=trio.Event()))
    caught: list[BaseException] = []
    async with opened(tmp_path, runner) as d:
        with trio.move_on_after(0.5):
            try:
                async with d.stream(req("hang")) as run:
                    async for _ in run:
                        pass
            except trio.Cancelled as exc:
                caught.append(exc)
                raise
    assert len(caught) == 1 and type(caught[0]) is trio.Cancelled
    assert runner.calls[0].cancelled


async def test_a_library_caller_reads_python_hints_and_the_faces_keep_theirs(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path, ScriptedRunner()) as d:
        with pytest.raises(UnknownAgent) as caught:
            await d.dispatch(req("t", agent="nobody"))
    assert "dispatcher.config().agents" in caught.value.hint
    assert caught.value.envelope()["hint"].startswith("Call list_agents")
    moved = caught.value.under("dispatches[1]")
    assert moved.hint == caught.value.hint and moved.face_hint == caught.value.face_hint
