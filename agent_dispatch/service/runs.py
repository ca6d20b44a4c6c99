"""One run through the Runner seam: the slot, the progress relay, the classification.

The Dispatcher decides what to run (a RunSpec); `run_once` holds one token of
its CapacityLimiter for the run's whole life, relays the runner's events to an
async progress callback, and turns the outcome (or a failed start) into a
DispatchResult. It knows no runner but the Protocol.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
import trio

from agent_dispatch import exception_groups
from agent_dispatch.claude import classify as claude_classify
from agent_dispatch.claude import unstarted
from agent_dispatch.models import DispatchResult, ProgressEvent
from agent_dispatch.remedies import CheckInstall, Choice, UpdateAgent, advice
from agent_dispatch.runtime.runner import (
    ClaudeNotFound,
    CommandTooLong,
    DirectoryMissing,
    Runner,
    RunSpec,
    StartFailed,
)
from agent_dispatch.service.remedies import library_hint

ProgressCallback = Callable[[ProgressEvent], Awaitable[None]]
_PROGRESS_BUFFER = 256


class RunStats:
    """What `run_once` counts about one run, readable while it goes and after."""

    def __init__(self) -> None:
        # Progress events lost because the callback fell a whole buffer behind: the
        # runner is never made to wait for a slow consumer.
        self.dropped = 0


async def run_once(
    runner: Runner,
    limiter: trio.CapacityLimiter,
    spec: RunSpec,
    *,
    agent_timeout: float,
    max_budget_usd: float | None,
    response_format: str,
    on_progress: ProgressCallback | None = None,
    on_spawn: Callable[[int | None], None] | None = None,
    lifecycle: bool = False,
    stats: RunStats | None = None,
    typical_seconds: float | None = None,
) -> DispatchResult:
    """Run `spec` under one limiter token and classify what it left (`typical_seconds`:
    how long the agent's runs usually take, for a timeout's hint).

    Every event reaches `on_progress` in order, stamped with the wall-clock time
    the service saw it (`at`); a callback a whole buffer behind loses events
    (counted in `stats.dropped`), never delays the runner. The result still waits
    for `on_progress` to take every relayed event: a caller whose result must not
    wait passes a callback that never blocks. With `lifecycle`, the run also
    says "queued" when no slot is free as it asks for one, and "started" (pid,
    session id) once the runner has started, both before any of the child's
    events.
    """
    stats = stats if stats is not None else RunStats()
    with exception_groups.collapsed():  # a cancelled run raises a bare trio.Cancelled
        async with trio.open_nursery() as nursery:
            relay = None
            send: trio.MemorySendChannel[ProgressEvent] | None = None
            if on_progress is not None:
                send, receive = trio.open_memory_channel[ProgressEvent](_PROGRESS_BUFFER)
                nursery.start_soon(_forward_progress, receive, on_progress)
                relay = _Relay(send, stats)
            lifecycle_relay = relay if lifecycle else None
            try:
                await _acquire(limiter, lifecycle_relay)
                try:
                    started = _Started(on_spawn, lifecycle_relay, spec.invocation.session_id)
                    outcome = await runner.run(spec, on_event=relay, task_status=started)
                except StartFailed as exc:
                    return library_hint(start_failure(spec.agent, exc))
                finally:
                    limiter.release()
            finally:
                if send is not None:
                    send.close()
    classified = claude_classify.classify(
        agent=spec.agent,
        returncode=outcome.returncode,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        timed_out=outcome.timed_out,
        stopped_after_result=outcome.stopped_after_result,
        session_id=spec.invocation.session_id,
        timeout_seconds=spec.timeout,
        agent_timeout=agent_timeout,
        max_budget_usd=max_budget_usd,
        response_format=response_format,
        typical_seconds=typical_seconds,
    )
    return library_hint(classified)


def start_failure(agent: str, exc: StartFailed) -> DispatchResult:
    """The failed result for a run that could not start."""
    if isinstance(exc, DirectoryMissing):
        fix = UpdateAgent(agent=agent, field="directory")
        return unstarted.not_found_result(
            agent,
            f"agent directory does not exist: {exc.directory}",
            advice("Fix it with ", Choice(options=(fix,)), "."),
        )
    if isinstance(exc, ClaudeNotFound):
        return unstarted.claude_missing(agent, exc.env_value, exc.claude_path)
    if isinstance(exc, CommandTooLong):
        return unstarted.command_too_long(agent, exc.argv)
    return unstarted.not_found_result(
        agent,
        f"could not start claude: {exc}",
        advice("Check the claude executable (", CheckInstall(), ") and the agent's directory."),
    )


async def _acquire(limiter: trio.CapacityLimiter, relay: _Relay | None) -> None:
    """`limiter.acquire()`, saying "queued" to `relay` first when it has to wait."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        if relay is not None:
            busy = f"Queued: no free slot ({limiter.total_tokens:g} in use)"
            relay(ProgressEvent("queued", busy))
        await limiter.acquire()
    else:
        await trio.lowlevel.cancel_shielded_checkpoint()


class _Started:
    """The runner's task_status: tells `on_spawn` the run exists (and its process group),
    and says "started" to `relay` when given."""

    def __init__(
        self,
        on_spawn: Callable[[int | None], None] | None,
        relay: _Relay | None,
        session_id: str,
    ) -> None:
        self._on_spawn = on_spawn
        self._relay = relay
        self._session_id = session_id

    def started(self, value: int | None = None) -> None:
        if self._relay is not None:
            message = "Started" + (f" (pid {value})" if value is not None else "")
            self._relay(ProgressEvent("started", message, pid=value, session_id=self._session_id))
        if self._on_spawn is not None:
            self._on_spawn(value)


class _Relay:
    """The runner's on_event: ProgressEvents, stamped, onto a channel, never blocking
    the runner."""

    def __init__(self, send: trio.MemorySendChannel[ProgressEvent], stats: RunStats) -> None:
        self._send = send
        self._stats = stats

    def __call__(self, event: ProgressEvent) -> None:
        try:
            self._send.send_nowait(msgspec.structs.replace(event, at=time.time()))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._stats.dropped += 1  # a slow consumer loses progress lines, never the answer


async def _forward_progress(
    receive: trio.MemoryReceiveChannel[ProgressEvent], on_progress: ProgressCallback
) -> None:
    async with receive:
        async for event in receive:
            await on_progress(event)
