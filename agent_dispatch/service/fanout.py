"""Fan-out: many dispatches at once, bounded by the Dispatcher's one limiter.

`Completions` is `d.as_completed(requests)`: results in completion order, as
`async for index, result in ...`. Its runs are tasks in the Dispatcher's nursery
under one cancel scope that the iterator owns, so the iterator may be read
without a nursery of the caller's: leaving the loop (the iterator is dropped) or
`aclose()` cancels the runs that are left, and a cancelled read stops them and
waits, shielded and bounded by the kill grace, until their process groups are
gone before `Cancelled` propagates. `async with d.as_completed(...) as results:`
gives the same with a deterministic end: the runs are gone when the block is left.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

import msgspec
import trio

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import DispatchRequest, DispatchResult

__all__ = ["Completions", "ParallelResult"]

RunOne = Callable[[DispatchRequest], Awaitable[DispatchResult]]


class ParallelResult(msgspec.Struct, kw_only=True):
    results: list[DispatchResult]
    aggregated: DispatchResult | None = None


class _Batch:
    """The runs of one Completions. The tasks hold this, never the Completions, so a
    dropped iterator is collected (and its __del__ stops the runs) while they run."""

    def __init__(self, run: RunOne, requests: list[DispatchRequest]) -> None:
        self.run = run
        self.requests = requests
        self.send, self.receive = trio.open_memory_channel[tuple[int, DispatchResult]](
            math.inf  # every result is kept until read: a paid-for answer is never dropped
        )
        self.scope = trio.CancelScope()
        self.finished = trio.Event()
        self.error: BaseException | None = None

    async def supervise(self) -> None:
        try:
            with self.scope:
                async with trio.open_nursery() as runs:
                    for index, req in enumerate(self.requests):
                        runs.start_soon(self.one, index, req)
        except Exception as exc:  # a bug in a run: the reader gets it, not the Dispatcher
            self.error = exc
        finally:
            self.send.close()
            self.finished.set()

    async def one(self, index: int, req: DispatchRequest) -> None:
        result = await self.run(req)
        self.send.send_nowait((index, result))  # unbounded: never blocks


class Completions:
    """(index, result) pairs in the order the runs finish; see the module docstring."""

    def __init__(
        self, run: RunOne, requests: Sequence[DispatchRequest], nursery: trio.Nursery
    ) -> None:
        self._batch = _Batch(run, list(requests))
        self._nursery = nursery
        self._started = False

    def __len__(self) -> int:
        return len(self._batch.requests)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._nursery.start_soon(self._batch.supervise)

    def __aiter__(self) -> Completions:
        return self

    async def __anext__(self) -> tuple[int, DispatchResult]:
        self._start()
        try:
            return await self._batch.receive.receive()
        except trio.EndOfChannel:
            if self._batch.error is not None:
                raise self._batch.error from None
            raise StopAsyncIteration from None
        except trio.Cancelled:
            await self._stop()
            raise

    async def _stop(self) -> None:
        """Cancel the runs left and wait until their process groups are gone."""
        self._batch.scope.cancel()
        if self._started:
            with trio.CancelScope(shield=True):
                await self._batch.finished.wait()

    async def aclose(self) -> None:
        """Stop the runs that have not finished (their results are not read)."""
        await self._stop()

    async def __aenter__(self) -> Completions:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    def __del__(self) -> None:
        # Left by `break` (or an exception) without aclose: stop the rest now; their
        # process groups die in the Dispatcher's nursery (bounded by the kill grace).
        batch = getattr(self, "_batch", None)
        if batch is not None and self._started and not batch.finished.is_set():
            try:
                batch.scope.cancel()
            except RuntimeError:  # pragma: no cover - trio's run is over
                pass


def checked_batch(
    requests: Sequence[DispatchRequest],
    limit: int | None,
    validate: Callable[[int, DispatchRequest], None],
) -> list[DispatchRequest]:
    """The whole batch, each item validated (`validate(index, item)` raises), before
    anything is spawned; InvalidArgument when it is empty or over `limit` items."""
    batch = list(requests)
    if not batch:
        raise InvalidArgument("dispatches: must hold at least one item")
    if limit is not None and len(batch) > limit:
        raise InvalidArgument(
            f"dispatches: {len(batch)} items is more than the limit of {limit}",
            "Split the batch, or use dispatch_async for long queues.",
        )
    for i, req in enumerate(batch):
        validate(i, req)
    return batch
