"""What the claude CLI's error wording says, whichever stream carried it (sans-IO).

The CLI reports one condition in its JSON result, in the result's `errors`, as
plain text on stdout, or only on stderr, depending on its version and on how
early the run failed. claude_classify.py hands every text it has to `reading`,
so the same words mean the same thing on every stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import msgspec

Condition = Literal["usage_limit", "permission", "no_session"]

_USAGE_LIMIT_RE = re.compile(
    r"usage limit|rate[ _-]?limit|session limit|weekly limit|\b\d+[ -]hour limit"
    r"|limit reached|limit will reset|(?:hit|reached) your (?:\w+ )?limit"
    r"|out of (?:extra )?usage|too many requests",
    re.IGNORECASE,
)
_LIMIT_NOTICE_RE = re.compile(  # a whole "reply" that is only the limit notice
    r"(?:claude ai usage limit reached|you've hit your (?:\w+ )?limit|you have reached your"
    r" (?:\w+ )?limit|\d+[ -]hour limit reached)",
    re.IGNORECASE,
)
_PERMISSION_RE = re.compile(
    # "EACCES: permission denied, open '...'" is the OS refusing a file, not a tool.
    r"(?<!EACCES: )permission(?:s)? (?:denied|required|was denied)"
    r"|requires? (?:approval|permission)|not (?:allowed|permitted) to use|was blocked"
    r"|denied permission|not allowed in (?:this|the current) permission mode",
    re.IGNORECASE,
)
_NO_SESSION_RE = re.compile(r"no conversation found", re.IGNORECASE)
_CONDITIONS: tuple[tuple[Condition, re.Pattern[str]], ...] = (
    ("usage_limit", _USAGE_LIMIT_RE),
    ("permission", _PERMISSION_RE),
    ("no_session", _NO_SESSION_RE),
)
_EPOCH_RE = re.compile(r"\|\s*(\d{9,13})\b")
_RESET_RE = re.compile(
    r"\b(?:resets?|try again)\s+((?:at |on |in |after )?[^\n;|·∙]{1,80}?)"
    r"\s*(?:\.(?:\s|$)|[\n;|·∙]|$)",
    re.IGNORECASE,
)
_NOTICE_MAX = 300  # a limit notice is short; a long reply merely mentions limits


class Reading(msgspec.Struct, frozen=True):
    """A condition the wording names, and the text that named it (it may say more,
    such as when a limit resets)."""

    condition: Condition
    text: str


def reading(texts: Iterable[str]) -> Reading | None:
    """The condition named by the first text that names one, texts in order of weight
    (the error the run reported first, then the other stream)."""
    for text in texts:
        if not text:
            continue
        for condition, pattern in _CONDITIONS:
            if pattern.search(text):
                return Reading(condition, text)
    return None


def is_limit_notice(text: str) -> bool:
    """Whether a "successful" reply is nothing but the usage-limit notice."""
    head = text.strip()
    return len(head) <= _NOTICE_MAX and _LIMIT_NOTICE_RE.match(head) is not None


def reset_time(text: str) -> str | None:
    """When a usage limit resets, as the notice says it ("6pm (Europe/Berlin)",
    "at 2025-10-09 08:53 UTC" for an epoch), or None."""
    epoch = _EPOCH_RE.search(text)
    if epoch:
        seconds = int(epoch.group(1))
        if seconds > 10**11:  # milliseconds
            seconds //= 1000
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
        if moment is not None:
            return moment.strftime("at %Y-%m-%d %H:%M UTC")
    found = _RESET_RE.search(text)
    if found:
        when = found.group(1).strip().rstrip(".")
        return when or None
    return None
