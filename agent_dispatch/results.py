"""What a dispatch returns: `DispatchResult`, its error types, and the exceptions
`DispatchResult.raise_for_error` turns a failed one into.

A failure of the agent run (a timeout, a usage limit, a denied tool, ...) is a
result with `success=False`, never an exception: the MCP and CLI faces return
it as data. A library caller who would rather handle it with `except` calls
`result.raise_for_error()`, which raises one `DispatchFailed` subclass per
`ErrorType`, each carrying the very result as `.result`.

The exceptions live beside the result (not in errors.py) because they carry
one, and the error layer imports nothing above it; models.py re-exports these
names, so `agent_dispatch.models.DispatchResult` is where it always was.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal, get_args

import msgspec

from agent_dispatch.errors import DispatchError
from agent_dispatch.remedies import Advice

__all__ = [
    "ERROR_TYPES",
    "OUTCOMES",
    "BudgetExceeded",
    "ClaudeCliError",
    "ClaudeOrDirectoryNotFound",
    "DispatchFailed",
    "DispatchResult",
    "DispatchTimeout",
    "ErrorType",
    "Outcome",
    "PermissionDenied",
    "RecursionLimitReached",
    "UsageLimitReached",
]

ErrorType = Literal[
    "permission", "timeout", "recursion", "not_found", "budget", "usage_limit", "cli_error"
]
ERROR_TYPES: tuple[ErrorType, ...] = get_args(ErrorType)
# What the agent said of its own work, on the last line of its answer (claude/status.py):
# it finished, stopped half-way, or is blocked; "unknown" when it said nothing.
Outcome = Literal["done", "partial", "blocked", "unknown"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


class DispatchResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a dispatch returns. Optional fields are omitted when unset.

    `outcome` is the agent's own verdict on a successful run: "done", "partial" or
    "blocked" from the `STATUS:` line it ended its answer with (removed from `result`;
    `outcome_reason` is what it gave after the word), "unknown" when it wrote none. A
    partial or blocked run carries a hint to continue its session, and is never
    cached. A failed run (`success=False`) produced no answer, so it has no outcome
    (None, left out of the JSON): its `error_type` says what happened.
    """

    agent: str
    success: bool
    result: str = ""
    session_id: str | None = None
    cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    error: str | None = None
    error_type: ErrorType | None = None
    parsed_result: Any = None
    denied_tools: list[str] | None = None
    hint: str | None = None
    budget_exceeded: bool | None = None
    cached: bool | None = None
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    # The hint as data (what to change, to which value); `hint` is its text as rendered
    # for the receiver. Faces render it and leave it out of their answers.
    advice: Advice | None = None

    def raise_for_error(self) -> None:
        """Return None when the dispatch succeeded; raise its failure otherwise.

        Like httpx's `Response.raise_for_status`: the result stays the answer, and
        this is the opt-in way to handle a failed run with `except`. The exception's
        message is `self.error`, its `hint` is `self.hint`, and `.result` is this
        very result (cost, session_id and denied tools stay at hand).

        Raises:
          DispatchTimeout: the run hit its timeout (error_type "timeout").
          UsageLimitReached: the Claude usage or rate limit was hit ("usage_limit").
          BudgetExceeded: the run hit its max_budget_usd ("budget").
          PermissionDenied: the agent was refused tools it needed ("permission").
          ClaudeOrDirectoryNotFound: the agent's directory or the claude executable
            does not exist ("not_found").
          RecursionLimitReached: the dispatch was refused at settings.max_dispatch_depth
            ("recursion").
          ClaudeCliError: the claude CLI failed in another way ("cli_error").
          DispatchFailed: the base of all of these, raised itself for a failure
            without an error_type.
        """
        if self.success:
            return
        raise _FAILURES.get(self.error_type, DispatchFailed)(self)


class DispatchFailed(DispatchError):
    """The agent run failed: raised by `DispatchResult.raise_for_error`, never by a dispatch.

    `DispatchError` has two kinds of subclasses. Bad input (`UnknownAgent`,
    `InvalidArgument`, `ConfigError`, ...) is raised by the dispatch call itself:
    nothing ran. A `DispatchFailed` is a run that happened (or was refused) and
    failed; `dispatch` returns it as a result, and only `raise_for_error` raises
    it. `except DispatchError` catches both.

    Attributes:
      result: the failed DispatchResult, the very object raise_for_error was called on.
      message: `result.error` (or a stand-in naming the agent when the result has none),
        cut at errors.MAX_MESSAGE characters like every DispatchError's; also `str(exc)`.
      hint: `result.hint`, the next thing to try ("" when there is none).
      error_type: the ErrorType this class stands for (None on the base class).
    """

    error_type: ClassVar[ErrorType | None] = None

    def __init__(self, result: DispatchResult, message: str | None = None) -> None:
        if message is None:
            message = result.error or f"the dispatch to agent {result.agent!r} failed"
        super().__init__(message, result.hint)
        self.result = result

    def under(self, path: str) -> DispatchFailed:
        return type(self)(self.result, f"{path}.{self.message}")

    def __reduce__(self) -> tuple[type[DispatchFailed], tuple[DispatchResult, str]]:
        # Exception pickles its args, (message,), which is not what __init__ takes.
        return type(self), (self.result, self.message)


class DispatchTimeout(DispatchFailed):
    """The run hit its timeout and was stopped (error_type "timeout")."""

    error_type = "timeout"


class UsageLimitReached(DispatchFailed):
    """Claude's usage or rate limit was hit (error_type "usage_limit"); the hint says when
    it resets, when the CLI said so."""

    error_type = "usage_limit"


class BudgetExceeded(DispatchFailed):
    """The run spent its max_budget_usd (error_type "budget")."""

    error_type = "budget"


class PermissionDenied(DispatchFailed):
    """The agent was refused tools it needed (error_type "permission"); the names are in
    `result.denied_tools`."""

    error_type = "permission"


class ClaudeOrDirectoryNotFound(DispatchFailed):
    """The agent's directory or the claude executable does not exist, so nothing ran
    (error_type "not_found"). An agent name that is not configured is `UnknownAgent`,
    raised by the dispatch itself."""

    error_type = "not_found"


class RecursionLimitReached(DispatchFailed):
    """The dispatch was refused because agents already nest settings.max_dispatch_depth
    deep (error_type "recursion")."""

    error_type = "recursion"


class ClaudeCliError(DispatchFailed):
    """The claude CLI failed in any other way: an API error, a crash, unreadable output
    (error_type "cli_error")."""

    error_type = "cli_error"


_FAILURES: Mapping[ErrorType | None, type[DispatchFailed]] = MappingProxyType(
    {
        cls.error_type: cls
        for cls in (
            DispatchTimeout,
            UsageLimitReached,
            BudgetExceeded,
            PermissionDenied,
            ClaudeOrDirectoryNotFound,
            RecursionLimitReached,
            ClaudeCliError,
        )
    }
)
