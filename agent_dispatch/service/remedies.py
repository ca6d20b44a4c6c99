"""Rendering advice (agent_dispatch/remedies.py): the library's words, and what every face shares.

The library face is the service itself (`agent_dispatch.Dispatcher`): results it
returns carry `hint` rendered as Python (`python`, `library_hint`) and keep
`advice` for embedders that want the data. The faces render the same advice in
their own words: server/remedies.py as MCP tool calls, cli/remedies.py as shell
commands. `shell_argv` lives here, not in the CLI, because the MCP face names the
command too (a person reading a hint may be at a terminal), and faces do not
import each other.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import msgspec

from agent_dispatch.models import DispatchResult
from agent_dispatch.remedies import (
    Advice,
    CallTimeout,
    CheckInstall,
    Choice,
    NewSession,
    Remedy,
    RemoveAgent,
    ResumeSession,
    UpdateAgent,
)
from agent_dispatch.storage.jobs import Job

PROGRAM = "agent-dispatch"
# What a placeholder value reads as on a command line.
_METAVARS = {
    "timeout": "SECONDS",
    "max_budget_usd": "USD",
    "allowed_tools": "TOOLS",
    "directory": "DIR",
    "instructions": "TEXT",
    "permission_mode": "MODE",
}


def value_text(value: str | int | float) -> str:
    """A field value as a face shows it: 600, 0.5 (not 0.5000), Bash,Write."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def shell_argv(remedy: Remedy) -> list[str]:
    """The agent-dispatch (or claude) command line that applies `remedy`, as words."""
    match remedy:
        case UpdateAgent(agent=agent, field=field, value=value):
            shown = _METAVARS[field] if value is None else value_text(value)
            return [PROGRAM, "update", agent, "--" + field.replace("_", "-"), shown]
        case RemoveAgent(agent=agent):
            return [PROGRAM, "remove", agent]
        case ResumeSession(session_id=session_id):
            return ["claude", "--resume", session_id]
        case NewSession(agent=agent):
            return [PROGRAM, "test", agent]
        case CallTimeout(agent=agent, seconds=seconds):
            return [PROGRAM, "test", agent, *(["--timeout", str(seconds)] if seconds else [])]
        case CheckInstall():
            return [PROGRAM, "doctor"]


def shell_command(remedy: Remedy) -> str:
    """`shell_argv` as one line that is safe to paste (each word quoted as needed)."""
    return " ".join(shlex.quote(word) for word in shell_argv(remedy))


def python(remedy: Remedy) -> str:
    """`remedy` as the Python an embedder writes (`store`, `dispatcher` are theirs)."""
    match remedy:
        case UpdateAgent(agent=agent, field=field, value=value):
            shown = "..." if value is None else _py(value)
            return f"update_agent(store, {agent!r}, {field}={shown})"
        case RemoveAgent(agent=agent):
            return f"remove_agent(store, {agent!r})"
        case ResumeSession(agent=agent, session_id=session_id):
            return (
                f"await dispatcher.dispatch_session(DispatchRequest(agent={agent!r}, "
                f"task='continue', session_id={session_id!r}))"
            )
        case NewSession(agent=agent):
            return f"await dispatcher.dispatch_session(DispatchRequest(agent={agent!r}, task=...))"
        case CallTimeout(agent=agent, seconds=seconds):
            return f"DispatchRequest(agent={agent!r}, task=..., timeout_seconds={seconds or None})"
        case CheckInstall():
            return f"`{PROGRAM} doctor`"


def _py(value: str | int | float) -> str:
    return repr(value) if isinstance(value, str) else value_text(value)


def either(options: list[str]) -> str:
    """ "a", "a or b", "a, b or c"."""
    if len(options) < 2:
        return "".join(options)
    return f"{', '.join(options[:-1])} or {options[-1]}"


def render(
    advice: Advice,
    one: Callable[[Remedy], str],
    options: Callable[[Remedy], list[str]] | None = None,
) -> str:
    """`advice` as text: prose as is, each remedy by `one`, a Choice as its options
    (`options` may offer one remedy in several forms; default: `one`)."""
    out: list[str] = []
    for part in advice.parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Choice):
            forms = options or (lambda r: [one(r)])
            out.append(either([form for r in part.options for form in forms(r)]))
        else:
            out.append(one(part))
    return "".join(out)


def python_hint(advice: Advice) -> str:
    """The hint a library caller reads."""
    return render(advice, python)


def with_hint(result: DispatchResult, hint: Callable[[Advice], str]) -> DispatchResult:
    """`result` with its advice rendered into `hint` (advice kept)."""
    if result.advice is None:
        return result
    return msgspec.structs.replace(result, hint=hint(result.advice))


def library_hint(result: DispatchResult) -> DispatchResult:
    """`result` as the library returns it: hint in Python, advice kept for embedders."""
    return with_hint(result, python_hint)


def presented(result: DispatchResult, hint: Callable[[Advice], str]) -> DispatchResult:
    """`result` as a face answers with it: hint in the face's words, no `advice` (a face's
    output keeps the fields it always had)."""
    if result.advice is None:
        return result
    return msgspec.structs.replace(result, hint=hint(result.advice), advice=None)


def presented_job(job: Job, hint: Callable[[Advice], str]) -> Job:
    """`job` with its result as a face answers with it (see `presented`)."""
    if job.result is None or job.result.advice is None:
        return job
    return msgspec.structs.replace(job, result=presented(job.result, hint))
