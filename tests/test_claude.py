"""The Claude CLI adapter: argv, prompt, environment, decoding, classification (no I/O)."""

from __future__ import annotations

import math
import re
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent_dispatch.claude import classify as claude_classify
from agent_dispatch.claude import invocation as claude
from agent_dispatch.claude import output as claude_output
from agent_dispatch.claude import unstarted
from agent_dispatch.claude.invocation import Invocation, build_argv
from agent_dispatch.claude.output import CliOutput, StreamParser
from agent_dispatch.claude.status import split_status
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import DispatchResult, ProgressEvent
from agent_dispatch.remedies import advice
from agent_dispatch.server.remedies import present

SID = "0b8e3a1c-5d2f-4e6a-9b7c-1d2e3f405162"


def _inv(**kw: Any) -> Invocation:
    kw.setdefault("prompt", "do it")
    kw.setdefault("session_id", SID)
    return Invocation(**kw)


def _read(cli_samples: Path, name: str) -> bytes:
    return (cli_samples / name).read_bytes()


def _classify(stdout: bytes, **kw: Any) -> DispatchResult:
    kw.setdefault("agent", "web")
    kw.setdefault("returncode", 0)
    kw.setdefault("stderr", b"")
    kw.setdefault("timed_out", False)
    kw.setdefault("session_id", SID)
    # hints are read as the MCP face renders the classifier's advice
    return present(claude_classify.classify(stdout=stdout, **kw))


def _encodable(res: DispatchResult) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(res))
    return out


# -- argv -------------------------------------------------------------------------


def test_argv_fresh_json():
    assert build_argv("claude", _inv()) == [
        "claude", "-p", "--output-format", "json", "--session-id", SID, "--", "do it",
    ]  # fmt: skip


def test_a_prompt_too_long_for_one_argument_leaves_argv_for_stdin():
    limit = claude.PROMPT_ARG_LIMIT
    fits = "é" * (limit // 2)  # bytes count, not characters: exactly at the limit
    assert build_argv("claude", _inv(prompt=fits))[-2:] == ["--", fits]
    assert claude.stdin_prompt(_inv(prompt=fits)) is None
    long = fits + "x"
    assert build_argv("claude", _inv(prompt=long)) == [
        "claude", "-p", "--output-format", "json", "--session-id", SID,
    ]  # fmt: skip
    assert claude.stdin_prompt(_inv(prompt=long)) == long.encode()


def test_argv_fresh_stream_adds_verbose():
    assert build_argv("/bin/claude", _inv(stream=True)) == [
        "/bin/claude", "-p", "--output-format", "stream-json", "--verbose",
        "--session-id", SID, "--", "do it",
    ]  # fmt: skip


def test_argv_resume_uses_resume_and_never_session_id():
    argv = build_argv("claude", _inv(resume=True))
    assert argv == ["claude", "-p", "--output-format", "json", "--resume", SID, "--", "do it"]
    assert "--session-id" not in argv


def test_argv_every_option_in_order():
    inv = _inv(
        model="sonnet",
        permission_mode="acceptEdits",
        allowed_tools=("Bash", "Read"),
        disallowed_tools=("Write",),
        max_budget_usd=0.5,
        append_system_prompt="Be terse.\n- never push",
    )
    assert build_argv("claude", inv) == [
        "claude", "-p", "--output-format", "json", "--session-id", SID,
        "--model", "sonnet",
        "--permission-mode", "acceptEdits",
        "--allowedTools=Bash,Read",
        "--disallowedTools=Write",
        "--max-budget-usd", "0.5",
        "--append-system-prompt=Be terse.\n- never push",
        "--", "do it",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("model", "opus", ["--model", "opus"]),
        ("permission_mode", "plan", ["--permission-mode", "plan"]),
        ("allowed_tools", ("Bash(git log:*)",), ["--allowedTools=Bash(git log:*)"]),
        ("disallowed_tools", ("Write", "Edit"), ["--disallowedTools=Write,Edit"]),
        ("max_budget_usd", 2, ["--max-budget-usd", "2.0"]),
        ("max_budget_usd", 1e-05, ["--max-budget-usd", "0.00001"]),
        ("append_system_prompt", "-starts with dash", ["--append-system-prompt=-starts with dash"]),
    ],
)
def test_argv_single_option(field: str, value: Any, flag: list[str]):
    argv = build_argv("claude", _inv(**{field: value}))
    head = ["claude", "-p", "--output-format", "json", "--session-id", SID]
    assert argv == [*head, *flag, "--", "do it"]


