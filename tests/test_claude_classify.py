"""Classifying a finished run: the same wording means the same thing on every stream.

Pure: exact CLI outputs (stdout, stderr, exit code) in, a DispatchResult out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.claude import classify as claude_classify
from agent_dispatch.models import OUTCOMES, DispatchResult, ErrorType
from agent_dispatch.server.remedies import present

SID = "0b8e3a1c-5d2f-4e6a-9b7c-1d2e3f405162"
SESSION_LIMIT = "You've hit your session limit · resets 6pm (Europe/Berlin)"
PLAN_MODE = "Tool_use is not allowed in this permission mode"
NO_SESSION = f"No conversation found with session ID: {SID}"


def _classify(stdout: bytes, **kw: Any) -> DispatchResult:
    kw.setdefault("agent", "web")
    kw.setdefault("returncode", 0)
    kw.setdefault("stderr", b"")
    kw.setdefault("timed_out", False)
    kw.setdefault("session_id", SID)
    # hints are read as the MCP face renders the classifier's advice
    return present(claude_classify.classify(stdout=stdout, **kw))


def _result_line(**fields: Any) -> bytes:
    obj = {"type": "result", "subtype": "success", "is_error": False, "result": "answer"}
    obj.update(fields)
    return msgspec.json.encode(obj) + b"\n"


def _on(stream: str, text: str) -> dict[str, Any]:
    """The arguments of a failed run (exit 1) whose only explanation is `text`, on `stream`."""
    if stream == "result":  # the JSON result object
        return {"stdout": _result_line(is_error=True, result=text), "returncode": 1}
    if stream == "errors":  # a result object without text, the reason in `errors`
        obj = {"type": "result", "subtype": "error_during_execution", "is_error": True}
        return {"stdout": msgspec.json.encode({**obj, "errors": [text]}), "returncode": 1}
    if stream == "stdout":  # plain text, no JSON at all
        return {"stdout": text.encode() + b"\n", "returncode": 1}
    # stderr only, stdout empty: how early failures are reported
    return {"stdout": b"", "stderr": text.encode() + b"\n", "returncode": 1}


STREAMS = ["result", "errors", "stdout", "stderr"]


# -- usage limits, whichever stream reports them ----------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_a_usage_limit_is_a_usage_limit_on_every_stream(stream: str) -> None:
    res = _classify(**_on(stream, SESSION_LIMIT))
    assert res.success is False
    assert res.error_type == "usage_limit"
    assert res.error is not None and SESSION_LIMIT in res.error
    assert res.hint is not None and "it resets 6pm (Europe/Berlin)" in res.hint


def test_a_usage_limit_only_on_stderr_keeps_its_exact_text_and_reset_time() -> None:
    stderr = SESSION_LIMIT.encode() + b"\n"
    res = _classify(b"", returncode=1, stderr=stderr)
    assert res.error == f"no result from claude (exit code 1): {SESSION_LIMIT}"
    assert res.error_type == "usage_limit"
    assert res.hint == (
        "The Claude account hit its usage limit; it resets 6pm (Europe/Berlin). "
        "Retry the same call after that."
    )


def test_a_usage_limit_on_stderr_beside_a_bare_error_result_is_a_usage_limit() -> None:
    stdout = b'{"type":"result","subtype":"error_during_execution","is_error":true}\n'
    stderr = b"Claude AI usage limit reached|1760000000\n"
    res = _classify(stdout, returncode=1, stderr=stderr)
    assert res.error_type == "usage_limit"
    assert res.hint is not None and "2025-10-09 08:53 UTC" in res.hint


def test_a_plain_text_reply_that_is_only_the_limit_notice_is_a_usage_limit() -> None:
    res = _classify(b"Claude AI usage limit reached|1760000000\n", returncode=0)
    assert res.success is False and res.error_type == "usage_limit"
    assert res.hint is not None and "2025-10-09 08:53 UTC" in res.hint


def test_the_main_error_wins_over_wording_on_the_other_stream() -> None:
    stdout = _result_line(is_error=True, result="Permission denied: Bash requires approval")
    res = _classify(stdout, returncode=1, stderr=b"warning: rate limit headers missing\n")
    assert res.error_type == "permission"


def test_stderr_chatter_does_not_fail_a_success() -> None:
    res = _classify(_result_line(result="done"), stderr=SESSION_LIMIT.encode())
    assert res.success is True and res.result == "done" and res.hint is None


# -- permission wording --------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_tool_use_not_allowed_in_the_permission_mode_is_a_permission_error(stream: str) -> None:
    res = _classify(**_on(stream, PLAN_MODE))
    assert res.success is False
    assert res.error_type == "permission"
    assert res.error is not None and PLAN_MODE in res.error
    assert res.hint is not None
    assert 'update_agent(name="web", allowed_tools=...)' in res.hint
    assert "permission_mode" in res.hint


@pytest.mark.parametrize("stream", STREAMS)
def test_a_file_the_os_refused_is_not_a_tool_permission(stream: str) -> None:
    text = "Error: EACCES: permission denied, open '/home/u/.claude.json'"
    res = _classify(**_on(stream, text))
    assert res.success is False and res.error_type == "cli_error"


# -- unknown sessions ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_an_unknown_session_hints_a_new_one_on_every_stream(stream: str) -> None:
    res = _classify(**_on(stream, NO_SESSION))
    assert res.success is False and res.error_type == "cli_error"
    assert res.session_id is None
    assert res.hint is not None and "without session_id" in res.hint


# -- a result followed by a process that would not exit ------------------------------------


def test_a_result_complete_before_the_deadline_says_the_finished_process_was_stopped(
    cli_samples: Path,
) -> None:
    data = (cli_samples / "json_success_2.1.332.json").read_bytes()
    res = _classify(
        data,
        returncode=-15,
        timed_out=True,
        stopped_after_result=True,
        timeout_seconds=2.0,
        agent_timeout=2.0,
    )
    assert res.success is True and res.result == "Hello from the fake Anthropic API."
    assert res.error_type is None
    assert res.hint == (
        "The result was complete before the deadline (2s); claude did not exit after "
        "printing it, so the finished process was stopped."
    )


def test_a_result_that_lingered_past_its_grace_says_the_process_was_stopped() -> None:
    res = _classify(_result_line(), returncode=143, stopped_after_result=True)
    assert res.success is True and res.result == "answer"
    assert res.hint == (
        "The result was complete; claude did not exit after printing it, "
        "so the finished process was stopped."
    )


def test_a_result_that_arrived_only_at_the_deadline_still_suggests_more_time() -> None:
    res = _classify(_result_line(), returncode=-15, timed_out=True, timeout_seconds=300.0)
    assert res.success is True
    assert res.hint is not None and "finished right at the deadline (300s)" in res.hint
    assert "timeout_seconds=600" in res.hint


# -- the agent's outcome (its last STATUS line) ------------------------------------------


def test_a_status_line_becomes_the_outcome_and_leaves_the_result() -> None:
    res = _classify(
        _result_line(result="Renamed 3 of 5 files.\nSTATUS: partial 2 files are locked")
    )
    assert (res.success, res.result) == (True, "Renamed 3 of 5 files.")
    assert (res.outcome, res.outcome_reason) == ("partial", "2 files are locked")
    assert f'dispatch_session(agent="web", session_id="{SID}"' in (res.hint or "")


def test_a_reply_without_a_status_line_is_unknown_and_kept_whole() -> None:
    res = _classify(_result_line(result="All done.\n"))
    assert (res.result, res.outcome, res.hint) == ("All done.\n", "unknown", None)


def test_a_plain_text_reply_has_its_status_line_read_too() -> None:
    res = _classify(b"Here you go.\n\n**STATUS:** done\n")
    assert (res.success, res.result, res.outcome) == (True, "Here you go.", "done")


def test_a_json_reply_parses_once_its_status_line_is_stripped() -> None:
    reply = '{"users": ["ada"]}\nSTATUS: done'
    res = _classify(_result_line(result=reply), response_format="json")
    assert res.parsed_result == {"users": ["ada"]}
    assert (res.result, res.outcome) == ('{"users": ["ada"]}', "done")
    fenced = "```json\n[1, 2]\n```\n\nSTATUS: blocked need the schema"
    res = _classify(_result_line(result=fenced), response_format="json")
    assert (res.parsed_result, res.outcome) == ([1, 2], "blocked")
    plain = _classify(b'{"n": 1}\nSTATUS: done\n', response_format="json")
    assert (plain.parsed_result, plain.outcome) == ({"n": 1}, "done")


def test_a_failed_run_has_no_outcome_even_when_its_text_has_a_status_line() -> None:
    res = _classify(
        _result_line(is_error=True, result="API Error: 500\nSTATUS: done"), returncode=1
    )
    assert res.success is False and res.outcome is None and res.outcome_reason is None
    assert "outcome" not in msgspec.to_builtins(res)


# -- any output at all --------------------------------------------------------------------

KNOWN_TYPES = set(get_args(ErrorType))
_TEXTS = [SESSION_LIMIT, PLAN_MODE, NO_SESSION, "Claude AI usage limit reached|9999999999999"]
_fragments = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([t.encode() for t in _TEXTS]),
    st.builds(
        lambda **kw: _result_line(**kw),
        is_error=st.booleans(),
        result=st.one_of(st.none(), st.text(max_size=80), st.sampled_from(_TEXTS)),
        subtype=st.sampled_from(["success", "error_max_turns", "error_max_budget_usd", "x"]),
        api_error_status=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
        permission_denials=st.lists(
            st.fixed_dictionaries({"tool_name": st.text(max_size=5)}), max_size=3
        ),
    ),
)
_streams = st.lists(_fragments, max_size=4).map(b"\n".join)
_seconds = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(
    stdout=_streams,
    stderr=_streams,
    returncode=st.one_of(st.none(), st.integers(-(2**31), 2**31)),
    timed_out=st.booleans(),
    stopped_after_result=st.booleans(),
    session_id=st.one_of(st.none(), st.just(SID), st.text(max_size=20)),
    timeout_seconds=_seconds,
    agent_timeout=_seconds,
    max_budget_usd=_seconds,
    response_format=st.sampled_from(["", "json"]),
)
def test_any_output_classifies_without_raising_into_a_known_result(**kw: Any) -> None:
    res = claude_classify.classify(agent="web", **kw)
    msgspec.json.encode(res)  # it reaches the client as JSON
    if res.success:
        assert res.error is None and res.error_type is None
        assert res.outcome in OUTCOMES
    else:
        assert res.error and res.error_type in KNOWN_TYPES
        assert res.outcome is None
