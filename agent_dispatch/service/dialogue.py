"""Two agents talk until one side ends a message with `[RESOLVED]` or the rounds run out.

Each side keeps its own Claude session (the first turn starts it, later turns
resume it), so neither has to be re-told the conversation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import DispatchRequest, DispatchResult, Outcome, clamped

RESOLVED = "[RESOLVED]"
MAX_ROUNDS = 10
# What may follow the marker and still "end" a message: whitespace, markdown emphasis
# (`**[RESOLVED]**`) and a full stop. A marker anywhere else is quoted, not meant.
_AFTER_MARKER = " \t\r\n*_`."

RunTurn = Callable[[DispatchRequest], Awaitable[DispatchResult]]


class DialogueTurn(msgspec.Struct, kw_only=True, omit_defaults=True):
    round: int
    agent: str
    role: str  # "requester" | "responder"
    message: str
    success: bool
    session_id: str | None = None
    cost_usd: float | None = None
    duration_ms: int | None = None
    error: str | None = None
    error_type: str | None = None
    outcome: Outcome | None = None  # the turn's own STATUS line (DispatchResult.outcome)
    outcome_reason: str | None = None


class DialogueResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    resolved: bool
    rounds: int
    total_cost_usd: float
    total_duration_ms: int
    final_answer: str
    conversation: list[DialogueTurn]
    error: str | None = None


def clamp_rounds(value: object) -> int:
    return int(clamped(value, "max_rounds", 1, MAX_ROUNDS))


def check_dialogue(requester: str, responder: str, topic: str) -> None:
    """InvalidArgument unless two different agents have something to settle."""
    if requester == responder:
        raise InvalidArgument(
            f"responder: {responder!r} is also the requester",
            "A dialogue needs two different agents; to ask one agent, use dispatch.",
        )
    if not topic.strip():
        raise InvalidArgument("topic: must not be empty", "Say what the agents should settle.")


def _opening(requester: str, responder: str, topic: str) -> str:
    return (
        f"You are agent '{requester}', in a dialogue with agent '{responder}' (another "
        "project's Claude Code agent). Write your first message to them about the topic "
        f"below: ask for what you need. When the topic is settled for you, end a message "
        f"with {RESOLVED}.\n\n## Topic\n{topic}"
    )


def _first_answer(requester: str, topic: str, message: str) -> str:
    return (
        f"Agent '{requester}' (another project's Claude Code agent) opened a dialogue with "
        f"you.\n\n## Topic\n{topic}\n\n## Their message\n{message}\n\nAnswer them. When "
        f"nothing remains open, end your message with {RESOLVED}."
    )


def _reply(other: str, message: str) -> str:
    return (
        f"Agent '{other}' replied:\n\n{message}\n\nContinue the dialogue. When the topic "
        f"is settled, end your message with {RESOLVED}."
    )


def resolves(message: str) -> bool:
    """True when `message` ends with the marker (a reply quoting the rule does not)."""
    return message.rstrip(_AFTER_MARKER).endswith(RESOLVED)


def _strip_marker(text: str) -> str:
    """The message without its closing marker (a quoted one stays: it is their words)."""
    body = text.rstrip(_AFTER_MARKER)
    if not body.endswith(RESOLVED):
        return text.strip()
    return body[: -len(RESOLVED)].rstrip(_AFTER_MARKER.replace(".", "")).strip()


async def run_dialogue(
    run_turn: RunTurn,
    *,
    requester: str,
    responder: str,
    topic: str,
    max_rounds: int,
    caller: str = "",
) -> DialogueResult:
    """Alternate requester and responder turns; a failed turn ends the dialogue."""
    conversation: list[DialogueTurn] = []
    sessions: dict[str, str | None] = {"requester": None, "responder": None}
    last: dict[str, str] = {"requester": "", "responder": ""}
    resolved = False
    error: str | None = None
    rounds = 0

    async def turn(rnd: int, role: str, agent: str, prompt: str) -> DialogueTurn:
        res = await run_turn(
            DispatchRequest(agent=agent, task=prompt, caller=caller, session_id=sessions[role])
        )
        sessions[role] = res.session_id or sessions[role]
        entry = DialogueTurn(
            round=rnd,
            agent=agent,
            role=role,
            message=res.result,
            success=res.success,
            session_id=res.session_id,
            cost_usd=res.cost_usd,
            duration_ms=res.duration_ms,
            error=res.error,
            error_type=res.error_type,
            outcome=res.outcome,
            outcome_reason=res.outcome_reason,
        )
        conversation.append(entry)
        return entry

    for rnd in range(1, max_rounds + 1):
        rounds = rnd
        if rnd == 1:
            prompt = _opening(requester, responder, topic)
        else:
            prompt = _reply(responder, last["responder"])
        asked = await turn(rnd, "requester", requester, prompt)
        if not asked.success:
            error = f"round {rnd}: requester {requester} failed: {asked.error}"
            break
        last["requester"] = _strip_marker(asked.message)
        if rnd > 1 and resolves(asked.message):
            resolved = True
            break
        if rnd == 1:
            prompt = _first_answer(requester, topic, last["requester"])
        else:
            prompt = _reply(requester, last["requester"])
        answered = await turn(rnd, "responder", responder, prompt)
        if not answered.success:
            error = f"round {rnd}: responder {responder} failed: {answered.error}"
            break
        last["responder"] = _strip_marker(answered.message)
        if resolves(answered.message):
            resolved = True
            break

    return DialogueResult(
        resolved=resolved,
        rounds=rounds,
        total_cost_usd=round(sum(t.cost_usd or 0.0 for t in conversation), 6),
        total_duration_ms=sum(t.duration_ms or 0 for t in conversation),
        final_answer=last["responder"] or last["requester"],
        conversation=conversation,
        error=error,
    )
