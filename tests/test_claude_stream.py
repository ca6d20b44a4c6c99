"""StreamParser's progress events: tool calls with their name and bounded input."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.claude.output import StreamParser
from agent_dispatch.models import MAX_TOOL_INPUT_BYTES, PROGRESS_KINDS, ProgressEvent


def _assistant(*blocks: Any) -> bytes:
    return msgspec.json.encode({"type": "assistant", "message": {"content": list(blocks)}})


def _tool_use(**block: Any) -> bytes:
    return _assistant({"type": "tool_use", "id": "toolu_1", **block})


def test_a_tool_call_carries_the_tools_name_and_its_input_as_sent() -> None:
    tool_input = {"file_path": "/tmp/x.py", "edits": [{"old": "a", "new": "b"}], "n": 1.5}
    (event,) = StreamParser().feed_line(_tool_use(name="Edit", input=tool_input))
    assert event == ProgressEvent(
        "tool_use", "Using tool: Edit", tool="Edit", tool_input=tool_input
    )


def test_a_tool_input_at_the_bound_is_kept_and_one_byte_over_is_dropped_and_flagged() -> None:
    overhead = len(msgspec.json.encode({"content": ""}))
    fits = {"content": "x" * (MAX_TOOL_INPUT_BYTES - overhead)}
    assert len(msgspec.json.encode(fits)) == MAX_TOOL_INPUT_BYTES
    (kept,) = StreamParser().feed_line(_tool_use(name="Write", input=fits))
    assert (kept.tool_input, kept.tool_input_dropped) == (fits, False)
    over = {"content": fits["content"] + "x"}
    (dropped,) = StreamParser().feed_line(_tool_use(name="Write", input=over))
    assert (dropped.tool, dropped.tool_input, dropped.tool_input_dropped) == ("Write", None, True)
    assert dropped.message == "Using tool: Write"


def test_a_tool_call_without_a_name_or_input_says_so_and_keeps_its_old_message() -> None:
    (event,) = StreamParser().feed_line(_tool_use(name=7))
    assert event == ProgressEvent("tool_use", "Using tool: ?")
    assert event.tool is None and event.tool_input is None and not event.tool_input_dropped


def test_a_tool_name_is_cut_like_the_message_always_was() -> None:
    (event,) = StreamParser().feed_line(_tool_use(name="T" * 500, input={}))
    assert event.tool == "T" * 100 and event.message == f"Using tool: {'T' * 100}"
    assert event.tool_input == {}


def test_text_and_tool_events_of_one_message_keep_their_order() -> None:
    line = _assistant(
        {"type": "text", "text": "Reading."},
        {"type": "tool_use", "name": "Read", "input": {"file_path": "a"}},
        {"type": "tool_use", "name": "Grep", "input": {"pattern": "b"}},
    )
    events = StreamParser().feed_line(line)
    assert [(e.kind, e.tool) for e in events] == [
        ("text", None),
        ("tool_use", "Read"),
        ("tool_use", "Grep"),
    ]


# -- hostile lines -------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    # a long string, built cheaply: crosses the input bound now and then
    | st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=4), st.integers(0, 12_000)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_tool_use_block = st.fixed_dictionaries(
    {"type": st.just("tool_use")},
    optional={
        "name": st.text(max_size=200) | _json,
        "input": st.dictionaries(st.text(max_size=8), _json, max_size=3) | _json,
    },
)
_block = _tool_use_block | st.fixed_dictionaries({"type": st.just("text"), "text": _json}) | _json
_content = st.lists(_block, max_size=4)
_message = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["assistant", "assistant", "assistant", "system", "result"]),
        "message": st.fixed_dictionaries({"content": _content}) | _json,
    },
    optional={"subtype": st.just("api_retry") | _json, "session_id": _json},
)
# Damage done to a valid line: lone surrogate escapes, stray bytes, a cut-off end.
_INJECTIONS = [b"\\ud800", b"\\udc00x", b"\\\\ud800", b"\xff\xfe", b"\x00", b"\\u0000"]


@st.composite
def _hostile_line(draw: st.DrawFn) -> bytes:
    line = msgspec.json.encode(draw(_message))
    damage = draw(st.sampled_from(["none", "none", "inject", "cut"]))
    if damage == "inject":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from(_INJECTIONS)) + line[at:]
    elif damage == "cut":
        line = line[: draw(st.integers(0, len(line)))]
    return line


@settings(max_examples=200, deadline=None)
@given(st.lists(_hostile_line() | st.binary(max_size=64), max_size=4))
def test_hostile_stream_lines_never_raise_and_every_tool_input_is_bounded(
    lines: list[bytes],
) -> None:
    parser = StreamParser()
    for line in lines:
        for event in parser.feed_line(line):
            assert event.kind in PROGRESS_KINDS
            msgspec.json.encode(event).decode("utf-8")  # no lone surrogate anywhere
            if event.kind != "tool_use":
                assert (event.tool, event.tool_input, event.tool_input_dropped) == (
                    None,
                    None,
                    False,
                )
                continue
            assert event.message == f"Using tool: {event.tool or '?'}"
            assert event.tool is None or 0 < len(event.tool) <= 100
            if event.tool_input_dropped:
                assert event.tool_input is None
            else:
                assert len(msgspec.json.encode(event.tool_input)) <= MAX_TOOL_INPUT_BYTES
