"""Hostile tool arguments over MCP: JSON strings the decoder refuses, over-long names.

Each answer is the `{"error", "hint"}` envelope of an invalid argument, never
"internal error", and the server serves on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.runtime.scripted import ScriptedRunner
from agent_dispatch.server.toolkit import json_argument
from tests.server_support import Tools, Workspace

pytest_plugins = ("tests.server_fixtures",)  # ws, runner, served, tools

UNDECODABLE_JSON = {
    "open-brackets": "[" * 100_000,
    "deeply-nested": "[" * 100_000 + "]" * 100_000,
    "nested-objects": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "huge-integer": "[" + "7" * 5000 + "]",
}


def required_arguments(ws: Workspace) -> dict[str, Any]:
    """A valid value for every required parameter of every tool (by parameter name)."""
    return {
        "name": "alpha",
        "directory": str(ws.alpha),
        "agent": "alpha",
        "task": "t",
        "requester": "alpha",
        "responder": "beta",
        "topic": "t",
        "job_id": "0" * 32,
        "ref": "0" * 32,
        "dispatches": [{"agent": "alpha", "task": "t"}],
    }


async def json_string_parameters(tools: Tools) -> list[tuple[str, str, list[str]]]:
    """(tool, parameter, required) for every parameter that is not a plain string.

    Those are the ones a client may send as a JSON string (the SDK pre-parses them,
    dispatch_parallel decodes `dispatches` itself).
    """
    found = []
    for tool in (await tools.client.list_tools()).tools:
        schema = tool.input_schema
        for param, spec in schema.get("properties", {}).items():
            if spec.get("type") != "string":
                found.append((tool.name, param, list(schema.get("required", []))))
    return found


@pytest.mark.parametrize("value", list(UNDECODABLE_JSON))
async def test_undecodable_json_in_any_argument_is_an_invalid_argument(
    tools: Tools, ws: Workspace, runner: ScriptedRunner, value: str
) -> None:
    valid = required_arguments(ws)
    params = await json_string_parameters(tools)
    assert ("dispatch_parallel", "dispatches", ["dispatches"]) in params
    assert len(params) > 10  # numbers, booleans and lists across the tools
    for tool, param, required in params:
        args = {name: valid[name] for name in required}
        args[param] = UNDECODABLE_JSON[value]
        reply = await tools(tool, **args)
        envelope = reply.envelope
        assert "internal error" not in envelope["error"], (tool, param, envelope)
        assert param in envelope["error"], (tool, param, envelope)
    assert runner.calls == []
    assert (await tools("list_agents")).ok["agents"]  # the server serves on


async def test_dispatch_parallel_says_why_deep_json_was_refused(tools: Tools) -> None:
    envelope = (await tools("dispatch_parallel", dispatches="[" * 100_000)).envelope
    assert envelope["error"] == "dispatches: JSON nested too deeply to decode"
    assert '[{"agent": "backend"' in envelope["hint"]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
            max_leaves=20,
        ).map(json.dumps),
        st.integers(1, 3000).map(lambda n: "[" * n),
        st.integers(1, 3000).map(lambda n: '{"a":' * n + "0" + "}" * n),
    )
)
def test_json_argument_decodes_or_refuses_as_an_invalid_argument(text: str) -> None:
    try:
        value = json_argument("field", text, "a hint")
    except InvalidArgument as exc:
        assert exc.message.startswith("field: ")
        assert exc.hint == "a hint"
    else:
        assert value == json.loads(text)


LONG_NAME = "n" * 65


async def test_a_name_over_64_characters_is_refused_by_every_tool_that_takes_one(
    tools: Tools, ws: Workspace, runner: ScriptedRunner
) -> None:
    before = ws.config.read_bytes()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("add_agent", {"name": LONG_NAME, "directory": str(ws.alpha)}),
        ("update_agent", {"name": LONG_NAME, "description": "x"}),
        ("inspect_agent", {"name": LONG_NAME}),
        ("remove_agent", {"name": LONG_NAME}),
        ("inspect_group", {"name": LONG_NAME}),
        ("dispatch", {"agent": LONG_NAME, "task": "t"}),
        ("dispatch_parallel", {"dispatches": [{"agent": LONG_NAME, "task": "t"}]}),
        ("dispatch_dialogue", {"requester": "alpha", "responder": LONG_NAME, "topic": "t"}),
    ]
    for tool, args in calls:
        envelope = (await tools(tool, **args)).envelope
        assert "65 characters long, at most 64" in envelope["error"], (tool, envelope)
        assert LONG_NAME not in envelope["error"]
    assert ws.config.read_bytes() == before
    assert runner.calls == []
