"""Jobs: submit now, wait later (bounded the trio way), cancel, list.

One slot (max_concurrency=1), three jobs: the first runs, the other two queue. The
third is cancelled while it waits (it never starts), a 0.05 s `wait_up_to` answers
with the deadline first, a `WaitMode.ANY` wait returns when the first job is done,
a `move_on_after` scope bounds a `wait` on the second, which is then cancelled
while its child runs. Leaving `Dispatcher.open` would cancel any job still running.

Runs offline against the bundled demo agent (see _demo.py): real child processes,
no claude CLI. `python examples/jobs.py`
"""

from __future__ import annotations

import trio
from _demo import demo_agents

from agent_dispatch import DispatchRequest, WaitMode


async def main() -> None:
    async with demo_agents() as demo, demo.open(max_concurrency=1) as d:
        first = await d.submit(
            DispatchRequest(agent="billing-api", task="How is a payment stored?")
        )
        second = await d.submit(DispatchRequest(agent="web-app", task="What does checkout call?"))
        third = await d.submit(DispatchRequest(agent="web-app", task="Which page lists invoices?"))
        names = {first.id: "first", second.id: "second", third.id: "third"}
        for job in (first, second, third):
            print(f"submitted {names[job.id]}: {job.status} (id {job.id})")

        outcome = await d.cancel(third.id)
        print(f"cancel(third): {outcome.outcome.value}, status {outcome.status}")

        waited = await d.wait_up_to(first.id, 0.05)
        print(f"wait_up_to(first, 0.05): timed_out={waited.timed_out}")

        with trio.fail_after(30):
            done, _ = await d.wait([first.id, second.id], mode=WaitMode.ANY)
        answer = done.result.result if done.result else ""
        print(f"wait(any): first is {done.status}: {answer}")

        with trio.move_on_after(0.2) as scope:
            await d.wait(second.id)
        print(f"wait(second) under move_on_after(0.2): gave up={scope.cancelled_caught}")
        outcome = await d.cancel(second.id)
        print(f"cancel(second): {outcome.outcome.value}, status {outcome.status}")
        outcome = await d.cancel(first.id)
        print(f"cancel(first): {outcome.outcome.value}, status {outcome.status}")

        listing = await d.list_jobs()
        statuses = {names[job.id]: job.status for job in listing.jobs}
        print("list_jobs:", ", ".join(f"{name} {statuses[name]}" for name in names.values()))


if __name__ == "__main__":
    trio.run(main)