def test_argv_empty_lists_and_instructions_add_no_flags():
    argv = build_argv(
        "claude", _inv(allowed_tools=(), disallowed_tools=(), append_system_prompt="")
    )
    assert argv == ["claude", "-p", "--output-format", "json", "--session-id", SID, "--", "do it"]


@pytest.mark.parametrize("task", ["--model=x", "-p", "--", "--dangerously-skip-permissions", ""])
def test_flag_like_task_stays_the_prompt_after_double_dash(task: str):
    argv = build_argv("claude", _inv(prompt=task, model="sonnet", allowed_tools=("Bash",)))
    assert argv[-1] == task
    assert argv[-2] == "--"
    assert argv.index("--") == len(argv) - 2


def test_tool_list_cannot_swallow_the_prompt():
    argv = build_argv("claude", _inv(prompt="write the file", allowed_tools=("Bash", "Read")))
    tool_flags = [a for a in argv if a.startswith("--allowedTools")]
    # One self-contained token: commander never extends a `--flag=value` with later words.
    assert tool_flags == ["--allowedTools=Bash,Read"]
    i = argv.index("--allowedTools=Bash,Read")
    assert argv[i + 1].startswith("-")
    assert argv[argv.index("--") + 1] == "write the file"
    assert argv[-1] == "write the file"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("session_id", "-x"),
        ("session_id", ""),
        ("session_id", "not-a-uuid"),
        ("session_id", SID + "\n"),
        ("session_id", "{" + SID + "}"),
        ("model", "-x"),
        ("model", ""),
        ("model", "   "),
        ("model", "--dangerously-skip-permissions"),
        ("permission_mode", "-x"),
        ("permission_mode", "yolo"),
        ("permission_mode", ""),
        ("allowed_tools", ("-x",)),
        ("allowed_tools", ("Bash", " -p")),
        ("allowed_tools", ("",)),
        ("allowed_tools", ("  ",)),
        ("allowed_tools", ("Bash,Write",)),
        ("allowed_tools", "Bash"),
        ("disallowed_tools", ("-x",)),
        ("max_budget_usd", 0.0),
        ("max_budget_usd", -1.0),
        ("max_budget_usd", float("nan")),
        ("max_budget_usd", float("inf")),
        ("max_budget_usd", True),
        ("prompt", "nul\x00byte"),
        ("append_system_prompt", "nul\x00byte"),
    ],
)
def test_rejects_values_that_could_be_read_as_flags_or_are_invalid(field: str, value: Any):
    with pytest.raises(InvalidArgument) as info:
        build_argv("claude", _inv(**{field: value}))
    named = {"prompt": "task", "append_system_prompt": "instructions"}.get(field, field)
    assert info.value.message.startswith(named)


def test_rejection_carries_a_hint():
    with pytest.raises(InvalidArgument) as info:
        build_argv("claude", _inv(permission_mode="-x"))
    assert "acceptEdits" in info.value.hint


def test_every_known_permission_mode_is_accepted():
    from agent_dispatch.models import PERMISSION_MODES

    for mode in PERMISSION_MODES:
        assert build_argv("claude", _inv(permission_mode=mode))[6:8] == ["--permission-mode", mode]


def test_lone_surrogate_in_prompt_is_replaced_so_exec_cannot_fail():
    argv = build_argv("claude", _inv(prompt="a\ud800b"))
    assert argv[-1] == "a\ufffdb"
    assert all(isinstance(a.encode("utf-8"), bytes) for a in argv)


# -- prompt, environment, ids --------------------------------------------------


def test_prompt_is_the_task_alone_without_extras_then_the_status_footer():
    assert claude.build_prompt("fix the bug") == "fix the bug\n\n" + claude.STATUS_FOOTER


def test_prompt_sections_in_order_and_only_non_empty():
    end = "\n\n" + claude.STATUS_FOOTER
    prompt = claude.build_prompt("fix it", context="logs here", caller="ops", goal="ship")
    assert prompt == (
        "## Goal\nship\n\n## Dispatched by\nops\n\n## Context\nlogs here\n\n## Task\nfix it" + end
    )
    assert claude.build_prompt("fix it", caller="ops") == (
        "## Dispatched by\nops\n\n## Task\nfix it" + end
    )
    assert claude.build_prompt("fix it", goal="  ") == "fix it" + end


