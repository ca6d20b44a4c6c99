"""The guard rails a Dispatcher puts on its callers' numbers.

A trio program that embeds the library means what it passes: a 0.5 s timeout,
a 0.2 s wait, 5,000 requests, no cache unless it asks for one. A model calling
MCP tools does not always: the server and the CLI pass `TOOLS`, which keeps the
rails the published tools promise (timeouts 10..7200 s, waits 1..3600 s, a
batch cap, the result cache as the config sets it).
"""

from __future__ import annotations

import msgspec

from agent_dispatch.models import MAX_TIMEOUT, MIN_TIMEOUT

__all__ = ["LIBRARY", "TOOLS", "Policy"]


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """How a Dispatcher treats the numbers its callers pass."""

    cache: bool = False  # use the result cache (then as settings.cache configures it)
    # Timeouts: None/0 is always the agent's own; others are clamped to these bounds.
    min_timeout: float = 0.0
    max_timeout: float | None = None
    cap_batches: bool = False  # dispatch_parallel refuses more than max(100, 20 x slots)
    min_wait: float = 0.0  # job waits: shorter ones are lengthened to this
    max_wait: float | None = None  # and longer ones (or none) shortened to this


LIBRARY = Policy()
TOOLS = Policy(
    cache=True,
    min_timeout=MIN_TIMEOUT,
    max_timeout=MAX_TIMEOUT,
    cap_batches=True,
    min_wait=1.0,
    max_wait=3600.0,
)
