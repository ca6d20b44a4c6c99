"""Whose call this is: the caller's environment and working directory (issue #16).

One Dispatcher serves every session of the per-user service, and each session
speaks for another caller: its children must get that caller's environment (API
keys, PATH, CLAUDE_CONFIG_DIR) and its dispatch depth, not the service's. The
context lives in a ContextVar, set around a session's task: trio copies the
context into every task started from there, so jobs a session submits keep its
caller's environment after the session ends. Unset, the Dispatcher's own env holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["CallerContext", "caller_context", "current_caller"]


@dataclass(frozen=True)
class CallerContext:
    """The caller's whole environment and its working directory."""

    env: Mapping[str, str] = field(hash=False)
    cwd: str = ""


_CALLER: ContextVar[CallerContext | None] = ContextVar("agent_dispatch_caller", default=None)


@contextmanager
def caller_context(ctx: CallerContext) -> Iterator[CallerContext]:
    """Dispatches made in this block (and in tasks started from it) run for `ctx`."""
    token = _CALLER.set(ctx)
    try:
        yield ctx
    finally:
        _CALLER.reset(token)


def current_caller() -> CallerContext | None:
    """The caller the current task serves, None outside any `caller_context`."""
    return _CALLER.get()