def test_prompt_json_footer_comes_before_the_status_footer():
    end = "\n\n" + claude.STATUS_FOOTER
    prompt = claude.build_prompt("list users", response_format="json")
    assert prompt == "list users\n\n" + claude.JSON_FOOTER + end
    assert "exactly one JSON value" in claude.JSON_FOOTER
    assert "no Markdown code fences" in claude.JSON_FOOTER
    assert "STATUS line" in claude.JSON_FOOTER  # the JSON rule leaves room for it
    with_ctx = claude.build_prompt("t", context="c", response_format="json")
    assert with_ctx.endswith("## Task\nt\n\n" + claude.JSON_FOOTER + end)


def test_the_status_footer_asks_for_each_outcome_the_parser_reads():
    """Each example the footer gives, written as the child's last line, reads back."""
    examples = re.findall(r"`(STATUS: [^`]*)`", claude.STATUS_FOOTER)
    read = [split_status(f"The answer.\n{line}") for line in examples]
    assert [(s.outcome, s.text) for s in read] == [
        ("done", "The answer."),
        ("partial", "The answer."),
        ("blocked", "The answer."),
    ]
    assert len(claude.STATUS_FOOTER) < 160  # paid on every dispatch


def test_child_env_drops_parent_session_markers_and_bumps_depth():
    base = {
        "PATH": "/bin",
        "CLAUDECODE": "1",
        "CLAUDE_CODE_ENTRYPOINT": "cli",
        "CLAUDE_CODE_SSE_PORT": "41234",  # the parent's IDE connection
        "X": "y",
    }
    env = claude.child_env(base, 2)
    assert env == {"PATH": "/bin", "X": "y", "AGENT_DISPATCH_DEPTH": "3"}
    assert "CLAUDECODE" in base  # the input is not mutated


@pytest.mark.parametrize(
    ("value", "depth"),
    [(None, 0), ("", 0), ("2", 2), (" 4 ", 4), ("-1", 0), ("abc", 0), ("1.5", 0), ("9" * 5000, 0)],
)
def test_current_depth(value: str | None, depth: int):
    env = {} if value is None else {"AGENT_DISPATCH_DEPTH": value}
    assert claude.current_depth(env) == depth


def test_new_session_id_is_a_fresh_uuid4():
    a, b = claude.new_session_id(), claude.new_session_id()
    assert a != b
    assert uuid.UUID(a).version == 4
    build_argv("claude", _inv(session_id=a))  # accepted as is


# -- decoding the recorded CLI output -----------------------------------------

SUCCESS = "Hello from the fake Anthropic API."
API_500 = "API Error: 500 Internal server error (fake)."


@pytest.mark.parametrize("name", ["json_success_2.1.197.json", "json_success_2.1.332.json"])
def test_success(cli_samples: Path, name: str):
    res = _classify(_read(cli_samples, name))
    assert res.success is True
    assert res.result == SUCCESS
    assert res.error is None and res.error_type is None
    assert res.session_id != SID  # the CLI's own id wins
    assert res.cost_usd is not None and res.cost_usd > 0
    assert res.num_turns == 1
    assert res.duration_ms is not None and res.duration_ms > 0
    assert res.denied_tools is None and res.budget_exceeded is None and res.hint is None


def test_success_fields_exact(cli_samples: Path):
    res = _classify(_read(cli_samples, "json_success_2.1.332.json"))
    assert res.session_id == "32d70c78-4360-410a-a26d-d9eb4c30713e"
    assert res.cost_usd == pytest.approx(0.00014)
    assert res.duration_ms == 177


def test_permission_denied_stays_success_with_denied_tools_and_hint(cli_samples: Path):
    res = _classify(_read(cli_samples, "json_permission_denied_2.1.332.json"))
    assert res.success is True
    assert res.result == "Done: the tool turn is over."
    assert res.denied_tools == ["Bash"]
    assert res.hint is not None
    assert 'update_agent(name="web", allowed_tools="Bash")' in res.hint
    assert "agent-dispatch update web --allowed-tools Bash" in res.hint


@pytest.mark.parametrize("name", ["json_max_budget_2.1.197.json", "json_max_budget_2.1.332.json"])
def test_budget_stop(cli_samples: Path, name: str):
    res = _classify(_read(cli_samples, name), returncode=1)
    assert res.success is False
    assert res.error_type == "budget"
    assert res.budget_exceeded is True
    assert res.error == "Reached maximum budget ($0.0001)"
    assert res.session_id is not None and res.session_id != SID
    assert res.hint is not None
    assert 'update_agent(name="web", max_budget_usd=' in res.hint
    assert "agent-dispatch update web --max-budget-usd" in res.hint
    assert f'dispatch_session(agent="web", session_id="{res.session_id}"' in res.hint


