"""The fuzz tier: random lines on the wire and random arguments to every tool.

Asserts what a client relies on, whatever it sends: every request line gets
exactly one reply, the server keeps serving, and no tool answers "internal
error". Runs in CI with a small, fixed set of examples per test; for a long run
that draws fresh examples:

    HYPOTHESIS_PROFILE=explore AGENT_DISPATCH_FUZZ_EXAMPLES=2000 scripts/test tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.front_support import harness
from tests.server_support import Tools, Workspace, in_memory_server

pytest_plugins = ("tests.server_fixtures",)  # ws

EXAMPLES = int(os.environ.get("AGENT_DISPATCH_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- values a careless or hostile client sends -------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.text(alphabet=st.characters(categories=["Cs", "Cc", "Zl"]), max_size=8)  # surrogates
    | st.sampled_from(["alpha", "beta", "team", "-x", "../etc", "0" * 32, "a" * 5000, ""])
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


hostile = json_values | st.integers(min_value=50, max_value=400).map(nested)
# What an MCP client can send as arguments at all (its own serializer stops near 100 levels).
hostile_arguments = (
    json_values
    | st.integers(min_value=10, max_value=60).map(nested)
    | st.sampled_from([1000, 5000, 50_000]).map(lambda n: "[" * n + "]" * n)  # JSON text
)


def needs_reply(line: bytes) -> bool:
    """JSON-RPC 2.0 section 5, independent of our code: everything but a valid notification
    or a response needs an answer."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return True
    if not isinstance(message, dict):
        return not (isinstance(message, list) and message and all(_is_note(m) for m in message))
    return not (_is_note(message) or ("method" not in message and _is_answer(message)))


def _is_note(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
        and "id" not in message
    )


def _is_answer(message: dict[str, Any]) -> bool:
    return "id" in message and ("result" in message or "error" in message)


def dumps(value: Any) -> bytes:
    try:
        return json.dumps(value).encode("utf-8", "surrogatepass")
    except RecursionError:
        return b"[" * 2000


raw_lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ").strip() or b"x"),
    json_values.map(dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": st.sampled_from(["2.0", "1.0"]) | scalars,
            "id": scalars,
            "method": st.sampled_from(["ping", "tools/list", "notifications/x"]) | scalars,
            "params": hostile,
        },
    ).map(dumps),
    st.integers(min_value=100, max_value=5000).map(lambda n: b"[" * n),
    st.integers(min_value=1, max_value=3).map(lambda n: b'{"jsonrpc":"2.0","id":' + b"7" * n * 40),
)


@FUZZ
@given(st.lists(raw_lines, min_size=1, max_size=12))
async def test_every_request_line_gets_exactly_one_reply_and_serving_goes_on(
    ws: Workspace, lines: list[bytes]
) -> None:
    expected = sum(needs_reply(line) for line in lines)
    async with harness(ws) as h:
        h.start_sdk()
        await h.wire.send_raw(b"".join(line + b"\n" for line in lines))
        marker = {"jsonrpc": "2.0", "id": "fuzz-end", "method": "ping"}
        await h.wire.send(marker)
        got: list[Any] = []
        with trio.fail_after(20):
            while not any(isinstance(r, dict) and r.get("id") == "fuzz-end" for r in got):
                got.append(await h.wire.recv())
            while len(got) < expected + 1:  # requests the SDK works on concurrently may be later
                got.append(await h.wire.recv())
        await h.wire.close()
        with trio.fail_after(20):
            while (extra := await h.wire.recv()) is not None:
                got.append(extra)
    replies = [r for r in got if isinstance(r, list) or "id" in r]  # a batch: one array
    assert len(replies) == expected + 1, (lines, got)


# -- tool arguments ---------------------------------------------------------------------------


@asynccontextmanager
async def fuzz_server(ws: Workspace) -> AsyncIterator[tuple[Tools, dict[str, dict[str, Any]]]]:
    async with (
        in_memory_server(ws) as (_, server),
        mcp.Client(server, mode="legacy") as client,
    ):
        listed = await client.list_tools()
        schemas = {tool.name: tool.input_schema for tool in listed.tools}
        yield Tools(client, "legacy"), schemas


TOOL_NAMES = [
    "add_agent",
    "cache_clear",
    "cache_stats",
    "dispatch",
    "dispatch_async",
    "dispatch_cancel",
    "dispatch_dialogue",
    "dispatch_gc",
    "dispatch_jobs",
    "dispatch_parallel",
    "dispatch_session",
    "dispatch_status",
    "dispatch_stream",
    "dispatch_wait",
    "fetch_result",
    "inspect_agent",
    "inspect_group",
    "list_agents",
    "list_groups",
    "remove_agent",
    "update_agent",
]


_ABSENT = object()


def arguments_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Each known parameter absent, hostile or plausible; sometimes an unknown one too."""
    names = sorted(schema.get("properties", {}))
    plausible = st.sampled_from(["alpha", "beta", "do it", "0" * 32, 1, 0.5, True, []])
    values = st.one_of(st.just(_ABSENT), hostile_arguments, hostile_arguments, plausible)
    known = st.fixed_dictionaries(dict.fromkeys(names, values)).map(
        lambda drawn: {k: v for k, v in drawn.items() if v is not _ABSENT}
    )
    unknown = st.dictionaries(st.text(min_size=1, max_size=6), values, max_size=1).map(
        lambda drawn: {k: v for k, v in drawn.items() if v is not _ABSENT}
    )
    return st.tuples(known, unknown).map(lambda pair: {**pair[1], **pair[0]})


@pytest.mark.parametrize("tool", TOOL_NAMES)
async def test_no_argument_makes_a_tool_answer_internal_error(ws: Workspace, tool: str) -> None:
    # No claude can start: a valid dispatch fails fast instead of spawning children.
    ws.settings["claude_path"] = str(Path(ws.root) / "no-such-claude")
    ws.write_config()
    good_config = ws.config.read_bytes()
    async with fuzz_server(ws) as (tools, schemas):
        assert sorted(schemas) == sorted(TOOL_NAMES)

        async def call(args: dict[str, Any]) -> None:
            with trio.fail_after(20):
                reply = await tools.call(tool, args)
            assert "internal error" not in reply.text, (tool, args, reply.text)
            if reply.is_error and isinstance(reply.data, dict) and "error" in reply.data:
                assert reply.data.get("hint"), (tool, args, reply.text)
            ws.write_raw(good_config)  # an edit that landed must not steer the next example

        # Hypothesis drives sync tests: it runs in a thread and calls back into this loop.
        @FUZZ
        @given(arguments_for(schemas[tool]))
        def check(args: dict[str, Any]) -> None:
            trio.from_thread.run(call, args)

        await trio.to_thread.run_sync(check)
        alive = await tools("list_agents")
        assert not alive.is_error
