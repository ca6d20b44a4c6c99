"""The wire, sans IO: framing lines, judging each as the SDK would, answering what it drops."""

from __future__ import annotations

import json
from typing import Any

import mcp_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.server import wire
from agent_dispatch.server.wire import Drop, Forward, Line, LineSplitter, Oversized, Reply, vet

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def line(message: Any) -> bytes:
    return json.dumps(message).encode()


def replies(verdict: wire.Verdict) -> list[dict[str, Any]]:
    assert isinstance(verdict, Reply), verdict
    return verdict.message if isinstance(verdict.message, list) else [verdict.message]


def only_reply(verdict: wire.Verdict) -> tuple[Any, int]:
    (reply,) = replies(verdict)
    return reply["id"], reply["error"]["code"]


def sdk_reads(data: bytes) -> Any:
    """What mcp 2.3's transport makes of the line; None for a line it drops."""
    try:
        return mcp_types.jsonrpc_message_adapter.validate_json(data.decode("utf-8", "replace"))
    except Exception:
        return None


def sdk_accepts(data: bytes) -> bool:
    return sdk_reads(data) is not None


def sdk_answers(data: bytes) -> bool:
    """Whether the SDK would answer the line: only what it reads as a request."""
    return isinstance(sdk_reads(data), mcp_types.JSONRPCRequest)


# --- framing -------------------------------------------------------------------------------


def test_lines_are_split_across_chunks_and_the_last_one_needs_no_newline() -> None:
    splitter = LineSplitter(100)
    frames = splitter.feed(b'{"a"') + splitter.feed(b":1}\n{}\n\n") + splitter.feed(b"tail")
    assert frames == [Line(b'{"a":1}'), Line(b"{}"), Line(b"")]
    assert splitter.end() == [Line(b"tail")]
    assert splitter.end() == []


def test_an_oversized_line_is_reported_with_its_size_and_id_and_the_next_line_survives() -> None:
    splitter = LineSplitter(64)
    big = b'{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"x":"' + b"a" * 500 + b'"}}'
    frames = []
    for i in range(0, len(big), 7):  # arrives in small chunks
        frames += splitter.feed(big[i : i + 7])
    frames += splitter.feed(b"\n" + line(PING) + b"\n")
    assert frames == [Oversized(len(big), 42), Line(line(PING))]


def test_an_oversized_line_keeps_only_its_ends_in_memory() -> None:
    splitter = LineSplitter(1000)
    splitter.feed(b"[" + b"1," * 50_000)
    assert len(splitter._buffer) == 0 and len(splitter._head) + len(splitter._tail) <= 8192
    (frame,) = splitter.feed(b"1]\n")
    assert isinstance(frame, Oversized) and frame.size == 100_003


def test_an_oversized_line_finds_an_id_written_last() -> None:
    """Node clients write the id after the params: it shows at the tail."""
    splitter = LineSplitter(32)
    message = b'{"method":"tools/call","params":{"task":"' + b"z" * 100 + b'"},"id":"abc"}\n'
    assert splitter.feed(message) == [Oversized(len(message) - 1, "abc")]


def test_an_oversized_last_line_at_eof_is_still_reported() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"0123456789") == []
    assert splitter.end() == [Oversized(10, None)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=20),
    st.integers(min_value=1, max_value=50),
)
def test_splitting_never_depends_on_how_the_bytes_are_chunked(
    lines: list[bytes], cuts: list[int], cap: int
) -> None:
    data = b"".join(x + b"\n" for x in lines)
    expected = [Line(x) if len(x) <= cap else Oversized(len(x), None) for x in lines]
    splitter, frames, at = LineSplitter(cap), [], 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        frames += splitter.feed(data[at : at + cut])
        at += cut
    frames += splitter.feed(data[at:]) + splitter.end()
    got = [Oversized(f.size, None) if isinstance(f, Oversized) else f for f in frames]
    assert got == expected


# --- vetting: what the SDK would drop gets one answer here ---------------------------------


