"""The STATUS line a child ends its answer with (claude/status.py): examples and properties."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.claude.status import MAX_LINE, Status, read_status, split_status
from agent_dispatch.models import DispatchResult
from agent_dispatch.remedies import ResumeSession
from agent_dispatch.server.remedies import present

SID = "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize(
    ("last_line", "outcome", "reason"),
    [
        ("STATUS: done", "done", ""),
        ("STATUS: partial ran out of time", "partial", "ran out of time"),
        ("STATUS: blocked need the staging password", "blocked", "need the staging password"),
        # what a model writes instead, and still means
        ("status: Done", "done", ""),
        ("Status:done.", "done", ""),
        ("STATUS: done   ", "done", ""),
        ("**STATUS:** done", "done", ""),
        ("**STATUS**: partial - tests still fail", "partial", "tests still fail"),
        ("**STATUS: blocked (no access to the repo)**", "blocked", "no access to the repo"),
        ("`STATUS: done`", "done", ""),
        ("_STATUS: partial_", "partial", ""),
        ("STATUS: partial: two of five files left.", "partial", "two of five files left"),
        ("STATUS: blocked \u2014 waiting on the API key", "blocked", "waiting on the API key"),
        ("STATUS: partial(see notes)", "partial", "see notes"),
        ("STATUS: done!", "done", ""),
        ("STATUS: partial  the\tsecond   half", "partial", "the second half"),
        ("  STATUS: done\r", "done", ""),
    ],
)
def test_a_last_status_line_is_read_and_removed(last_line: str, outcome: str, reason: str) -> None:
    assert split_status(f"The work.\n\n{last_line}\n\n") == Status(outcome, reason, "The work.")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n",
        "All fixed.",
        # not last: quoted or explained, never meant
        "Reply with STATUS: done when finished.\nI did not finish.",
        "STATUS: done\nActually, one more thing.",
        "```\nSTATUS: done\n```",
        "Use this format:\n\n```text\nSTATUS: partial <reason>\n```\n",
        # last, but not a status line as a whole
        "> STATUS: done",
        "- STATUS: done",
        "## STATUS: done",
        "Final STATUS: done",
        "I am done. STATUS: done",
        "STATUS: finished",
        "STATUS: failed because the tests broke",
        "STATUS: doneish",
        "STATUS: done_with_it",
        "STATUS: done__with_it",
        "STATUS: done**x",
        "STATUS: done/partial",
        "STATUS done",
        "STATUS: ",
        "STATUS:",
        "STATUS: partial " + "x" * MAX_LINE,  # too long for a status line
    ],
)
def test_text_without_a_last_status_line_is_unknown_and_unchanged(text: str) -> None:
    assert split_status(text) == Status("unknown", "", text)


def test_only_the_last_of_several_status_lines_counts() -> None:
    text = "STATUS: blocked on X\nThen X arrived.\nSTATUS: done"
    assert split_status(text) == Status("done", "", "STATUS: blocked on X\nThen X arrived.")


def test_a_reply_that_is_only_a_status_line_leaves_no_text() -> None:
    assert split_status("STATUS: partial") == Status("partial", "", "")


@pytest.mark.parametrize(
    "line",
    [
        "STATUS: partial " + " ." * 400_000 + "x",  # past MAX_LINE: never matched
        "STATUS" + " " * 490 + ":" + " " * 490 + "x",  # runs of spaces the pattern must split
        "**" + " " * 495 + "STATUS" + " " * 495 + "**x",
        "STATUS: partial" + " *" * 490,
    ],
)
def test_a_hostile_last_line_is_read_in_linear_time(line: str) -> None:
    """Each of these took seconds with a backtracking pattern; here they take microseconds."""
    start = time.perf_counter()
    for _ in range(20):
        split_status(line)
    assert time.perf_counter() - start < 0.5


# -- read_status: a result's fields and hint -------------------------------------------


def _read(text: str, session_id: str | None = SID) -> DispatchResult:
    res = DispatchResult(agent="api", success=True, session_id=session_id)
    read_status(res, text)
    return res


def test_a_done_result_has_its_outcome_and_no_hint() -> None:
    res = _read("Fixed.\nSTATUS: done")
    assert (res.result, res.outcome, res.outcome_reason, res.advice) == (
        "Fixed.",
        "done",
        None,
        None,
    )


def test_an_unknown_result_keeps_its_text_and_has_no_hint() -> None:
    res = _read("Fixed, I think.\n")
    assert (res.result, res.outcome, res.advice) == ("Fixed, I think.\n", "unknown", None)


@pytest.mark.parametrize("outcome", ["partial", "blocked"])
def test_partial_and_blocked_results_say_how_to_continue_the_session(outcome: str) -> None:
    res = _read(f"Half of it.\nSTATUS: {outcome} the rest needs a key")
    assert (res.outcome, res.outcome_reason) == (outcome, "the rest needs a key")
    assert res.advice is not None
    assert res.advice.remedies() == [ResumeSession(agent="api", session_id=SID)]
    hint = present(res).hint or ""
    assert f'dispatch_session(agent="api", session_id="{SID}"' in hint


def test_a_partial_result_without_a_session_says_so_without_a_resume() -> None:
    res = _read("Half.\nSTATUS: partial", session_id=None)
    assert res.advice is not None and res.advice.remedies() == []
    assert "did not finish" in (present(res).hint or "")


# -- properties ------------------------------------------------------------------------

_REASON = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N"], include_characters=" ,'/"),
    max_size=60,
).map(lambda s: " ".join(s.split()))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_read_without_raising(text: str) -> None:
    status = split_status(text)
    if status.outcome == "unknown":
        assert status == Status("unknown", "", text)
    else:
        assert text.startswith(status.text) and "\n" not in status.reason


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_text_whose_last_line_is_not_a_status_keeps_its_text(text: str) -> None:
    text = f"{text}\nno status here"
    assert split_status(text) == Status("unknown", "", text)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(),
    word=st.sampled_from(["done", "partial", "blocked", "DONE", "Partial"]),
    reason=_REASON,
    markup=st.sampled_from(["{}", "**{}**", "`{}`"]),
)
def test_a_status_line_appended_to_any_text_round_trips(
    text: str, word: str, reason: str, markup: str
) -> None:
    line = markup.format(f"STATUS: {word} {reason}".rstrip())
    status = split_status(f"{text}\n{line}\n")
    assert status == Status(word.lower(), reason, text.rstrip())  # type: ignore[arg-type]