@pytest.mark.parametrize(
    ("seconds", "suggested"),
    [(300.0, 600), (10.0, 60), (4000.0, 7200), (None, 600), (math.inf, 600), (0.0, 600)],
)
def test_a_timeout_hint_suggests_a_value_not_a_placeholder(seconds, suggested):
    assert claude_classify.more_time(seconds) == suggested


@pytest.mark.parametrize(
    ("cap", "suggested"), [(0.5, 1.0), (0.0001, 0.01), (2.345, 4.69), (None, 1.0), (math.nan, 1.0)]
)
def test_a_budget_hint_suggests_a_value_in_cents(cap, suggested):
    assert claude_classify.more_budget(cap) == suggested


@pytest.mark.parametrize(
    ("ran_out", "agent_timeout", "fixes"),
    [
        (300.0, 300.0, (600, 600)),  # the agent's own ran out: store more, or ask for more
        (10.0, 300.0, (None, 60)),  # a short per-call deadline: never lower the agent's 300
        (5000.0, 300.0, (10000, 7200)),
        (7200.0, 7200.0, (14400, None)),  # past the per-call maximum: only the agent's
        (604800.0, 604800.0, (None, None)),  # nothing longer exists
        (None, None, (600, 600)),
    ],
)
def test_timeout_fixes_only_ever_give_more_time(ran_out, agent_timeout, fixes):
    assert claude_classify.timeout_fixes(ran_out, agent_timeout) == fixes


def test_a_short_per_call_deadline_is_not_fixed_by_lowering_the_agents_timeout():
    res = _classify(b"", returncode=None, timed_out=True, timeout_seconds=10.0, agent_timeout=300.0)
    assert res.hint is not None
    assert "update_agent" not in res.hint and "agent-dispatch update" not in res.hint
    assert "timeout_seconds=60 on the dispatch" in res.hint
    assert "the agent's own timeout is 300s: timeout_seconds=0 uses it" in res.hint


def test_a_run_that_had_the_longest_timeout_is_told_to_split_the_task():
    week = 604800.0
    res = _classify(b"", returncode=None, timed_out=True, timeout_seconds=week, agent_timeout=week)
    assert res.error_type == "timeout" and res.hint is not None
    assert "split the task" in res.hint and "timeout=" not in res.hint


def test_max_turns(cli_samples: Path):
    res = _classify(_read(cli_samples, "json_max_turns_2.1.332.json"), returncode=1)
    assert res.success is False
    assert res.error_type == "cli_error"
    assert res.error == "Reached maximum number of turns (1)"
    assert res.num_turns == 2


@pytest.mark.parametrize(
    "name",
    [
        "json_api_500_2.1.197.json",
        "json_api_500_2.1.332.json",
        "stream_json_api_retry_2.1.332.jsonl",
    ],
)
def test_api_500(cli_samples: Path, name: str):
    res = _classify(_read(cli_samples, name), returncode=1)
    assert res.success is False
    assert res.error_type == "cli_error"
    assert res.error is not None and res.error.startswith(API_500)
    assert res.result == ""


def test_api_401_mentions_status(cli_samples: Path):
    res = _classify(_read(cli_samples, "json_api_401_2.1.332.json"), returncode=1)
    assert res.success is False
    assert res.error_type == "cli_error"
    assert res.error == "Invalid API key · Fix external API key (API status 401)"


def test_connection_refused(cli_samples: Path):
    res = _classify(_read(cli_samples, "json_conn_refused_2.1.332.json"), returncode=1)
    assert res.success is False
    assert res.error_type == "cli_error"
    assert res.error is not None and "ECONNREFUSED" in res.error


def test_structured_output(cli_samples: Path):
    data = _read(cli_samples, "json_structured_output_2.1.332.json")
    out = claude_output.parse_output(data)
    assert out is not None and out.structured_output == {"name": "Ada"}
    res = _classify(data, response_format="json")
    assert res.success is True
    assert res.parsed_result == {"name": "Ada"}
    plain = _classify(data)
    assert plain.parsed_result is None and plain.result == '{"name":"Ada"}'


def test_json_verbose_array_picks_the_result_item(cli_samples: Path):
    data = _read(cli_samples, "json_verbose_array_2.1.332.json")
    assert data.lstrip().startswith(b"[")
    out = claude_output.parse_output(data)
    assert out is not None and out.result == SUCCESS and out.subtype == "success"
    res = _classify(data)
    assert res.success is True and res.result == SUCCESS


