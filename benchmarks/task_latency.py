"""The extra latency of an MCP task over an inline result, with the real interactive CLI.

    .venv/bin/python -m benchmarks.task_latency [--rounds N]

One interactive Claude Code session per mode (the e2e tier's pty driver, our ``serve``
front, the fake Anthropic API as the model, the fake claude as the agent's child)
dispatches N times in a row, each task new (no cache hit), each child sleeping past
the grace window. What is measured, per dispatch, is the time from the child's exit
(its own record: ``end.time``, just before it exits) to the API request that brings
its answer to the model:

- task: the request carrying the ``<task-notification>`` (the job ends, Claude Code's
  next ``tasks/get`` sees it, the notification opens a turn);
- inline (``CLAUDE_CODE_DISABLE_MCP_TASKS=1``: no task is ever returned): the request
  carrying the tool_result.

Needs the pinned CLI (``scripts/install-claude-cli``, or ``$AGENT_DISPATCH_TEST_CLAUDE``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from agent_dispatch.server.tasks import POLL_STEPS
from tests.e2e.conftest import INSTALLED_CLI, OVERRIDE_VAR, isolated_env
from tests.e2e.fake_anthropic import FakeAnthropic, RecordedRequest, Reply, text, tool_use
from tests.e2e.pty_driver import interactive_claude, prepare_home
from tests.e2e.task_sandbox import DISPATCH, dispatch_sandbox

GRACE_S = 0.5
CHILD_SLEEP_S = 1.5  # past the grace window: in task mode every dispatch is a task
# ... plus a spread over one poll interval (golden-ratio steps), so that the child's
# exit falls at every phase of Claude Code's polling, not always at the same one.
SPREAD_S = 1.0
ROUND_LIMIT_S = 30.0
START_LIMIT_S = 60.0


@dataclass
class Session:
    """The fake model's side of one session: it dispatches ``rounds`` times in a row
    and notes when each answer reached it."""

    rounds: int
    as_task: bool
    arrived: list[float] = field(default_factory=list)  # time.time(), per round
    notifications: int = 0
    done: trio.Event = field(default_factory=trio.Event)

    def task(self, round_: int) -> str:
        sleep = CHILD_SLEEP_S + (round_ * 0.618034) % 1.0 * SPREAD_S
        return f"@fake sleep={sleep:.3f}\n@fake reply=answer {round_}\nround {round_} of a run"

    def dispatch(self, round_: int) -> Reply:
        call = {"agent": "alpha", "task": self.task(round_)}
        return tool_use(DISPATCH, call, tool_use_id=f"toolu_round_{round_}")

    def answer_arrived(self) -> Reply:
        self.arrived.append(time.time())
        if len(self.arrived) < self.rounds:
            return self.dispatch(len(self.arrived))
        self.done.set()
        return text("All answered.")

    def respond(self, request: RecordedRequest) -> Reply:
        seen = request.user_text.count("<task-notification>")
        if seen > self.notifications:  # a new notification: this turn is its
            self.notifications = seen
            return self.answer_arrived()
        if not request.has_tool_result:
            return self.dispatch(0)
        if self.as_task:
            return text("Waiting for the notification.")  # the placeholder: end the turn
        return self.answer_arrived()


async def measure(binary: Path, rounds: int, *, as_task: bool) -> list[float]:
    """Seconds from each child's exit to its answer's request, one session."""
    session = Session(rounds, as_task)
    fake = FakeAnthropic(session.respond)
    with tempfile.TemporaryDirectory(prefix="task-latency-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            env = isolated_env(root, fake.base_url)
            if not as_task:
                env["CLAUDE_CODE_DISABLE_MCP_TASKS"] = "1"
            prepare_home(Path(env["HOME"]), project, env["ANTHROPIC_API_KEY"])
            async with (
                dispatch_sandbox(root, project, grace_seconds=GRACE_S) as sandbox,
                interactive_claude(
                    binary, env, project, args=sandbox.cli_args(DISPATCH), prompt="Go."
                ) as cli,
            ):
                with cli.expecting(f"{rounds} answers", START_LIMIT_S + rounds * ROUND_LIMIT_S):
                    await session.done.wait()
                children = sandbox.children()
                jobs = sandbox.jobs_on_disk()
            nursery.cancel_scope.cancel()
    if as_task != bool(jobs):  # every task is a job; an inline dispatch makes none
        raise SystemExit(f"as_task={as_task} but {len(jobs)} job records: the mode did not hold")
    ends = {}
    for child in children:
        round_ = next(r for r in range(rounds) if f"round {r} of a run" in child["prompt"])
        ends[round_] = child["end"]["time"]
    return [arrived - ends[r] for r, arrived in enumerate(session.arrived)]


def row(name: str, samples: list[float]) -> str:
    cells = [statistics.median(samples), min(samples), max(samples)]
    return f"{name:<8} {len(samples):>6} " + " ".join(f"{c:>9.3f}" for c in cells)


async def main(binary: Path, rounds: int) -> None:
    inline = await measure(binary, rounds, as_task=False)
    task = await measure(binary, rounds, as_task=True)
    young_s, young_ms = POLL_STEPS[0]
    print(
        f"child exit -> the answer's API request, interactive CLI, {rounds} dispatches each"
        f" (grace {GRACE_S} s, child {CHILD_SLEEP_S}-{CHILD_SLEEP_S + SPREAD_S} s; tasks/get poll"
        f" every {young_ms} ms for tasks under {young_s:g} s)"
    )
    print(f"{'mode':<8} {'rounds':>6} {'median_s':>9} {'min_s':>9} {'max_s':>9}")
    print(row("inline", inline))
    print(row("task", task))
    extra = statistics.median(task) - statistics.median(inline)
    print(f"extra latency of a task (median task - median inline): {extra:.3f} s")
    print("samples: inline " + " ".join(f"{s:.3f}" for s in inline), file=sys.stderr)
    print("samples: task   " + " ".join(f"{s:.3f}" for s in task), file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="dispatches per mode (default 7)")
    cli = Path(os.environ.get(OVERRIDE_VAR) or INSTALLED_CLI)
    if not cli.exists():
        raise SystemExit(f"no claude CLI at {cli}: run scripts/install-claude-cli")
    trio.run(main, cli, parser.parse_args().rounds)
