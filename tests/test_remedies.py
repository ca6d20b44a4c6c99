"""Remedies as data: what the classifier advises, and how each face words it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.claude import classify as claude_classify
from agent_dispatch.claude import unstarted
from agent_dispatch.cli import remedies as cli_remedies
from agent_dispatch.models import DispatchResult
from agent_dispatch.remedies import (
    REMEDY_TYPES,
    Advice,
    CallTimeout,
    CheckInstall,
    Choice,
    NewSession,
    Remedy,
    RemoveAgent,
    ResumeSession,
    UpdateAgent,
    advice,
)
from agent_dispatch.server import remedies as mcp_remedies
from agent_dispatch.service import remedies as lib_remedies
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.views import fetch_payload, job_view
from agent_dispatch.storage.jobs import Job, JobStore
from tests.dispatcher_config import make_config
from tests.fake_claude import fake_env
from tests.test_dispatcher import req

SID = "0b8e3a1c-5d2f-4e6a-9b7c-1d2e3f405162"
# Words of one face or another: the classifier's prose never holds them.
FACE_WORDS = ("update_agent(", "dispatch_session(", "agent-dispatch ", "timeout_seconds", "await ")


def _classify(stdout: bytes = b"", **kw: Any) -> DispatchResult:
    kw.setdefault("agent", "web")
    kw.setdefault("returncode", 0)
    kw.setdefault("stderr", b"")
    kw.setdefault("timed_out", False)
    kw.setdefault("session_id", SID)
    return claude_classify.classify(stdout=stdout, **kw)


def _result_line(**fields: Any) -> bytes:
    base = {"type": "result", "subtype": "success", "is_error": False, "session_id": SID}
    return msgspec.json.encode({**base, **fields}) + b"\n"


def _remedies(res: DispatchResult) -> list[Remedy]:
    assert res.advice is not None
    return res.advice.remedies()


# -- the classifier's advice, as data ----------------------------------------------------


def test_a_timeout_advises_resuming_or_more_time_and_names_no_face():
    res = _classify(returncode=-15, timed_out=True, timeout_seconds=300.0, agent_timeout=300.0)
    assert res.hint is None  # the text is a face's business
    assert _remedies(res) == [
        ResumeSession(agent="web", session_id=SID),
        UpdateAgent(agent="web", field="timeout", value=600),
        CallTimeout(agent="web", seconds=600),
    ]


def test_a_short_call_deadline_advises_the_agents_own_timeout_not_a_lower_one():
    res = _classify(returncode=-15, timed_out=True, timeout_seconds=30.0, agent_timeout=300.0)
    assert _remedies(res) == [
        ResumeSession(agent="web", session_id=SID),
        CallTimeout(agent="web", seconds=60),
        CallTimeout(agent="web", seconds=0),
    ]


def test_a_budget_stop_advises_twice_the_cap_then_resuming():
    line = _result_line(subtype="error_max_budget_usd", is_error=True, total_cost_usd=0.6)
    res = _classify(line, returncode=1, max_budget_usd=0.25)
    assert res.error_type == "budget"
    assert _remedies(res) == [
        UpdateAgent(agent="web", field="max_budget_usd", value=0.5),
        ResumeSession(agent="web", session_id=SID),
    ]


def test_denied_tools_advise_allowing_exactly_them():
    res = _classify(_result_line(result="done", permission_denials=[{"tool_name": "Bash"}]))
    assert _remedies(res) == [UpdateAgent(agent="web", field="allowed_tools", value="Bash")]


def test_an_unknown_session_advises_a_new_one():
    res = _classify(b"", returncode=1, stderr=b"No conversation found with session ID: x\n")
    assert res.session_id is None
    assert _remedies(res) == [NewSession(agent="web")]


def test_a_command_line_too_long_advises_shorter_instructions():
    res = unstarted.command_too_long("web", ["claude", "x" * 200_000])
    assert _remedies(res) == [UpdateAgent(agent="web", field="instructions")]


def test_advice_survives_a_job_record_round_trip():
    res = _classify(returncode=-15, timed_out=True, timeout_seconds=300.0, agent_timeout=300.0)
    again = msgspec.json.decode(msgspec.json.encode(res), type=DispatchResult)
    assert again == res and again.advice is not None


_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"No conversation found\n", b"Claude AI usage limit reached|1760000000"]),
)


@settings(max_examples=150, deadline=None)
@given(
    stdout=_bytes,
    stderr=_bytes,
    returncode=st.one_of(st.none(), st.integers(-20, 200)),
    timed_out=st.booleans(),
    stopped_after_result=st.booleans(),
    session_id=st.one_of(st.none(), st.just(SID)),
    timeout_seconds=st.one_of(st.none(), st.floats(allow_nan=True)),
    agent_timeout=st.one_of(st.none(), st.floats(0, 10**6)),
    max_budget_usd=st.one_of(st.none(), st.floats(allow_nan=True)),
)
def test_the_classifier_never_words_advice_for_a_face(**kw: Any) -> None:
    res = claude_classify.classify(agent="web", **kw)
    assert res.hint is None
    if res.advice is not None:
        for part in res.advice.parts:
            if isinstance(part, str):
                assert not any(word in part for word in FACE_WORDS), part
        for face in (mcp_remedies.hint, cli_remedies.hint, lib_remedies.python_hint):
            assert face(res.advice).strip()


# -- each face's words for each remedy ----------------------------------------------------

# remedy, MCP tool call, CLI command, Python
WORDS: list[tuple[Remedy, str, str, str]] = [
    (
        UpdateAgent(agent="web", field="timeout", value=600),
        'update_agent(name="web", timeout=600)',
        "agent-dispatch update web --timeout 600",
        "update_agent(store, 'web', timeout=600)",
    ),
    (
        UpdateAgent(agent="web", field="max_budget_usd", value=0.5),
        'update_agent(name="web", max_budget_usd=0.5)',
        "agent-dispatch update web --max-budget-usd 0.5",
        "update_agent(store, 'web', max_budget_usd=0.5)",
    ),
    (
        UpdateAgent(agent="web", field="allowed_tools", value="Bash,Bash(git log:*)"),
        'update_agent(name="web", allowed_tools="Bash,Bash(git log:*)")',
        "agent-dispatch update web --allowed-tools 'Bash,Bash(git log:*)'",
        "update_agent(store, 'web', allowed_tools='Bash,Bash(git log:*)')",
    ),
    (
        UpdateAgent(agent="web", field="directory"),
        'update_agent(name="web", directory=...)',
        "agent-dispatch update web --directory DIR",
        "update_agent(store, 'web', directory=...)",
    ),
    (
        RemoveAgent(agent="web"),
        'remove_agent(name="web")',
        "agent-dispatch remove web",
        "remove_agent(store, 'web')",
    ),
    (
        ResumeSession(agent="web", session_id=SID),
        f'dispatch_session(agent="web", session_id="{SID}", task="continue")',
        f"claude --resume {SID}",
        "await dispatcher.dispatch_session(DispatchRequest(agent='web', task='continue', "
        f"session_id='{SID}'))",
    ),
    (
        NewSession(agent="web"),
        'dispatch_session(agent="web", task=...) without session_id',
        "agent-dispatch test web",
        "await dispatcher.dispatch_session(DispatchRequest(agent='web', task=...))",
    ),
    (
        CallTimeout(agent="web", seconds=1200),
        "timeout_seconds=1200",
        "agent-dispatch test web --timeout 1200",
        "DispatchRequest(agent='web', task=..., timeout_seconds=1200)",
    ),
    (
        CallTimeout(agent="web", seconds=0),
        "timeout_seconds=0",
        "agent-dispatch test web",
        "DispatchRequest(agent='web', task=..., timeout_seconds=None)",
    ),
    (CheckInstall(), "`agent-dispatch doctor`", "agent-dispatch doctor", "`agent-dispatch doctor`"),
]


def test_every_remedy_kind_has_words_in_every_face():
    assert {type(r) for r, *_ in WORDS} == set(REMEDY_TYPES)


@pytest.mark.parametrize(("remedy", "mcp", "cli", "python"), WORDS)
def test_each_face_words_a_remedy_its_own_way(remedy: Remedy, mcp: str, cli: str, python: str):
    assert mcp_remedies.tool_call(remedy) == mcp
    assert cli_remedies.command(remedy) == cli
    assert lib_remedies.python(remedy) == python


def test_the_cli_reruns_a_one_line_task_with_more_time():
    more = CallTimeout(agent="web", seconds=600)
    assert (
        cli_remedies.command(more, task="Do it") == "agent-dispatch test web 'Do it' --timeout 600"
    )
    assert cli_remedies.command(more, task="two\nlines") == "agent-dispatch test web --timeout 600"


def test_a_choice_in_mcp_offers_the_tool_call_and_the_command():
    fix = advice(
        "Give it more time with ",
        Choice(
            options=(
                UpdateAgent(agent="web", field="timeout", value=600),
                CallTimeout(agent="web", seconds=600),
            )
        ),
        ".",
    )
    assert mcp_remedies.hint(fix) == (
        'Give it more time with update_agent(name="web", timeout=600), '
        "`agent-dispatch update web --timeout 600` or timeout_seconds=600 on the dispatch."
    )
    assert cli_remedies.hint(fix) == (
        "Give it more time with `agent-dispatch update web --timeout 600` or "
        "`agent-dispatch test web --timeout 600`."
    )
    assert lib_remedies.python_hint(fix) == (
        "Give it more time with update_agent(store, 'web', timeout=600) or "
        "DispatchRequest(agent='web', task=..., timeout_seconds=600)."
    )


def test_a_missing_directory_reads_as_a_tool_call_and_a_command_over_mcp():
    res = unstarted.not_found_result(
        "web",
        "agent directory does not exist: /gone",
        advice("Fix it with ", Choice(options=(UpdateAgent(agent="web", field="directory"),)), "."),
    )
    assert mcp_remedies.present(res).hint == (
        'Fix it with update_agent(name="web", directory=...) or '
        "`agent-dispatch update web --directory DIR`."
    )


def test_a_face_answers_with_its_hint_and_without_the_advice_field():
    res = _classify(returncode=-15, timed_out=True, timeout_seconds=300.0, agent_timeout=300.0)
    shown = msgspec.to_builtins(mcp_remedies.present(res))
    assert "advice" not in shown
    assert shown["hint"].startswith('Resume it: dispatch_session(agent="web"')
    on_cli = cli_remedies.present(res).hint or ""
    assert f"`claude --resume {SID}` in the agent's directory" in on_cli
    assert "update_agent(" not in on_cli and "dispatch_session(" not in on_cli


def test_a_result_without_advice_keeps_its_hint_in_every_face():
    res = DispatchResult(agent="web", success=False, hint="Start the server again.")
    for present in (mcp_remedies.present, cli_remedies.present, lib_remedies.library_hint):
        assert present(res) is res


# -- every remedy, every face ----------------------------------------------------------------

_names = st.text(min_size=1, max_size=30).filter(str.strip)
_values = st.one_of(
    st.none(),
    st.integers(0, 10**6),
    st.floats(0.01, 10**4, allow_nan=False),
    st.text(max_size=40),
)
_remedy = st.one_of(
    st.builds(
        UpdateAgent,
        agent=_names,
        field=st.sampled_from(
            [
                "timeout",
                "max_budget_usd",
                "allowed_tools",
                "directory",
                "instructions",
                "permission_mode",
            ]
        ),
        value=_values,
    ),
    st.builds(RemoveAgent, agent=_names),
    st.builds(ResumeSession, agent=_names, session_id=_names),
    st.builds(NewSession, agent=_names),
    st.builds(CallTimeout, agent=_names, seconds=st.integers(0, 7200)),
    st.just(CheckInstall()),
)


@settings(max_examples=200, deadline=None)
@given(remedy=_remedy)
def test_every_remedy_renders_to_text_in_all_three_faces(remedy: Remedy) -> None:
    for text in (
        mcp_remedies.tool_call(remedy),
        cli_remedies.command(remedy),
        lib_remedies.python(remedy),
        mcp_remedies.hint(Advice((Choice(options=(remedy,)),))),
    ):
        assert text.strip()
    # the command is one pasteable line whose words are the remedy's argv
    assert shlex.split(cli_remedies.command(remedy)) == lib_remedies.shell_argv(remedy)


# -- the library face: the service renders Python, keeps the data ---------------------------


async def test_the_library_reads_a_missing_directory_fix_as_python(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    (tmp_path / "web").rmdir()
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    async with Dispatcher.open(cfg, env=fake_env(log_dir), jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("t", agent="web"))
    assert result.error_type == "not_found"
    assert result.hint == "Fix it with update_agent(store, 'web', directory=...)."
    assert result.advice is not None
    assert result.advice.remedies() == [UpdateAgent(agent="web", field="directory")]


def test_a_job_record_keeps_the_advice_and_each_face_words_it_on_read():
    res = lib_remedies.library_hint(
        _classify(returncode=-15, timed_out=True, timeout_seconds=300.0, agent_timeout=300.0)
    )
    job = Job(
        id="a" * 32, agent="web", task="t", status="failed", created_at="now", owner_pid=1,
        result=res,
    )  # fmt: skip
    stored = msgspec.json.decode(msgspec.json.encode(job), type=Job)  # the record on disk
    assert stored.result is not None and stored.result.advice == res.advice
    over_mcp = job_view(mcp_remedies.present_job(stored))
    assert "advice" not in over_mcp["result"]
    assert over_mcp["result"]["hint"] == mcp_remedies.hint(res.advice)  # type: ignore[arg-type]
    fetched = fetch_payload(mcp_remedies.present_job(stored), 0)
    assert "advice" not in fetched and fetched["hint"].startswith("Resume it: dispatch_session(")
    on_cli = cli_remedies.present_job(stored).result
    assert on_cli is not None and on_cli.hint is not None
    assert "`agent-dispatch update web --timeout 600`" in on_cli.hint
