"""The agent's outcome through the MCP tools: in every answer that carries a result, with
a tool-call hint to continue, valid against the published outputSchema."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]

from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from tests.server_support import Tools, Workspace, only

pytest_plugins = ("tests.server_fixtures",)  # ws, runner, served, tools, real_tools

PARTIAL = "Migrated the users table.\n\nSTATUS: partial orders table still to do"


async def _schema(tools: Tools, name: str) -> dict[str, Any]:
    listed = await tools.client.list_tools()
    return next(t.output_schema or {} for t in listed.tools if t.name == name)


def _partial(answer: dict[str, Any]) -> bool:
    return (answer["outcome"], answer["outcome_reason"]) == ("partial", "orders table still to do")


async def test_a_partial_dispatch_answers_its_outcome_and_how_to_continue(
    tools: Tools, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply=PARTIAL)
    res = (await tools("dispatch", agent="alpha", task="migrate")).ok
    assert res["success"] is True and _partial(res)
    assert res["result"] == "Migrated the users table."
    sid = res["session_id"]
    assert res["hint"] == (
        "The agent reports it did not finish. Continue the same conversation: "
        f'dispatch_session(agent="alpha", session_id="{sid}", task="continue").'
    )
    assert "advice" not in res
    jsonschema.validate(res, await _schema(tools, "dispatch"))
    again = (await tools("dispatch", agent="alpha", task="migrate")).ok
    assert "cached" not in again and len(runner.calls) == 2  # never served from the cache


async def test_a_finished_dispatch_says_done_and_has_no_hint(
    tools: Tools, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply="Done it.\nSTATUS: done")
    res = (await tools("dispatch", agent="alpha", task="t")).ok
    assert (res["result"], res["outcome"]) == ("Done it.", "done")
    assert "hint" not in res and "outcome_reason" not in res


async def test_every_answer_that_carries_a_result_carries_its_outcome(
    tools: Tools, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply=PARTIAL)
    assert _partial((await tools("dispatch_session", agent="alpha", task="t")).ok)
    assert _partial((await tools("dispatch_stream", agent="alpha", task="t")).ok)
    ref = (await tools("dispatch", agent="alpha", task="t", return_ref=True)).ok
    assert _partial(ref)
    jsonschema.validate(ref, await _schema(tools, "dispatch"))
    assert _partial((await tools("fetch_result", ref=ref["ref"])).ok)
    parallel = (
        await tools(
            "dispatch_parallel", dispatches=[{"agent": "alpha", "task": "a"}], aggregate="beta"
        )
    ).ok
    assert _partial(only(parallel["individual_results"])) and _partial(parallel["aggregated"])
    dialogue = (await tools("dispatch_dialogue", requester="alpha", responder="beta", topic="x")).ok
    assert all(_partial(turn) for turn in dialogue["conversation"])
    jsonschema.validate(dialogue, await _schema(tools, "dispatch_dialogue"))
    job = (await tools("dispatch_async", agent="alpha", task="bg")).ok
    waited = (await tools("dispatch_wait", job_id=job["job_id"])).ok
    assert _partial(waited["result"])


async def test_a_json_answer_ending_in_a_status_line_is_parsed(
    tools: Tools, runner: ScriptedRunner
) -> None:
    runner.default = Script(reply='{"tables": 2}\nSTATUS: blocked need the orders schema')
    res = (await tools("dispatch", agent="alpha", task="t", response_format="json")).ok
    assert res["parsed_result"] == {"tables": 2} and res["outcome"] == "blocked"
    assert res["hint"].startswith("The agent reports it is blocked.")


async def test_the_fake_claude_can_end_its_reply_with_a_status_line(
    real_tools: Tools, ws: Workspace
) -> None:
    task = (
        "migrate\n@fake reply=Migrated the users table.\\nSTATUS: partial orders table still to do"
    )
    res = (await real_tools("dispatch", agent="alpha", task=task)).ok
    assert _partial(res) and res["result"] == "Migrated the users table."
    assert only(ws.runs())["session_id"] == res["session_id"]