@pytest.mark.parametrize(
    ("raw", "rid", "code"),
    [
        pytest.param(b"[" * 1000, None, -32700, id="1000-open-brackets"),
        pytest.param(b"[" * 100_000, None, -32700, id="100000-open-brackets"),
        pytest.param(b"garbage", None, -32700, id="not-json"),
        pytest.param(b"\x1c", None, -32700, id="a-control-char-python-calls-space"),
        pytest.param(b"\x0b\x0c", None, -32700, id="vertical-tab-and-form-feed"),
        pytest.param(b"[]", None, -32600, id="empty-batch"),
        pytest.param(b'"str"', None, -32600, id="a-string"),
        pytest.param(b"null", None, -32600, id="null"),
        pytest.param(b"42", None, -32600, id="a-number"),
        pytest.param(b'{"jsonrpc":"1.0","id":3,"method":"ping"}', 3, -32600, id="jsonrpc-1.0"),
        pytest.param(b'{"id":4,"method":"ping"}', 4, -32600, id="jsonrpc-missing"),
        pytest.param(b'{"jsonrpc":"2.0","id":null,"method":"ping"}', None, -32600, id="id-null"),
        pytest.param(b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', None, -32600, id="id-float"),
        pytest.param(b'{"jsonrpc":"2.0","id":true,"method":"ping"}', None, -32600, id="id-bool"),
        pytest.param(b'{"jsonrpc":"2.0","id":{},"method":"ping"}', None, -32600, id="id-object"),
        pytest.param(b'{"jsonrpc":"2.0","id":5,"method":7}', 5, -32600, id="method-number"),
        pytest.param(b'{"jsonrpc":"2.0","id":6}', 6, -32600, id="no-method"),
        pytest.param(b'{"jsonrpc":"2.0","id":8,"method":"x","params":[1]}', 8, -32602, id="list"),
        pytest.param(b"{}", None, -32600, id="empty-object"),
        pytest.param(b'{"method":"notifications/x"}', None, -32600, id="unversioned-notification"),
        pytest.param(b'{"jsonrpc":"2.0","method":1}', None, -32600, id="method-1-no-id"),
    ],
)
def test_every_line_the_sdk_would_drop_gets_one_error_reply(
    raw: bytes, rid: object, code: int
) -> None:
    assert not sdk_answers(raw)  # the SDK drops it or reads a notification: no one else answers
    assert only_reply(vet(raw)) == (rid, code)


@pytest.mark.parametrize("depth", [70, 200, 500, 1000, 5000])
def test_a_request_nested_too_deep_for_the_sdk_is_answered_with_its_id(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    raw = b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"a":' + nested + b"}}"
    rid, code = only_reply(vet(raw))
    assert rid == 9 and code in (-32600, -32700)


def test_the_depth_cap_sits_below_what_the_sdk_takes() -> None:
    def nested(depth: int) -> bytes:
        return line({**PING, "params": {}})[:-2] + b"[" * depth + b"]" * depth + b"}"

    within = b'{"jsonrpc":"2.0","id":9,"method":"x","params":{"a":' + b"[" * 60 + b"]" * 60 + b"}}"
    assert sdk_accepts(within) and isinstance(vet(within), Forward)
    assert not sdk_accepts(nested(300))


def test_a_batch_answers_each_request_in_it_and_no_notification() -> None:
    batch = [PING, {"jsonrpc": "2.0", "method": "notifications/x"}, {"id": "b", "method": "y"}, 3]
    got = replies(vet(line(batch)))
    assert [r["id"] for r in got] == [1, "b", None]
    assert all(r["error"]["code"] == -32600 and "batch" in r["error"]["message"] for r in got)
    assert isinstance(vet(line([{"jsonrpc": "2.0", "method": "n"}])), Drop)


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": "x"},
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": 1, "message": "m"}},
    ],
)
def test_notifications_and_responses_are_never_answered(message: dict[str, Any]) -> None:
    assert not isinstance(vet(line(message)), Reply)


def test_a_request_is_forwarded_with_the_id_the_sdk_will_answer() -> None:
    verdict = vet(line({**PING, "id": "7"}))
    assert isinstance(verdict, Forward) and verdict.request == "7" and verdict.cancels is None
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
    verdict = vet(line(cancel))
    assert isinstance(verdict, Forward) and verdict.request is None and verdict.cancels == 7
    assert wire.request_key("7") == wire.request_key(7) == 7


def test_what_python_json_reads_passes_as_the_sdk_takes_it() -> None:
    big = b"123456789012345678901234567890"
    raw = b'{"jsonrpc":"2.0","id":' + big + b',"method":"ping","params":{"n":NaN}}'
    assert sdk_accepts(raw)
    verdict = vet(raw)
    assert isinstance(verdict, Forward) and verdict.request == 123456789012345678901234567890


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    verdict = vet(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\xff\xfe"}}')
    assert isinstance(verdict, Forward) and "\ufffd" in verdict.text


# --- properties: whatever arrives, exactly one answer for a request, never an exception -----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(),
        "method": st.sampled_from(["ping", "tools/list", "notifications/x"]) | json_values,
        "params": json_values,
        "result": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_a_line_the_sdk_would_drop_is_answered_unless_it_is_a_notification_or_answer(
    message: dict[str, Any],
) -> None:
    raw = line(message)
    verdict = vet(raw)
    if isinstance(verdict, Forward) and verdict.request is not None:
        assert sdk_reads(raw).id == verdict.request  # the SDK answers it, and only it
    elif isinstance(verdict, Reply):
        assert replies(verdict) and not sdk_answers(raw)  # we answer it, and only we
    else:  # needs no answer: a notification or a response
        assert not sdk_answers(raw)
        assert "id" not in message or "result" in message or "error" in message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_judged_without_raising(data: bytes) -> None:
    verdict = vet(data.replace(b"\n", b" "))
    if isinstance(verdict, Reply):
        for reply in replies(verdict):
            assert reply["id"] is None or isinstance(reply["id"], str | int)
            json.dumps(reply)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=3000), st.sampled_from([b"[", b"{", b'{"a":']))
def test_any_nesting_is_judged_without_raising(depth: int, opener: bytes) -> None:
    verdict = vet(opener * depth)
    assert isinstance(verdict, Reply)