STREAM_FILES = [
    ("stream_json_verbose_2.1.197.jsonl", True, SUCCESS),
    ("stream_json_verbose_2.1.332.jsonl", True, SUCCESS),
    ("stream_json_partial_2.1.332.jsonl", True, SUCCESS),
    ("stream_json_tool_allowed_2.1.332.jsonl", True, "Done: the tool turn is over."),
    ("stream_json_api_retry_2.1.332.jsonl", False, None),
]


@pytest.mark.parametrize(("name", "success", "text"), STREAM_FILES)
def test_stream_files_via_parse_output_and_classify(
    cli_samples: Path, name: str, success: bool, text: str | None
):
    data = _read(cli_samples, name)
    out = claude_output.parse_output(data)
    assert out is not None
    assert out.is_error is (not success)
    res = _classify(data, returncode=0 if success else 1)
    assert res.success is success
    if text is not None:
        assert res.result == text


@pytest.mark.parametrize(("name", "success", "text"), STREAM_FILES)
def test_stream_files_via_stream_parser(
    cli_samples: Path, name: str, success: bool, text: str | None
):
    data = _read(cli_samples, name)
    parser = StreamParser()
    for line in data.split(b"\n"):
        parser.feed_line(line)
    init_sid = msgspec.json.decode(data.split(b"\n", 1)[0])["session_id"]
    assert parser.session_id == init_sid
    assert parser.result is not None
    assert parser.result == claude_output.parse_output(data)
    assert parser.result.is_error is (not success)
    if text is not None:
        assert parser.result.result == text


def test_stream_parser_tool_events_in_order(cli_samples: Path):
    parser = StreamParser()
    events: list[ProgressEvent] = []
    for line in _read(cli_samples, "stream_json_tool_allowed_2.1.332.jsonl").splitlines():
        events += parser.feed_line(line)
    assert events == [
        ProgressEvent("text", "Creating the file."),
        ProgressEvent(
            "tool_use",
            "Using tool: Bash",
            tool="Bash",
            tool_input={
                "command": "touch created.txt && echo made",
                "description": "Create a file",
            },
        ),
        ProgressEvent("text", "Done: the tool turn is over."),
    ]


def test_stream_parser_retry_events_in_order(cli_samples: Path):
    parser = StreamParser()
    events: list[ProgressEvent] = []
    for line in _read(cli_samples, "stream_json_api_retry_2.1.332.jsonl").splitlines():
        events += parser.feed_line(line)
    assert events[:2] == [
        ProgressEvent("retry", "API retry 1/2 in 0.6s (status 500)"),
        ProgressEvent("retry", "API retry 2/2 in 1.2s (status 500)"),
    ]
    assert [e.kind for e in events[2:]] == ["text"]
    assert events[2].message.startswith(API_500)


def test_stream_parser_skips_partial_events_and_garbage(cli_samples: Path):
    parser = StreamParser()
    events: list[ProgressEvent] = []
    lines = _read(cli_samples, "stream_json_partial_2.1.332.jsonl").splitlines()
    lines[1:1] = [b"", b"not json", b"{broken", b"[1,2]", b'{"type":"brand_new_kind"}', b"\xff\xfe"]
    for line in lines:
        events += parser.feed_line(line)
    assert events == [ProgressEvent("text", SUCCESS)]  # stream_event deltas add nothing


def test_stream_parser_line_without_newline_and_with_crlf():
    parser = StreamParser()
    line = b'{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}'
    assert parser.feed_line(line) == [ProgressEvent("text", "hi")]
    assert parser.feed_line(line + b"\r\n") == [ProgressEvent("text", "hi")]


# -- has_result ---------------------------------------------------------------------


def test_has_result_for_every_fixture(cli_samples: Path):
    for path in sorted(cli_samples.iterdir()):
        data = path.read_bytes()
        assert claude_output.has_result(data), path.name
        assert claude_output.has_result(data.rstrip(b"\n")), path.name


