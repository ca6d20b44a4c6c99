"""SIGINT and SIGTERM end a server process cleanly: its body is cancelled, so its
children die and its jobs are recorded, and a second signal cannot cut that short."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

__all__ = ["until_signalled"]

log = logging.getLogger("agent_dispatch.server.signals")


async def until_signalled(body: Callable[[], Awaitable[None]]) -> None:
    """Run `body` until it returns or SIGINT/SIGTERM cancels it.

    It is the process's main function: it owns SIGINT and SIGTERM, and leaves them
    ignored on return, when the children are dead and the process is exiting.
    """
    # The receiver spans the body's exit too: its jobs' children die in there. It
    # restores on exit what it found, and it finds "ignore": a signal that comes once
    # the cleanup is over (a second Ctrl-C, a late SIGTERM) cannot turn a clean exit
    # into a traceback or a kill. Nothing awaits between the two calls.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as guard:
            serving = trio.CancelScope()
            guard.start_soon(_cancel_on_signal, signals, serving)
            with serving:
                await body()
            guard.cancel_scope.cancel()


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    # Keep draining after the first signal: a second Ctrl-C or SIGTERM during the
    # shutdown must not fall back to the default action and orphan the children.
    async for signum in signals:
        name = signal.Signals(signum).name
        if scope.cancel_called:
            log.info("received %s: already shutting down", name)
        else:
            log.info("received %s: shutting down", name)
            scope.cancel()
