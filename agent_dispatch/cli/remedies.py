"""Advice in the CLI's words: shell commands (`agent-dispatch update web --timeout 600`)."""

from __future__ import annotations

from agent_dispatch.cli.common import command as command_line
from agent_dispatch.models import DispatchResult
from agent_dispatch.remedies import Advice, CallTimeout, Remedy, ResumeSession
from agent_dispatch.service.remedies import presented, presented_job, render, shell_argv
from agent_dispatch.storage.jobs import Job


def command(remedy: Remedy, *, task: str = "") -> str:
    """`remedy` as one command line that is safe to paste. `task`: what a re-run with
    `agent-dispatch test` asks (a one-line task; otherwise the default task)."""
    words = shell_argv(remedy)
    if isinstance(remedy, CallTimeout) and task and "\n" not in task:
        words.insert(3, task)
    return command_line(*words)


def _inline(remedy: Remedy) -> str:
    text = f"`{command(remedy)}`"
    if isinstance(remedy, ResumeSession):
        text += " in the agent's directory"
    return text


def hint(advice: Advice) -> str:
    """The hint a CLI user reads."""
    return render(advice, _inline)


def present(result: DispatchResult) -> DispatchResult:
    """`result` as the CLI shows it: the hint as commands, no `advice` field."""
    return presented(result, hint)


def present_job(job: Job) -> Job:
    """`job` with its result as the CLI shows it."""
    return presented_job(job, hint)
