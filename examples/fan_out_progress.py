"""A fan-out of 8 tasks with live progress, at most 3 children at a time.

Each task is a `d.stream(req)` in the program's own nursery; every event updates a
plain-text board (one line per change: done count, task, what it does now). The
Dispatcher's one limiter keeps 3 children live: the other 5 say "queued" first and
start as slots free up. The answers are printed in task order at the end.

Runs offline against the bundled demo agent (see _demo.py): real child processes,
no claude CLI. `python examples/fan_out_progress.py`
"""

from __future__ import annotations

import trio
from _demo import demo_agents

from agent_dispatch import Dispatcher, DispatchRequest, DispatchResult, ProgressEvent

MAX_CONCURRENCY = 3
QUESTIONS = [
    ("billing-api", "Which endpoint creates an invoice?"),
    ("web-app", "Which page lists a customer's invoices?"),
    ("billing-api", "How is a card payment recorded?"),
    ("web-app", "What does the checkout form call?"),
    ("billing-api", "Where are payments stored?"),
    ("web-app", "What is the front end built with?"),
    ("billing-api", "What does POST /invoices return?"),
    ("web-app", "What does the checkout show at the end?"),
]


class Board:
    """What each task is doing; prints a line whenever one of them changes."""

    def __init__(self, requests: list[DispatchRequest]) -> None:
        self.requests = requests
        self.results: list[DispatchResult | None] = [None] * len(requests)
        self.queued = 0
        self.live = 0
        self.peak = 0

    def show(self, index: int, what: str) -> None:
        done = sum(r is not None for r in self.results)
        agent = self.requests[index].agent
        print(
            f"[{done}/{len(self.requests)} done, {self.live} live] #{index + 1} {agent:<11} {what}"
        )

    def event(self, index: int, event: ProgressEvent) -> None:
        if event.kind == "queued":
            self.queued += 1
        if event.kind == "started":
            self.live += 1
            self.peak = max(self.peak, self.live)
        self.show(index, event.message)

    def finish(self, index: int, result: DispatchResult) -> None:
        self.live -= 1
        self.results[index] = result
        seconds = (result.duration_ms or 0) / 1000
        self.show(index, f"done in {seconds:.2f}s" if result.success else f"FAILED: {result.error}")


async def watch(d: Dispatcher, index: int, board: Board) -> None:
    async with d.stream(board.requests[index]) as run:
        async for event in run:
            board.event(index, event)
    board.finish(index, run.result)


async def main() -> None:
    requests = [DispatchRequest(agent=agent, task=task) for agent, task in QUESTIONS]
    board = Board(requests)
    async with demo_agents() as demo, demo.open(max_concurrency=MAX_CONCURRENCY) as d:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(len(requests)):
                nursery.start_soon(watch, d, index, board)
        elapsed = trio.current_time() - start
    ok = sum(r is not None and r.success for r in board.results)
    print()
    print(f"{ok}/{len(requests)} succeeded in {elapsed:.2f}s")
    print(f"at most {board.peak} live at once; {board.queued} waited for a slot")
    for index, result in enumerate(board.results):
        print(f"#{index + 1} {requests[index].task}")
        print(f"   {result.result if result else '(no result)'}")


if __name__ == "__main__":
    trio.run(main)