def test_has_result_false_while_incomplete(cli_samples: Path):
    data = _read(cli_samples, "stream_json_tool_allowed_2.1.332.jsonl")
    without_result = data.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"
    assert not claude_output.has_result(without_result)
    assert not claude_output.has_result(data[:-40])  # the result line is cut
    assert not claude_output.has_result(b"")
    assert not claude_output.has_result(b"\n\n")
    single = _read(cli_samples, "json_success_2.1.332.json")
    assert not claude_output.has_result(single[: len(single) // 2])


# -- leniency -----------------------------------------------------------------------


def _result_line(**fields: Any) -> bytes:
    obj = {"type": "result", "subtype": "success", "is_error": False, "result": "answer"}
    obj.update(fields)
    return msgspec.json.encode(obj) + b"\n"


def test_malformed_fields_are_dropped_and_the_answer_kept():
    data = _result_line(
        num_turns="x",
        total_cost_usd="abc",
        permission_denials=5,
        duration_ms=[1],
        session_id=7,
        errors={"a": 1},
        api_error_status="500",
        structured_output={"ok": True},
    )
    out = claude_output.parse_output(data)
    assert out == CliOutput(
        subtype="success",
        is_error=False,
        result="answer",
        structured_output={"ok": True},
    )
    res = _classify(data)
    assert res.success is True and res.result == "answer"
    assert res.session_id == SID  # the pre-assigned id fills in
    assert res.num_turns is None and res.cost_usd is None


def test_odd_denial_entries_are_skipped():
    denials = [{"tool_name": "Bash"}, {"tool_name": 3}, "Write", None, {"x": 1}]
    out = claude_output.parse_output(_result_line(permission_denials=denials))
    assert out is not None and out.permission_denials == ["Bash", "Write"]


def test_denied_tools_are_deduplicated_capped_and_cut():
    names = ["Bash", "Bash", "X" * 300] + [f"T{i}" for i in range(20)]
    res = _classify(_result_line(permission_denials=[{"tool_name": n} for n in names]))
    assert res.success is True
    assert res.denied_tools is not None
    assert res.denied_tools[:3] == ["Bash", "X" * 100, "T0"]
    assert len(res.denied_tools) == 10


def test_out_of_range_number_does_not_lose_the_answer():
    data = b'{"type":"result","subtype":"success","is_error":false,"result":"ok",'
    data += b'"total_cost_usd":1e400,"num_turns":1}'
    res = _classify(data)
    assert res.success is True and res.result == "ok"
    assert res.cost_usd is None and res.num_turns == 1


def test_invalid_utf8_is_replaced_and_encodable():
    data = (
        b'{"type":"result","subtype":"success","is_error":false,"result":"caf\xc3\xa9 \xff\xfe!"}'
    )
    res = _classify(data)
    assert res.success is True
    assert res.result == "café \ufffd\ufffd!"
    assert _encodable(res)["result"] == res.result


def test_lone_surrogate_escape_is_replaced_and_encodable():
    data = (
        b'{"type":"result","subtype":"success","is_error":false,'
        b'"result":"a\\ud800b \\udc00 \\ud83d\\ude00 \\\\ud800"}'
    )
    res = _classify(data)
    assert res.success is True
    # lone escapes become U+FFFD; a real pair and an escaped backslash survive
    assert res.result == "a\ufffdb \ufffd \U0001f600 \\ud800"
    assert _encodable(res)["result"] == res.result


def test_lone_surrogate_in_stream_text_event_is_encodable():
    parser = StreamParser()
    line = b'{"type":"assistant","message":{"content":[{"type":"text","text":"x\\udbff"}]}}'
    events = parser.feed_line(line)
    assert events == [ProgressEvent("text", "x\ufffd")]
    msgspec.json.encode(events)


# -- classification without a result object -----------------------------------------


def test_plain_text_stdout_with_rc0_is_a_success():
    res = _classify(b"just some text\n")
    assert res.success is True and res.result == "just some text"
    assert res.session_id == SID


def test_plain_text_stdout_is_bounded():
    res = _classify(b"y" * 2_000_000)
    assert res.success is True and len(res.result) < 1_100_000


def test_empty_stdout_is_a_failure_with_exit_code_and_stderr():
    res = _classify(b"", returncode=1, stderr=b"boom happened\n")
    assert res.success is False and res.error_type == "cli_error"
    assert res.error == "no result from claude (exit code 1): boom happened"
    res0 = _classify(b"", returncode=0)
    assert res0.success is False and res0.error == "no result from claude (exit code 0)"


def test_bad_flag_reports_the_stderr_line():
    stderr = b"error: unknown option '--frobnicate'\n"
    res = _classify(b"", returncode=1, stderr=stderr)
    assert res.success is False and res.error_type == "cli_error"
    assert res.error is not None and "error: unknown option '--frobnicate'" in res.error


def test_stderr_is_bounded_to_its_last_meaningful_lines():
    stderr = b"\n".join(
        [b"noise %d" % i for i in range(5000)] + [b"", b"\x1b[31mfinal\x1b[0m", b""]
    )
    res = _classify(b"", returncode=1, stderr=stderr)
    assert res.error is not None
    assert res.error.endswith("final") and "noise 4999" in res.error
    assert len(res.error) < 2200


def test_unknown_session_hints_a_new_session():
    stderr = f"No conversation found with session ID: {SID}\n".encode()
    res = _classify(b"", returncode=1, stderr=stderr)
    assert res.success is False and res.error_type == "cli_error"
    assert res.error is not None and "No conversation found" in res.error
    assert res.hint is not None and "without session_id" in res.hint


def test_interrupted_stream_without_result_line_is_a_failure(cli_samples: Path):
    data = _read(cli_samples, "stream_json_tool_allowed_2.1.332.jsonl")
    cut = data.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"  # SIGINT: rc 0, no result line
    res = _classify(cut, returncode=0)
    assert res.success is False and res.error_type == "cli_error"
    assert res.error == "no result from claude (exit code 0)"
    assert res.hint is not None and SID in res.hint
    killed = _classify(cut, returncode=143)
    assert killed.success is False and killed.error == "no result from claude (exit code 143)"


def test_error_text_priority_never_empty():
    only_subtype = b'{"type":"result","subtype":"error_during_execution","is_error":true}'
    res = _classify(only_subtype, returncode=1, stderr=b"ignored\n")
    assert res.error == "error_during_execution"
    bare = b'{"type":"result","subtype":"success","is_error":true}'
    assert _classify(bare, returncode=1, stderr=b"why\n").error == "why"
    assert _classify(bare, returncode=3).error == "no result from claude (exit code 3)"
    both = _result_line(is_error=True, result="", errors=["e1", "e2"])
    assert _classify(both, returncode=1).error == "e1; e2"


# -- permission, usage limits, budget ----------------------------------------------


def test_is_error_result_with_denials_is_a_permission_error():
    data = _result_line(
        is_error=True, result="could not finish", permission_denials=[{"tool_name": "Write"}]
    )
    res = _classify(data, returncode=1)
    assert res.success is False and res.error_type == "permission"
    assert res.denied_tools == ["Write"]
    assert res.hint is not None and 'allowed_tools="Write"' in res.hint


def test_permission_wording_is_a_permission_error():
    data = _result_line(is_error=True, result="Permission denied: Bash requires approval")
    res = _classify(data, returncode=1)
    assert res.error_type == "permission" and res.hint


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("5-hour limit reached ∙ resets 3pm", "3pm"),
        ("You've hit your limit · resets 3pm (Europe/Berlin)", "3pm (Europe/Berlin)"),
        ("Claude usage limit reached. Your limit will reset at 5pm (America/New_York).", "at 5pm"),
        ("Claude AI usage limit reached|1760000000", "2025-10-09 08:53 UTC"),
        ("API Error: 429 rate limit exceeded, try again in 2 hours", "in 2 hours"),
    ],
)
def test_usage_limit_with_reset_time(text: str, when: str):
    res = _classify(_result_line(is_error=True, result=text), returncode=1)
    assert res.success is False and res.error_type == "usage_limit"
    assert res.hint is not None and when in res.hint
    assert res.error is not None and res.error.startswith(text[:20])


