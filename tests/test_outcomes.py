"""The agent's own outcome (its last STATUS line) on every path the Dispatcher runs, and
what an unfinished outcome changes: a hint to continue the session, and no caching."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agent_dispatch.models import DispatchRequest, DispatchResult, ProgressEvent
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config

ENV = {"PATH": "/usr/bin", "HOME": "/home/someone"}
PARTIAL = "Did the first half.\n\nSTATUS: partial the second half is left"


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
async def dispatcher(tmp_path: Path, runner: ScriptedRunner) -> AsyncIterator[Dispatcher]:
    async with Dispatcher.open(
        make_config(tmp_path), env=ENV, jobs=JobStore(tmp_path / "jobs"), runner=runner, cache=True
    ) as d:
        yield d


def req(task: str, agent: str = "backend", **kw: object) -> DispatchRequest:
    return DispatchRequest(agent=agent, task=task, **kw)  # type: ignore[arg-type]


def _is_partial(result: DispatchResult | None) -> bool:
    assert result is not None
    assert result.result == "Did the first half.", result
    return result.outcome == "partial" and result.outcome_reason == "the second half is left"


async def test_every_dispatch_path_reports_the_agents_outcome(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply=PARTIAL)

    async def ignore(event: ProgressEvent) -> None:
        pass

    assert _is_partial(await dispatcher.dispatch(req("one")))
    assert _is_partial(await dispatcher.dispatch_session(req("two")))
    assert _is_partial(await dispatcher.dispatch_stream(req("three"), ignore))
    async with dispatcher.stream(req("four")) as run:
        async for _ in run:
            pass
    assert _is_partial(run.result)
    parallel = await dispatcher.dispatch_parallel([req("five"), req("six")], aggregate="web")
    assert all(_is_partial(r) for r in [*parallel.results, parallel.aggregated])
    async for _, item in dispatcher.as_completed([req("seven")]):
        assert _is_partial(item)
    dialogue = await dispatcher.dispatch_dialogue(requester="backend", responder="web", topic="x")
    assert dialogue.conversation and all(
        (t.outcome, t.outcome_reason, t.message)
        == ("partial", "the second half is left", "Did the first half.")
        for t in dialogue.conversation
    )
    job = await dispatcher.submit(req("eight"))
    with trio.fail_after(5):
        [finished] = await dispatcher.wait([job.id])
    assert finished.status == "done" and _is_partial(finished.result)


async def test_a_partial_answer_is_never_served_from_the_cache(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.on(Script(reply=PARTIAL), prompt="half")
    runner.on(Script(reply="All of it.\nSTATUS: done"), prompt="whole")
    runner.on(Script(reply="Cannot.\nSTATUS: blocked no key"), prompt="stuck")
    for _ in range(2):
        assert _is_partial(await dispatcher.dispatch(req("half")))
        assert (await dispatcher.dispatch(req("stuck"))).outcome == "blocked"
        whole = await dispatcher.dispatch(req("whole"))
        assert (whole.result, whole.outcome) == ("All of it.", "done")
    assert whole.cached is True  # a finished answer is, and keeps its outcome
    assert [c.prompt.split("\n", 1)[0] for c in runner.calls] == [
        "half",
        "stuck",
        "whole",
        "half",
        "stuck",
    ]


async def test_a_library_caller_is_told_in_python_how_to_continue(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply=PARTIAL)
    result = await dispatcher.dispatch(req("t"))
    assert result.session_id
    assert result.hint == (
        "The agent reports it did not finish. Continue the same conversation: "
        "await dispatcher.dispatch_session(DispatchRequest(agent='backend', task='continue', "
        f"session_id={result.session_id!r}))."
    )
    result.raise_for_error()  # a partial answer is a successful run, not a failure


async def test_a_json_answer_with_a_status_line_still_parses(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply='{"routes": 12}\nSTATUS: done')
    result = await dispatcher.dispatch(req("count", response_format="json"))
    assert (result.parsed_result, result.outcome) == ({"routes": 12}, "done")


async def test_a_failed_run_has_no_outcome(dispatcher: Dispatcher, runner: ScriptedRunner) -> None:
    runner.default = Script(reply="API Error: 500", fields={"is_error": True}, returncode=1)
    result = await dispatcher.dispatch(req("t"))
    assert result.success is False and result.outcome is None


async def test_a_dialogue_turn_resolves_with_its_marker_before_the_status_line(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply="We agree on v2. [RESOLVED]\nSTATUS: done")
    dialogue = await dispatcher.dispatch_dialogue(requester="backend", responder="web", topic="x")
    assert dialogue.resolved and dialogue.rounds == 1
    assert dialogue.final_answer == "We agree on v2."
    assert [t.outcome for t in dialogue.conversation] == ["done", "done"]


async def test_the_aggregator_is_told_which_items_did_not_finish(
    dispatcher: Dispatcher, runner: ScriptedRunner
) -> None:
    runner.on(Script(reply=PARTIAL), prompt="first")
    runner.on(Script(reply="Both.\nSTATUS: done"), prompt="second")
    await dispatcher.dispatch_parallel([req("first"), req("second")], aggregate="web")
    aggregation = runner.calls[-1].prompt
    assert "### Result 1: agent backend (partial: the second half is left)\n" in aggregation
    assert "### Result 2: agent backend\nTask: second\n\nBoth.\n" in aggregation
