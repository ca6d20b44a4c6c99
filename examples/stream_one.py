"""One dispatch, streamed: its events as they happen, then its result.

`async with d.stream(req) as run:` starts the run; `async for event in run:` reads
its events (queued, started, text, tool_use, retry) from a bounded buffer, so a slow
reader never delays the child; `run.result` is there after the loop. Then a run
given too little time: a failed run is a result, and `raise_for_error()` is the
opt-in way to make it an exception.

Runs offline against the bundled demo agent (see _demo.py): real child processes,
no claude CLI. `python examples/stream_one.py`
"""

from __future__ import annotations

import json

import trio
from _demo import demo_agents

from agent_dispatch import DispatchRequest, DispatchTimeout, ProgressEvent


def describe(event: ProgressEvent, start: float) -> str:
    line = f"  +{event.at - start:4.2f}s  {event.kind:<8} {event.message}"
    if event.kind == "started":
        line += f", session {event.session_id}"
    if event.kind == "tool_use":
        line += f" input={json.dumps(event.tool_input)}"
    return line


async def main() -> None:
    async with demo_agents() as demo, demo.open() as d:
        req = DispatchRequest(agent="billing-api", task="Which endpoint creates an invoice?")
        print(f"-> {req.agent}: {req.task}")
        start = trio.current_time()
        async with d.stream(req) as run:
            t0: float | None = None
            async for event in run:
                t0 = event.at if t0 is None else t0
                print(describe(event, t0))
        result = run.result
        print(f"<- success={result.success} pid={run.pid} dropped={run.dropped}")
        print(f"   {result.result}")
        print(f"   ({trio.current_time() - start:.2f}s in all)")

        print("-> the same agent with timeout_seconds=0.05")
        late = await d.dispatch(
            DispatchRequest(
                agent="billing-api", task="How is a payment stored?", timeout_seconds=0.05
            )
        )
        print(f"<- success={late.success} error_type={late.error_type}")
        try:
            late.raise_for_error()
        except DispatchTimeout as exc:
            print(f"   raise_for_error() raised {type(exc).__name__}: {exc}")
            print(f"   hint: {exc.hint}")


if __name__ == "__main__":
    trio.run(main)
