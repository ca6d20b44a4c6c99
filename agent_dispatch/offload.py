"""Blocking IO off the event loop: the one door every file and lock call goes through.

`await offload.run_sync(fn, *args)` is `trio.to_thread.run_sync(fn, *args)`,
unless the calling task's context says `inline()`: then `fn` runs on the event
loop after a checkpoint. That is for tests that drive time with trio's
autojump clock: the clock jumps to the next deadline as soon as every task is
blocked, and a task waiting for a worker thread counts as blocked, so a
deadline (a hello timeout, an idle exit) could pass while a record is still
being written. Inline, nothing waits for a thread, and the clock moves only
when the program is really waiting. A context variable, not a global: tasks
started from the test's task inherit it, nothing else sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar, TypeVarTuple

import trio

__all__ = ["inline", "run_sync"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

_INLINE: ContextVar[bool] = ContextVar("agent_dispatch_offload_inline", default=False)


async def run_sync(fn: Callable[[*_Ts], _T], *args: *_Ts, abandon_on_cancel: bool = False) -> _T:
    """Run the blocking `fn(*args)` in a worker thread (inline under `inline()`)."""
    if _INLINE.get():
        await trio.lowlevel.checkpoint()
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=abandon_on_cancel)


@contextmanager
def inline() -> Iterator[None]:
    """Within this block (and in the tasks started from it), run blocking calls inline."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)