def test_usage_limit_without_reset_time_and_via_status_429():
    res = _classify(_result_line(is_error=True, result="Session limit hit"), returncode=1)
    assert res.error_type == "usage_limit" and res.hint is not None and "reset" in res.hint
    res429 = _classify(
        _result_line(is_error=True, result="API Error: Too busy", api_error_status=429),
        returncode=1,
    )
    assert res429.error_type == "usage_limit"


def test_usage_limit_notice_reported_as_success_is_a_failure():
    res = _classify(_result_line(result="Claude AI usage limit reached|1760000000"))
    assert res.success is False and res.error_type == "usage_limit"


def test_a_success_talking_about_rate_limits_stays_a_success():
    text = "I added a rate limit middleware; the usage limit is now configurable."
    res = _classify(_result_line(result=text))
    assert res.success is True and res.result == text


def test_success_over_the_cap_is_flagged_not_failed():
    res = _classify(_result_line(total_cost_usd=0.75), max_budget_usd=0.5)
    assert res.success is True and res.result == "answer"
    assert res.budget_exceeded is True
    assert res.hint is not None and 'update_agent(name="web", max_budget_usd=1)' in res.hint
    assert "agent-dispatch update web --max-budget-usd 1`" in res.hint
    under = _classify(_result_line(total_cost_usd=0.25), max_budget_usd=0.5)
    assert under.budget_exceeded is None and under.hint is None


