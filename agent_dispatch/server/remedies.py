"""Advice in the MCP face's words: tool calls (`update_agent(name="web", timeout=600)`).

An agent edit offered as an alternative also names the shell command, as the
hints always have: whoever reads the answer may be at a terminal.
"""

from __future__ import annotations

import msgspec

from agent_dispatch.claude.output import clean_text
from agent_dispatch.models import DispatchResult
from agent_dispatch.remedies import (
    Advice,
    CallTimeout,
    CheckInstall,
    NewSession,
    Remedy,
    RemoveAgent,
    ResumeSession,
    UpdateAgent,
)
from agent_dispatch.service.remedies import (
    presented,
    presented_job,
    render,
    shell_command,
    value_text,
)
from agent_dispatch.storage.jobs import Job


def _q(value: str) -> str:
    """A string argument as JSON spells it (the arguments of a tool call are JSON)."""
    return msgspec.json.encode(clean_text(value)).decode()


def tool_call(remedy: Remedy) -> str:
    """`remedy` as the tool call (or the words of one) that applies it."""
    match remedy:
        case UpdateAgent(agent=agent, field=field, value=value):
            shown = (
                "..."
                if value is None
                else _q(value)
                if isinstance(value, str)
                else value_text(value)
            )
            return f"update_agent(name={_q(agent)}, {field}={shown})"
        case RemoveAgent(agent=agent):
            return f"remove_agent(name={_q(agent)})"
        case ResumeSession(agent=agent, session_id=session_id):
            return (
                f'dispatch_session(agent={_q(agent)}, session_id={_q(session_id)}, task="continue")'
            )
        case NewSession(agent=agent):
            return f"dispatch_session(agent={_q(agent)}, task=...) without session_id"
        case CallTimeout(seconds=seconds):
            return f"timeout_seconds={seconds}"
        case CheckInstall():
            return f"`{shell_command(remedy)}`"


def _options(remedy: Remedy) -> list[str]:
    if isinstance(remedy, UpdateAgent | RemoveAgent):
        return [tool_call(remedy), f"`{shell_command(remedy)}`"]
    if isinstance(remedy, CallTimeout):
        return [f"{tool_call(remedy)} on the dispatch"]
    return [tool_call(remedy)]


def hint(advice: Advice) -> str:
    """The hint an MCP client reads."""
    return render(advice, tool_call, _options)


def present(result: DispatchResult) -> DispatchResult:
    """`result` as a tool answers with it: the MCP hint, no `advice` field."""
    return presented(result, hint)


def present_job(job: Job) -> Job:
    """`job` with its result as a tool answers with it."""
    return presented_job(job, hint)
