"""ClaudeRunner: a RunSpec as a local `claude -p` child (process.py runs it).

The executable lookup lives here and only here (`find_claude`): the Dispatcher
and the CLI (`setup`, `doctor`, `demo`) use the same rules.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping

import trio

from agent_dispatch.claude import invocation as claude
from agent_dispatch.claude.output import StreamParser, has_result
from agent_dispatch.runtime.process import run_child
from agent_dispatch.runtime.runner import (
    ClaudeNotFound,
    CommandTooLong,
    CouldNotStart,
    DirectoryMissing,
    EventCallback,
    RunOutcome,
    RunSpec,
)

__all__ = ["CLAUDE_ENV_VAR", "ClaudeRunner", "find_claude"]

CLAUDE_ENV_VAR = "AGENT_DISPATCH_CLAUDE"


def find_claude(env: Mapping[str, str], claude_path: str | None = None) -> str | None:
    """The claude executable a run would use, or None when there is no runnable one.

    `$AGENT_DISPATCH_CLAUDE` wins over `claude_path` (settings.claude_path), which
    wins over `claude`; a name without a slash is looked up on `env`'s PATH.
    """
    candidate = os.path.expanduser(env.get(CLAUDE_ENV_VAR) or claude_path or "claude")
    if os.sep in candidate:
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(candidate, path=env.get("PATH", os.defpath))


class ClaudeRunner:
    """Runs each RunSpec as a local child in its own process group (see process.py).

    The child runs in `spec.directory` with exactly `spec.env`; the executable
    is looked up (`find_claude`) in `spec.env` with `spec.claude_path`. A
    prompt too long for one argument goes to the child's stdin. Stopped at its
    deadline or by cancellation, the group gets SIGTERM, then SIGKILL after
    `spec.grace` seconds.
    """

    async def run(
        self,
        spec: RunSpec,
        *,
        on_event: EventCallback | None = None,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> RunOutcome:
        argv = _argv(spec)
        try:
            outcome = await run_child(
                argv,
                cwd=spec.directory,
                env=spec.env,
                deadline=trio.current_time() + spec.timeout,
                is_complete=has_result,
                on_stdout_line=None if on_event is None else _EventFeed(on_event),
                on_spawn=task_status.started,
                stdin_data=claude.stdin_prompt(spec.invocation),
                grace=spec.grace,
            )
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise CommandTooLong(argv) from exc
            raise CouldNotStart(str(exc)) from exc
        return RunOutcome(
            returncode=outcome.returncode,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            timed_out=outcome.timed_out,
            stopped_after_result=outcome.stopped_after_result,
        )


def _argv(spec: RunSpec) -> list[str]:
    """The child's argv, after the checks that need no child: a few stats, cheap enough
    to run on the event loop."""
    if not os.path.isdir(spec.directory):
        raise DirectoryMissing(spec.directory)
    executable = find_claude(spec.env, spec.claude_path)
    if executable is None:
        raise ClaudeNotFound(spec.env.get(CLAUDE_ENV_VAR), spec.claude_path)
    return claude.build_argv(executable, spec.invocation)


class _EventFeed:
    """stream-json stdout lines in, ProgressEvents out (sync: process.py calls it per line)."""

    def __init__(self, on_event: EventCallback) -> None:
        self._parser = StreamParser()
        self._on_event = on_event

    def __call__(self, line: bytes) -> None:
        for event in self._parser.feed_line(line):
            self._on_event(event)