# -- response_format json ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ("```\n42\n```", 42),
        ('```JSON\n"s"\n```\n', "s"),
        ("null", None),
        ('Here it is:\n```json\n{"k": true}\n```\nDone.', {"k": True}),
    ],
)
def test_parse_json_reply_ok(text: str, value: Any):
    assert claude_output.parse_json_reply(text) == (True, value)


@pytest.mark.parametrize(
    "text", ["", "not json", '{"a": 1} trailing', '{"a": 1}\n{"b": 2}', "```json\n{oops}\n```"]
)
def test_parse_json_reply_invalid(text: str):
    assert claude_output.parse_json_reply(text) == (False, None)


def test_json_reply_parsed_into_parsed_result():
    res = _classify(_result_line(result='```json\n{"users": ["ada"]}\n```'), response_format="json")
    assert res.success is True and res.parsed_result == {"users": ["ada"]}


def test_unparseable_json_reply_still_succeeds_with_null_parsed_result():
    res = _classify(_result_line(result="Sorry, no JSON today"), response_format="json")
    assert res.success is True and res.parsed_result is None
    assert "parsed_result" not in _encodable(res)


# -- timeouts --------------------------------------------------------------------------


def test_timeout_without_a_result(cli_samples: Path):
    partial = _read(cli_samples, "stream_json_tool_allowed_2.1.332.jsonl").split(b"\n")[0]
    res = _classify(partial, returncode=None, timed_out=True, timeout_seconds=300.0)
    assert res.success is False and res.error_type == "timeout"
    assert res.error == "timed out after 300s"
    assert res.session_id == SID
    assert res.hint is not None
    assert f'dispatch_session(agent="web", session_id="{SID}", task="continue")' in res.hint
    assert 'update_agent(name="web", timeout=600)' in res.hint  # twice the 300 s that ran out
    assert "agent-dispatch update web --timeout 600" in res.hint
    assert "timeout_seconds=600" in res.hint


def test_timeout_with_a_received_result_returns_the_result(cli_samples: Path):
    data = _read(cli_samples, "json_success_2.1.332.json")
    res = _classify(data, returncode=-15, timed_out=True, timeout_seconds=12.5)
    assert res.success is True and res.result == SUCCESS
    assert res.error_type is None
    assert res.hint is not None and "deadline (12.5s)" in res.hint


# -- helpers ---------------------------------------------------------------------------


def test_not_found_result():
    fix = advice("Install it.")
    res = unstarted.not_found_result("web", "claude executable not found", fix)
    assert res == DispatchResult(
        agent="web",
        success=False,
        error="claude executable not found",
        error_type="not_found",
        advice=fix,
    )


def test_every_classified_fixture_is_json_encodable(cli_samples: Path):
    for path in sorted(cli_samples.iterdir()):
        res = _classify(path.read_bytes(), returncode=1, response_format="json")
        assert _encodable(res)["agent"] == "web"
        assert res.success or res.error


def test_truncated_json_output_with_rc0_is_not_mistaken_for_a_text_reply(cli_samples: Path):
    data = _read(cli_samples, "json_success_2.1.332.json")
    res = _classify(data[:300], returncode=0)
    assert res.success is False and res.error_type == "cli_error"


def test_failure_without_stderr_reports_stdout_text():
    res = _classify(b"Error: something odd\n", returncode=2)
    assert res.success is False
    assert res.error == "no result from claude (exit code 2): Error: something odd"


def test_unknown_non_error_subtype_with_a_result_is_a_success():
    res = _classify(_result_line(subtype="success_with_notes"))
    assert res.success is True and res.result == "answer"


def test_timeout_without_session_still_hints_more_time():
    res = _classify(b"", returncode=None, timed_out=True, session_id=None)
    assert res.error == "timed out" and res.session_id is None
    assert res.hint is not None and res.hint.startswith("Give it more time")


def test_auth_and_server_errors_carry_a_hint_on_what_to_do(cli_samples: Path) -> None:
    auth = _classify(_read(cli_samples, "json_api_401_2.1.332.json"), returncode=1)
    assert auth.error_type == "cli_error" and "ANTHROPIC_API_KEY" in (auth.hint or "")
    server = _classify(_read(cli_samples, "json_api_500_2.1.332.json"), returncode=1)
    assert "retry" in (server.hint or "")
