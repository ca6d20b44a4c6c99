"""A dispatch you can watch: `Run`, what `d.stream(req)` and `d.start(req)` give.

The run's events (queued, started, the child's text, tool calls and retries) go
into a bounded buffer that drops the oldest when full and counts what it
dropped, so a slow reader never delays the child or the result: the result is
there (`run.result`) the moment the run ends, however far behind the reader is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from agent_dispatch import exception_groups
from agent_dispatch.models import Config, DispatchRequest, DispatchResult, ProgressEvent
from agent_dispatch.service.runs import ProgressCallback, RunStats

__all__ = ["DEFAULT_BUFFER", "Run", "StreamMethods"]

DEFAULT_BUFFER = 1000  # events kept for a reader that falls behind


class Run:
    """One dispatch under way.

    `async for event in run:` yields its ProgressEvents in order, then ends when the
    run has ended and the reader has every event still buffered. `pid` and
    `session_id` are known once the child has started (`await run.wait_started()`);
    `dropped` counts events a slow reader lost (the oldest go first).
    """

    def __init__(self, request: DispatchRequest, buffer: int = DEFAULT_BUFFER) -> None:
        if buffer < 1:
            raise ValueError(f"buffer: must be at least 1, got {buffer}")
        self.request = request
        self.pid: int | None = None
        self.session_id: str | None = request.session_id
        self.cancelled = False
        self._events: deque[ProgressEvent] = deque(maxlen=buffer)
        self._lost = 0
        self._stats = RunStats()
        self._arrived = trio.Event()
        self._started = trio.Event()
        self._ended = trio.Event()
        self._settled = trio.Event()  # started, or ended without starting
        self._result: DispatchResult | None = None
        self._scope = trio.CancelScope()

    def __repr__(self) -> str:
        state = "ended" if self.done else ("started" if self._started.is_set() else "waiting")
        return f"<Run {self.request.agent!r} {state} pid={self.pid}>"

    # -- reading -----------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The run has ended (with a result, or cancelled)."""
        return self._ended.is_set()

    @property
    def dropped(self) -> int:
        """Events this run's reader lost because it fell `buffer` events behind."""
        return self._lost + self._stats.dropped

    @property
    def result(self) -> DispatchResult:
        """The run's result, once it has ended (after the `async for`, or `await run.wait()`).

        Raises:
          RuntimeError: the run has not ended yet, or it was cancelled (no result).
        """
        if self._result is None:
            if self.cancelled:
                raise RuntimeError(f"the run of {self.request.agent!r} was cancelled: no result")
            raise RuntimeError(
                "the run has not ended: read run.result after the `async for` loop, "
                "or await run.wait()"
            )
        return self._result

    async def wait(self) -> DispatchResult:
        """Wait for the run to end; its result (raises as `result` when it was cancelled)."""
        await self._ended.wait()
        return self.result

    async def wait_started(self) -> None:
        """Wait until the child has started (`pid`, `session_id` known) or the run ended
        without one (it could not start, or it was cancelled while queued)."""
        await self._settled.wait()

    def cancel(self) -> None:
        """Stop the run: its process group is stopped and its slot freed; no result."""
        self._scope.cancel()

    def __aiter__(self) -> Run:
        return self

    async def __anext__(self) -> ProgressEvent:
        while not self._events:
            if self._ended.is_set():
                raise StopAsyncIteration
            self._arrived = trio.Event()
            await self._arrived.wait()
        return self._events.popleft()

    # -- fed by the Dispatcher -----------------------------------------------------

    async def _push(self, event: ProgressEvent) -> None:
        """run_once's progress callback: never waits, so the runner never does."""
        if event.kind == "started":
            self.pid = event.pid
            self.session_id = event.session_id or self.session_id
            self._started.set()
            self._settled.set()
        if len(self._events) == self._events.maxlen:
            self._lost += 1  # deque drops the oldest as the new one goes in
        self._events.append(event)
        self._arrived.set()

    def _end(self, result: DispatchResult | None) -> None:
        self._result = result
        self.cancelled = result is None
        if result is not None and result.session_id:
            self.session_id = result.session_id
        self._ended.set()
        self._settled.set()
        self._arrived.set()


class StreamMethods:
    """`stream` and `start` on the Dispatcher (a mixin: it provides the rest)."""

    def config(self) -> Config:
        raise NotImplementedError  # pragma: no cover - Dispatcher.config

    def validate(self, req: DispatchRequest, cfg: Config | None = None, field: str = "") -> None:
        raise NotImplementedError  # pragma: no cover - Dispatcher.validate

    async def _run(
        self,
        cfg: Config,
        req: DispatchRequest,
        *,
        use_cache: bool,
        on_progress: ProgressCallback | None = None,
        on_spawn: Callable[[int | None], None] | None = None,
        lifecycle: bool = False,
        stats: RunStats | None = None,
        tool: str = "dispatch",
        job_id: str | None = None,
    ) -> DispatchResult:
        raise NotImplementedError  # pragma: no cover - Dispatcher._run

    @asynccontextmanager
    async def stream(
        self, req: DispatchRequest, *, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[Run]:
        """`async with d.stream(req) as run:` a dispatch whose events you read as it goes:

            async with d.stream(req) as run:
                async for event in run:
                    print(event.kind, event.message)
            print(run.result.result)

        The block is entered at once (the run may still wait for a slot: a "queued"
        event says so); `run.pid` and `run.session_id` are set by the "started"
        event. Leaving the block stops a run that has not ended (its process group
        is gone when the block is left). Never cached.

        Raises (on entering): as `dispatch`, for a bad request; nothing runs.
        """
        cfg, run = self._new_run(req, buffer)
        with exception_groups.collapsed():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drive, cfg, run)
                try:
                    yield run
                finally:
                    run.cancel()  # a run that has ended is not touched

    async def start(
        self,
        req: DispatchRequest,
        *,
        buffer: int = DEFAULT_BUFFER,
        task_status: trio.TaskStatus[Run] = trio.TASK_STATUS_IGNORED,
    ) -> DispatchResult | None:
        """`run = await nursery.start(d.start, req)`: returns once the child has started
        (or the run ended without one), like `trio.lowlevel.open_process`; the run goes
        on in `nursery`. Read it as `stream` gives it; `run.cancel()` stops it.
        Returns the result (None when cancelled) to the nursery, which ignores it.

        Raises (before anything runs): as `dispatch`, for a bad request.
        """
        cfg, run = self._new_run(req, buffer)
        with exception_groups.collapsed():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drive, cfg, run)
                await run.wait_started()
                task_status.started(run)
        return run._result

    def _new_run(self, req: DispatchRequest, buffer: int) -> tuple[Config, Run]:
        """The config the run uses and its Run, after the request is checked."""
        cfg = self.config()
        self.validate(req, cfg)
        return cfg, Run(req, buffer)

    async def _drive(self, cfg: Config, run: Run) -> None:
        result: DispatchResult | None = None
        try:
            with run._scope:
                result = await self._run(
                    cfg,
                    run.request,
                    use_cache=False,
                    on_progress=run._push,
                    lifecycle=True,
                    stats=run._stats,
                    tool="stream",
                )
        finally:
            run._end(result)
