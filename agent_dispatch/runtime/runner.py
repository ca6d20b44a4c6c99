"""The Runner seam: the one interface through which the service runs a claude invocation.

The service decides everything about a run (the agent's directory, the
`Invocation`, the child's environment, the time it gets) and puts it in a
`RunSpec`; a Runner carries it out and hands back a `RunOutcome`, the raw
material the classifier (claude/classify.py) turns into a DispatchResult. The
service holds its CapacityLimiter around the whole `run` call.

Implementations: `ClaudeRunner` (runtime/claude_runner.py) runs a local
`claude -p` child in its own process group; `ScriptedRunner`
(runtime/scripted.py) is the fake for tests and embedders. A runner for agents
on other machines is a new class with the same `run`, not a change to the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec
import trio

from agent_dispatch.claude.invocation import Invocation
from agent_dispatch.models import KILL_GRACE_SECONDS, ProgressEvent

__all__ = [
    "ClaudeNotFound",
    "CommandTooLong",
    "CouldNotStart",
    "DirectoryMissing",
    "EventCallback",
    "RunOutcome",
    "RunSpec",
    "Runner",
    "StartFailed",
]

EventCallback = Callable[[ProgressEvent], None]


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One run, as the service decided it."""

    agent: str  # the agent's name (for errors and for matching in fakes)
    directory: str  # the agent's project directory: the child's working directory
    invocation: Invocation  # the `claude -p` run, argv-level (prompt, session, flags)
    env: dict[str, str]  # the child's whole environment
    timeout: float  # seconds from the start of the run (the slot is already held)
    claude_path: str | None = None  # settings.claude_path, for a local executable lookup
    # Seconds between SIGTERM and SIGKILL when the run is stopped (timeout, cancel):
    # settings.kill_grace_seconds.
    grace: float = KILL_GRACE_SECONDS


class RunOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished (or timed-out) run left for the classifier."""

    returncode: int | None  # None: the leader could not be reaped (or no exit status)
    stdout: bytes
    stderr: bytes = b""
    timed_out: bool = False  # the timeout ended the run (the output may still hold a result)
    # The run had printed a complete result and was stopped because it did not exit.
    stopped_after_result: bool = False


class StartFailed(Exception):
    """The run could not start; nothing ran. The service turns it into a failed result."""


class DirectoryMissing(StartFailed):
    def __init__(self, directory: str) -> None:
        super().__init__(f"agent directory does not exist: {directory}")
        self.directory = directory


class ClaudeNotFound(StartFailed):
    """No runnable claude executable; says which setting pointed where."""

    def __init__(self, env_value: str | None, claude_path: str | None) -> None:
        super().__init__("claude executable not found")
        self.env_value = env_value  # AGENT_DISPATCH_CLAUDE, when set
        self.claude_path = claude_path  # settings.claude_path, when set


class CommandTooLong(StartFailed):
    """The OS refused the command line (E2BIG)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__("the command line is too long for the OS")
        self.argv = argv


class CouldNotStart(StartFailed):
    """Starting the child failed for another reason (permission, a vanished directory)."""


class Runner(Protocol):
    """Runs one invocation to its end.

    `run` calls `task_status.started(pgid)` once the run exists: the local
    process group id of the child (async jobs record it so a later server can
    stop what a dead one left), or None when nothing local runs. Decoded
    stream events (for `spec.invocation.stream` runs) go to `on_event`, which
    must not block.

    Raises:
      StartFailed: nothing ran (no executable, no directory, the OS refused).
      trio.Cancelled: the caller's scope was cancelled; the run was stopped first.
    """

    async def run(
        self,
        spec: RunSpec,
        *,
        on_event: EventCallback | None = None,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> RunOutcome: ...
