"""Every agent, group, cache and dispatch tool through an in-memory MCP client.

Each test runs twice: with the default client (the modern in-process path) and
with `mode="legacy"` (real JSON-RPC framing over memory streams). Runs go to the
ScriptedRunner (`runner`); one test per dispatch path (`real_tools`) goes down to
a real child, the fake claude, through ClaudeRunner.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import yaml

from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.dispatcher import Dispatcher
from tests.server_support import (
    ProgressLog,
    Reply,
    Tools,
    Workspace,
    only,
)

pytest_plugins = ("tests.server_fixtures",)  # ws, runner, served, tools, real_tools

BAD_NAMES = ["bad name", "x\n", "", "../alpha", "-flag"]


# -- agents and groups -------------------------------------------------------------------


async def test_list_agents_shows_each_agent_with_its_detected_facts(tools: Tools) -> None:
    agents = (await tools("list_agents")).ok["agents"]
    assert [a["name"] for a in agents] == ["alpha", "beta"]
    alpha = agents[0]
    assert alpha["description"] == "billing"
    assert alpha["healthy"] is True
    assert alpha["has_claude_md"] is True
    assert alpha["has_mcp_config"] is False
    assert "permission_mode" not in alpha  # only when set


async def test_inspect_agent_gives_config_groups_and_previews(tools: Tools, ws: Workspace) -> None:
    info = (await tools("inspect_agent", name="alpha")).ok
    assert info["config"]["directory"] == str(ws.alpha)
    assert info["groups"] == ["team"]
    assert "billing and invoices" in info["claude_md_preview"]
    short = (await tools("inspect_agent", name="alpha", preview_lines=0)).ok
    assert "claude_md_preview" not in short
    clamped = (await tools("inspect_agent", name="alpha", preview_lines=10**6)).ok
    assert clamped["claude_md_preview"] == info["claude_md_preview"]


async def test_agent_tools_reject_unknown_and_invalid_names(tools: Tools) -> None:
    for tool in ("inspect_agent", "remove_agent", "update_agent"):
        unknown = (await tools(tool, name="nobody")).envelope
        assert "nobody" in unknown["error"]
        assert "list_agents" in unknown["hint"]
        for bad in BAD_NAMES:
            assert (await tools(tool, name=bad)).envelope, (tool, bad)


async def test_groups_are_listed_with_dangling_members_flagged(tools: Tools) -> None:
    groups = (await tools("list_groups")).ok["groups"]
    team = only(groups)
    assert team["name"] == "team"
    assert team["members"] == [
        {"agent": "alpha", "use_for": "money"},
        {"agent": "ghost", "use_for": "haunting", "unknown": True},
    ]
    info = (await tools("inspect_group", name="team")).ok
    assert info["shared_context"] == "We ship on Fridays."
    assert "list_groups" in (await tools("inspect_group", name="nope")).envelope["hint"]
    for bad in BAD_NAMES:
        assert (await tools("inspect_group", name=bad)).envelope


async def test_add_agent_stores_it_with_an_auto_description(tools: Tools, ws: Workspace) -> None:
    project = ws.root / "gamma"
    project.mkdir()
    (project / "README.md").write_text("# Gamma\n\nGamma keeps the search index fresh.\n")
    added = (
        await tools(
            "add_agent",
            name="gamma",
            directory=str(project),
            timeout=60,
            max_budget_usd=0.5,
            permission_mode="plan",
            allowed_tools="Read, Bash(git log:*, git diff:*)",
            disallowed_tools="[]",
            capabilities="search, index",
        )
    ).ok
    assert added["added"] == "gamma"
    agent = added["agent"]
    assert agent["directory"] == str(project)
    assert "search index" in agent["description"]
    assert agent["timeout"] == 60
    assert agent["max_budget_usd"] == 0.5
    assert agent["allowed_tools"] == ["Read", "Bash(git log:*, git diff:*)"]
    assert agent["disallowed_tools"] == []
    assert agent["capabilities"] == ["search", "index"]
    stored = yaml.safe_load(ws.config.read_text())["agents"]["gamma"]
    assert stored["permission_mode"] == "plan"
    names = [a["name"] for a in (await tools("list_agents")).ok["agents"]]
    assert names == ["alpha", "beta", "gamma"]


ADD_AGENT_REJECTS: list[tuple[dict[str, Any], str]] = [
    ({"name": "bad name"}, "name"),
    ({"name": "x\n"}, "name"),
    ({"name": "alpha"}, "already exists"),
    ({"directory": "/nonexistent/agent-dispatch-test"}, "does not exist"),
    ({"directory": ""}, "directory"),
    ({"timeout": -5}, "timeout"),
    ({"max_budget_usd": -1}, "max_budget_usd"),
    ({"max_budget_usd": float("nan")}, "max_budget_usd"),
    ({"permission_mode": "yolo"}, "permission_mode"),
    ({"allowed_tools": "--evil"}, "allowed_tools"),
    ({"model": "--evil"}, "model"),
]


async def test_add_agent_rejects_bad_input_and_stores_nothing(tools: Tools, ws: Workspace) -> None:
    before = ws.config.read_bytes()
    for args, words in ADD_AGENT_REJECTS:
        call = {"name": "newbie", "directory": str(ws.beta), **args}
        envelope = (await tools("add_agent", **call)).envelope
        assert words in envelope["error"], args
    assert ws.config.read_bytes() == before


async def test_update_agent_changes_and_clears_fields(tools: Tools, ws: Workspace) -> None:
    out = (
        await tools("update_agent", name="alpha", model="opus", timeout=42, description="money")
    ).ok
    assert out == {"updated": "alpha", "fields": ["description", "model", "timeout"]}
    cleared = (await tools("update_agent", name="alpha", model="none")).ok
    assert cleared["fields"] == ["model"]
    agent = (await tools("inspect_agent", name="alpha", preview_lines=0)).ok["config"]
    assert agent["timeout"] == 42
    assert agent["description"] == "money"
    assert agent.get("model") is None
    assert (await tools("update_agent", name="alpha")).ok["fields"] == []  # all unchanged


async def test_update_agent_clears_numbers_with_none(tools: Tools) -> None:
    await tools("update_agent", name="alpha", timeout=42, max_budget_usd=2.5)
    out = (await tools("update_agent", name="alpha", timeout="none", max_budget_usd="NONE")).ok
    assert out["fields"] == ["max_budget_usd", "timeout"]
    agent = (await tools("inspect_agent", name="alpha", preview_lines=0)).ok["config"]
    assert agent["timeout"] == 300 and agent.get("max_budget_usd") is None


async def test_update_agent_rejects_bad_values(tools: Tools, ws: Workspace) -> None:
    before = ws.config.read_bytes()
    for args in (
        {"timeout": -1},
        {"max_budget_usd": -0.01},
        {"directory": "/nonexistent/agent-dispatch-test"},
        {"permission_mode": "sometimes"},
        {"model": "--evil"},
        {"model": "x\ny"},  # saved, it would break every later dispatch
        {"timeout": 1.5},  # whole seconds
        {"timeout": 10**400},  # a week at most, not an OverflowError at dispatch time
        {"timeout": "soon"},
        {"max_budget_usd": "lots"},
    ):
        assert (await tools("update_agent", name="alpha", **args)).envelope, args
    assert ws.config.read_bytes() == before


async def test_remove_agent_forgets_it_and_keeps_its_directory(tools: Tools, ws: Workspace) -> None:
    assert (await tools("remove_agent", name="beta")).ok == {"removed": "beta"}
    assert ws.beta.is_dir()
    assert [a["name"] for a in (await tools("list_agents")).ok["agents"]] == ["alpha"]
    assert (await tools("remove_agent", name="beta")).envelope


# -- dispatch ---------------------------------------------------------------------------


async def test_dispatch_with_json_format_and_group_context(
    tools: Tools, runner: ScriptedRunner
) -> None:
    runner.on(Script(reply='```json\n{"n": 3}\n```'), prompt="numbers")
    res = (
        await tools(
            "dispatch",
            agent="alpha",
            task="numbers",
            response_format="json",
            group="team",
            caller="the tests",
            goal="check the prompt",
        )
    ).ok
    assert res["parsed_result"] == {"n": 3}
    prompt = only(runner.calls).prompt
    for part in ("## Goal", "## Dispatched by", "We ship on Fridays.", "money", "## Task"):
        assert part in prompt
    plain = (await tools("dispatch", agent="alpha", task="prose", response_format="json")).ok
    assert plain["parsed_result"] is None  # did not parse, still a success
    assert plain["success"] is True


DISPATCH_REJECTS: list[tuple[dict[str, Any], str]] = [
    ({"agent": "nobody"}, "unknown agent"),
    ({"agent": "bad name"}, "invalid agent name"),
    ({"agent": "alpha\n"}, "invalid agent name"),
    ({"task": "   "}, "task"),
    ({"timeout_seconds": -1}, "timeout_seconds"),
    ({"response_format": "xml"}, "response_format"),
    ({"group": "nogroup"}, "unknown group"),
    ({"agent": "beta", "group": "team"}, "not a member"),
]


async def test_dispatch_rejects_bad_input_without_running(
    tools: Tools, runner: ScriptedRunner
) -> None:
    for args, words in DISPATCH_REJECTS:
        call = {"agent": "alpha", "task": "do it", **args}
        reply = await tools("dispatch", **call)
        assert words in reply.envelope["error"], args
    assert runner.calls == []


async def test_a_failed_run_is_a_result_with_error_type_and_hint(
    tools: Tools, runner: ScriptedRunner
) -> None:
    budget_stop = {  # what claude prints when --max-budget-usd stopped it
        "subtype": "error_max_budget_usd",
        "is_error": True,
        "result": None,
        "errors": ["Reached maximum budget ($0)"],
        "terminal_reason": "budget_exhausted",
    }
    runner.on(Script(fields=budget_stop, cost=9.0, returncode=1), prompt="spend")
    res = (await tools("dispatch", agent="alpha", task="spend")).ok
    assert res["success"] is False
    assert res["error_type"] == "budget"
    assert res["budget_exceeded"] is True
    assert res["hint"]


WRONG_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"timeout_seconds": "soon"}, "timeout_seconds"),
    ({"task": 5}, "task"),
    ({"task": None}, "task"),
    ({"return_ref": "maybe"}, "return_ref"),
    # JSON has no NaN or infinity: the client sends null, which is not a number either.
    ({"timeout_seconds": float("nan")}, "timeout_seconds"),
    ({"timeout_seconds": float("inf")}, "timeout_seconds"),
    ({"summary_chars": -1e309}, "summary_chars"),
]


async def test_wrong_argument_types_get_the_envelope(tools: Tools, runner: ScriptedRunner) -> None:
    for args, field in WRONG_TYPES:
        envelope = (await tools("dispatch", **{"agent": "alpha", "task": "t", **args})).envelope
        assert field in envelope["error"], args
        assert "tools/list" in envelope["hint"]
    missing = (await tools("dispatch", agent="alpha")).envelope
    assert "task" in missing["error"]
    assert runner.calls == []


async def test_the_cache_answers_a_repeat_and_can_be_cleared(
    tools: Tools, runner: ScriptedRunner
) -> None:
    first = (await tools("dispatch", agent="alpha", task="cache me")).ok
    second = (await tools("dispatch", agent="alpha", task="cache me")).ok
    assert second["cached"] is True
    assert second["result"] == first["result"]
    assert len(runner.calls) == 1
    stats = (await tools("cache_stats")).ok
    assert stats["size"] == 1 and stats["hits"] == 1 and stats["misses"] == 1
    assert {"max_size", "evictions", "hit_rate", "ttl"} <= set(stats)
    assert (await tools("cache_clear")).ok == {"cleared": 1}
    assert (await tools("cache_stats")).ok["size"] == 0
    await tools("dispatch", agent="alpha", task="cache me")
    assert len(runner.calls) == 2


# -- dispatch_parallel ----------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["list", "json-string"])
async def test_dispatch_parallel_returns_results_in_input_order(
    tools: Tools, runner: ScriptedRunner, as_json: bool
) -> None:
    runner.on(Script(delay=0.1, reply="scripted reply to: slow one"), prompt="slow one")
    runner.on(Script(reply="third"), prompt="in the team")
    items = [
        {"agent": "alpha", "task": "slow one"},
        {"agent": "beta", "task": "quick one"},
        {"agent": "alpha", "task": "in the team", "group": "team"},
    ]
    progress = ProgressLog()
    dispatches = json.dumps(items) if as_json else items
    out = (await tools.call("dispatch_parallel", {"dispatches": dispatches}, progress)).ok
    results = out["results"]
    assert [r["result"] for r in results] == [
        "scripted reply to: slow one",
        "scripted reply to: quick one",
        "third",
    ]
    assert [r["agent"] for r in results] == ["alpha", "beta", "alpha"]
    assert len(runner.calls) == 3
    with trio.fail_after(5):
        await progress.wait_for(3)
    assert [(p, t) for p, t, _ in progress.ordered] == [(1, 3), (2, 3), (3, 3)]


async def test_dispatch_parallel_items_can_return_refs(
    tools: Tools, runner: ScriptedRunner
) -> None:
    runner.on(Script(reply=("word " * 100).strip()), prompt="long")
    items = [
        {"agent": "alpha", "task": "long", "return_ref": True, "summary_chars": 20},
        {"agent": "beta", "task": "short"},
    ]
    ref, plain = (await tools("dispatch_parallel", dispatches=items)).ok["results"]
    assert len(ref["summary"]) <= 21 and ref["size"] == len("word " * 100) - 1
    assert plain["result"] == "scripted reply to: short"
    fetched = (await tools("fetch_result", ref=ref["ref"])).ok
    assert fetched["result"] == ("word " * 100).strip()


PARALLEL_REJECTS: list[tuple[Any, str]] = [
    ('[{"agent": "alpha", "task": "x"', "not valid JSON"),
    ('{"agent": "alpha", "task": "x"}', "dispatches"),
    ('"just text"', "expected a list"),
    ("[]", "at least one"),
    ([], "at least one"),
    ([{"agent": "alpha", "task": "ok"}, {"agent": "nobody", "task": "x"}], "dispatches[1]"),
    ([{"agent": "alpha", "task": "ok"}, {"agent": "alpha"}], "dispatches[1]"),
    ([{"agent": "alpha", "task": "ok", "colour": "red"}], "dispatches[0]"),
    ([{"agent": "alpha", "task": "ok", "timeout_seconds": -1}], "timeout_seconds"),
    ([{"agent": "beta", "task": "ok", "group": "team"}], "not a member"),
    ([{"agent": "alpha", "task": "ok", "group": "nope"}], "unknown group"),
    ('[{"agent": "alpha", "task": "x", "timeout_seconds": NaN}]', "timeout_seconds"),
    ([5], "dispatches"),
    ([{"agent": "alpha", "task": "ok", "session_id": ""}], 'dispatches[0]: unknown field "se'),
    ([{"agent": "alpha", "task": "ok", "response_format": "xml"}], "expected one of '', json"),
]


async def test_dispatch_parallel_validates_the_whole_batch_before_running(
    tools: Tools, runner: ScriptedRunner
) -> None:
    for dispatches, words in PARALLEL_REJECTS:
        envelope = (await tools("dispatch_parallel", dispatches=dispatches)).envelope
        assert words in envelope["error"], dispatches
    assert runner.calls == []


async def test_dispatch_parallel_rejects_an_unknown_aggregate_and_huge_batches(
    tools: Tools, runner: ScriptedRunner
) -> None:
    one = [{"agent": "alpha", "task": "x"}]
    assert (
        "aggregate"
        in (await tools("dispatch_parallel", dispatches=one, aggregate="nobody")).envelope["error"]
    )
    huge = one * 101  # max(100, 20 x max_concurrency 5)
    assert "limit" in (await tools("dispatch_parallel", dispatches=huge)).envelope["error"]
    assert runner.calls == []


# -- dialogue -------------------------------------------------------------------------------


async def test_dispatch_dialogue_rejects_bad_input(tools: Tools, runner: ScriptedRunner) -> None:
    for args in (
        {"requester": "nobody"},
        {"responder": "bad name"},
        {"topic": "  "},
        {"max_rounds": "many"},
        {"responder": "alpha"},  # itself
    ):
        call = {"requester": "alpha", "responder": "beta", "topic": "t", **args}
        assert (await tools("dispatch_dialogue", **call)).envelope, args
    assert runner.calls == []


# -- a broken config ----------------------------------------------------------------------

BROKEN_CONFIGS = {  # bytes, and what the error must name
    "bad-yaml": (b"agents: [unclosed\n", "agents.yaml"),
    "wrong-types": (
        b"agents:\n  alpha:\n    directory: /tmp\n    timeout: soon\n",
        "agents.alpha.timeout",
    ),
    "unknown-key": (b"agents: {}\nsettingz: {}\n", "settingz"),
    "not-utf8": (b"agents:\n  alpha:\n    directory: /tmp/\xff\xfe\n", "UTF-8"),
}

CONFIG_TOOLS: list[tuple[str, dict[str, Any]]] = [
    ("list_agents", {}),
    ("inspect_agent", {"name": "alpha"}),
    ("list_groups", {}),
    ("inspect_group", {"name": "team"}),
    ("add_agent", {"name": "newbie", "directory": "/tmp"}),
    ("update_agent", {"name": "alpha", "description": "x"}),
    ("remove_agent", {"name": "alpha"}),
    ("dispatch", {"agent": "alpha", "task": "x"}),
    ("dispatch_session", {"agent": "alpha", "task": "x"}),
    ("dispatch_stream", {"agent": "alpha", "task": "x"}),
    ("dispatch_parallel", {"dispatches": [{"agent": "alpha", "task": "x"}]}),
    ("dispatch_dialogue", {"requester": "alpha", "responder": "beta", "topic": "x"}),
    ("dispatch_async", {"agent": "alpha", "task": "x"}),
    ("cache_stats", {}),
    ("cache_clear", {}),
]


@pytest.mark.parametrize("broken", list(BROKEN_CONFIGS))
async def test_a_broken_config_gives_every_tool_the_envelope_until_fixed(
    tools: Tools, ws: Workspace, runner: ScriptedRunner, broken: str
) -> None:
    good = ws.config.read_bytes()
    data, named = BROKEN_CONFIGS[broken]
    ws.write_raw(data)
    envelopes = []
    for tool, args in CONFIG_TOOLS:
        reply: Reply = await tools(tool, **args)
        envelopes.append(reply.envelope)
    assert named in envelopes[0]["error"]
    assert all(e == envelopes[0] for e in envelopes), envelopes  # the same config error
    assert ws.config.read_bytes() == data  # nothing rewrote it
    assert runner.calls == []
    ws.write_raw(good)
    assert [a["name"] for a in (await tools("list_agents")).ok["agents"]] == ["alpha", "beta"]
    with trio.fail_after(10):
        assert (await tools("dispatch", agent="alpha", task="back")).ok["success"] is True


async def test_unknown_argument_names_are_rejected_not_ignored(tools: Tools) -> None:
    envelope = (await tools("dispatch", agent="alpha", task="t", timeout=60)).envelope
    assert "unknown argument(s): timeout" in envelope["error"]
    assert "timeout_seconds" in envelope["hint"]


async def test_a_bug_in_a_tool_is_an_envelope_that_says_so(
    served: tuple[Tools, Dispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, dispatcher = served

    async def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(dispatcher, "dispatch", broken)
    envelope = (await tools("dispatch", agent="alpha", task="x")).envelope
    assert envelope["error"] == (
        "dispatch: internal error: OverflowError: int too large to convert to float"
    )
    assert "bug in agent-dispatch" in envelope["hint"]
    assert (await tools("list_agents")).ok["agents"]  # the server serves on


async def test_an_unknown_tool_is_an_envelope_naming_the_real_ones(tools: Tools) -> None:
    envelope = (await tools("dispatch_everything", agent="alpha")).envelope
    assert envelope["error"] == "unknown tool 'dispatch_everything'"
    assert "dispatch_parallel" in envelope["hint"] and "list_agents" in envelope["hint"]


async def test_an_error_quoting_a_huge_argument_stays_small(tools: Tools) -> None:
    huge = "j" * 100_000
    envelope = (await tools("dispatch", agent="alpha", task="x", response_format=huge)).envelope
    assert len(envelope["error"]) <= 2000 and "more characters]" in envelope["error"]
    envelope = (await tools("dispatch", agent="a" * 100_000, task="x")).envelope
    assert len(envelope["error"]) < 200  # a name is quoted cut to the longest valid one


async def test_a_tool_list_of_only_commas_is_a_typo_not_none(tools: Tools) -> None:
    envelope = (await tools("update_agent", name="alpha", allowed_tools=",,,")).envelope
    assert envelope["error"] == "allowed_tools: no tool names in ',,,'"
