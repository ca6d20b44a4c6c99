"""The child's own verdict, sans IO: the `STATUS:` line that ends a reply.

The prompt framing (`invocation.STATUS_FOOTER`) asks every child to end its answer
with one line, `STATUS: done`, `STATUS: partial <reason>` or `STATUS: blocked
<reason>`. `split_status` reads it back off the final text: the outcome, the
reason, and the text without that line.

Only the last non-empty line counts, and only when the whole line is a status
line: a `STATUS:` quoted, inside a code block or anywhere but last is the
child's words and stays in the text. The reading is lenient where a model is
(any case, `**STATUS:** done`, `` `STATUS: done` ``, a trailing full stop, a
reason after `-`, `:` or in parentheses) and strict about the rest: an unknown
word (`STATUS: finished`), a prefix (`> STATUS: done`, `Final STATUS: done`) or
a word glued on (`STATUS: doneish`) is not a status line, so the outcome is
`unknown` and the text is left exactly as it came.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from agent_dispatch.models import DispatchResult, Outcome
from agent_dispatch.remedies import Advice, ResumeSession, advice

__all__ = ["Status", "read_status", "split_status"]

# The word, then Markdown around the label and the word (`**STATUS:** done`, `STATUS: done`
# in backticks), then the reason: after a space or a separator, never glued on.
# Each run of spaces is followed by something that is not a space, so no two runs compete
# for the same characters: the match is linear in the line.
_MARKUP = r"(?:[*_`]{1,3}\s*)?"
_LINE_RE = re.compile(
    rf"{_MARKUP}status\s*{_MARKUP}:\s*{_MARKUP}"
    r"(done|partial|blocked)(?=\Z|[\s:;,.!()\-\u2013\u2014]|[*_`]++(?!\w))(.*)",
    re.IGNORECASE | re.DOTALL,
)
_CLOSING = "*_`.!"  # closing markup and full stops (and whitespace)
_SEPARATORS = "*_`:;,.!-\u2013\u2014"  # between the word and its reason (and whitespace)
# A status line is short: a longer last line is prose, and is never scanned by the pattern.
MAX_LINE = 1000


class Status(NamedTuple):
    """What a final text says of itself: the outcome, its reason ("" when none was
    given) and the text without the status line."""

    outcome: Outcome
    reason: str
    text: str


def split_status(text: str) -> Status:
    """The status line that ends `text`, if any, and `text` without it.

    With a status line, the text returned is what came before it, trailing
    whitespace removed. Without one (or with a line this does not read as one)
    the outcome is "unknown", the reason "" and the text is `text` unchanged.
    Never raises on any str.
    """
    body = text.rstrip()
    cut = body.rfind("\n") + 1
    line = body[cut:].strip()
    parsed = _parse_line(line) if len(line) <= MAX_LINE else None
    if parsed is None:
        return Status("unknown", "", text)
    outcome, reason = parsed
    return Status(outcome, reason, body[:cut].rstrip())


def _parse_line(line: str) -> tuple[Outcome, str] | None:
    match = _LINE_RE.fullmatch(line)
    if match is None:
        return None
    word = match.group(1).lower()
    outcome: Outcome = "done" if word == "done" else "partial" if word == "partial" else "blocked"
    reason = _trim_end(_trim_start(match.group(2), _SEPARATORS), _CLOSING)
    if reason.startswith("(") and reason.endswith(")"):
        reason = _trim_end(reason[1:-1], _CLOSING)
    return outcome, " ".join(reason.split())


def _trim_start(text: str, chars: str) -> str:
    i = 0
    while i < len(text) and (text[i].isspace() or text[i] in chars):
        i += 1
    return text[i:]


def _trim_end(text: str, chars: str) -> str:
    i = len(text)
    while i and (text[i - 1].isspace() or text[i - 1] in chars):
        i -= 1
    return text[:i]


def read_status(res: DispatchResult, response_text: str) -> None:
    """Set a successful result's `result` to `response_text` without its status line,
    its `outcome` and `outcome_reason`; a partial or blocked run gains advice to go on
    in the same session (its work so far is there)."""
    status = split_status(response_text)
    res.result = status.text
    res.outcome = status.outcome
    res.outcome_reason = status.reason or None
    more = _continue_advice(status.outcome, res.agent, res.session_id)
    if more is not None:
        res.advice = res.advice + more if res.advice else more


def _continue_advice(outcome: Outcome, agent: str, session_id: str | None) -> Advice | None:
    if outcome == "partial":
        head, then = "The agent reports it did not finish.", " Continue the same conversation: "
    elif outcome == "blocked":
        head, then = "The agent reports it is blocked.", " Give it what it needs there: "
    else:
        return None
    if not session_id:
        return advice(head)
    return advice(head, then, ResumeSession(agent=agent, session_id=session_id), ".")
