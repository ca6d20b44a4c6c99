"""dialogue.py: when a dialogue counts as resolved, and what each side is shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.models import DispatchRequest, DispatchResult
from agent_dispatch.service.dialogue import RESOLVED, DialogueResult, resolves, run_dialogue


class Script:
    """A run_turn that answers with the given messages in order and records the prompts."""

    def __init__(self, *messages: str) -> None:
        self._messages: Iterator[str] = iter(messages)
        self.prompts: list[str] = []

    async def __call__(self, req: DispatchRequest) -> DispatchResult:
        self.prompts.append(req.task)
        return DispatchResult(agent=req.agent, success=True, result=next(self._messages))


async def talk(script: Script, max_rounds: int = 3) -> DialogueResult:
    return await run_dialogue(
        script, requester="a", responder="b", topic="agree on a port", max_rounds=max_rounds
    )


@pytest.mark.parametrize(
    "message",
    [
        "8080 it is. [RESOLVED]",
        "8080 it is.\n\n[RESOLVED]\n",
        "8080 it is. **[RESOLVED]**",
        "8080 it is. [RESOLVED].",
        "[RESOLVED]",
    ],
)
def test_a_message_that_ends_with_the_marker_resolves(message: str) -> None:
    assert resolves(message)


@pytest.mark.parametrize(
    "message",
    [
        f"You asked me to end my message with {RESOLVED} when done; not yet: which port?",
        f"{RESOLVED}\nActually, one more question: IPv6 too?",
        "resolved",
        "[RESOLVED] [RESOLVED]?",
        "",
    ],
)
def test_a_message_that_only_quotes_the_marker_does_not_resolve(message: str) -> None:
    assert not resolves(message)


async def test_a_responder_quoting_the_rule_does_not_end_round_one() -> None:
    quoting = f"I will end with {RESOLVED} once we agree. Which port do you want?"
    script = Script("Which port?", quoting, "8080, please.", "8080 it is. [RESOLVED]")
    result = await talk(script)
    assert result.resolved and result.rounds == 2
    assert len(result.conversation) == 4
    assert result.final_answer == "8080 it is."
    assert quoting in script.prompts[2]  # the requester saw the quote unchanged


async def test_a_dialogue_without_a_closing_marker_runs_out_of_rounds() -> None:
    script = Script(*[f"still open; say {RESOLVED} when done" for _ in range(4)])
    result = await talk(script, max_rounds=2)
    assert not result.resolved and result.rounds == 2 and len(result.conversation) == 4


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["", " ", "\n", ".", "**", " \n\t"]))
def test_any_text_followed_by_the_marker_resolves(body: str, tail: str) -> None:
    assert resolves(f"{body}{RESOLVED}{tail}")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(min_size=1, max_size=50))
def test_a_marker_followed_by_words_does_not_resolve(body: str, words: str) -> None:
    words = words + "x"  # something a reader would see after the marker
    assert not resolves(f"{body}{RESOLVED} {words}")
