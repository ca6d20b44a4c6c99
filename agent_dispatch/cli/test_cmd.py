"""`test NAME [TASK]`: one real dispatch, with a diagnosis whose fixes are runnable commands."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import trio
from cyclopts import Parameter

from agent_dispatch.claude.invocation import DEPTH_VAR
from agent_dispatch.cli import remedies as cli_remedies
from agent_dispatch.cli.common import (
    INSTALL_CLAUDE,
    command,
    config_store,
    emit,
    fix_line,
    money,
    plural,
)
from agent_dispatch.models import (
    AgentConfig,
    DispatchResult,
    ProgressEvent,
    Settings,
    dispatch_request,
)
from agent_dispatch.remedies import CallTimeout, Remedy, RemoveAgent, ResumeSession, UpdateAgent
from agent_dispatch.service import registry
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.policy import TOOLS
from agent_dispatch.service.resolve import resolve_timeout

DEFAULT_TASK = "In one or two sentences: what is this project, and what could you help with?"
_EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
_MARKS = {"text": "|", "tool_use": "*", "retry": "!"}


async def test(
    name: str,
    task: str = DEFAULT_TASK,
    /,
    *,
    stream: Annotated[bool, Parameter(negative="")] = False,
    timeout_seconds: Annotated[float | None, Parameter(name="--timeout")] = None,
) -> int:
    """Run one real dispatch to an agent and explain what went wrong, if anything.

    Parameters
    ----------
    name
        The agent to test.
    task
        What to ask (default: a one-line self-description).
    stream
        Show the agent's text and tool calls live.
    timeout_seconds
        Seconds to allow (10..7200; default: the agent's timeout).
    """
    store = config_store()
    cfg = store.load()
    agent = registry.get_agent(cfg, name)
    seconds = resolve_timeout(timeout_seconds, float(agent.timeout))
    req = dispatch_request({"agent": name, "task": task, "timeout_seconds": timeout_seconds})
    async with Dispatcher.open(store, policy=TOOLS) as dispatcher:
        dispatcher.validate(req)
        emit(f"testing {name} in {agent.directory} (timeout {seconds:g}s)...")
        if stream:
            result = await dispatcher.dispatch_stream(req, _print_event)
        else:
            async with _ticker(name):
                result = await dispatcher.dispatch_session(req)
        executable = dispatcher.claude_executable() or "claude"
    return _report(name, task, agent, cfg.settings, result, seconds, executable)


async def _print_event(event: ProgressEvent) -> None:
    mark = _MARKS.get(event.kind, "-")
    for line in event.message.splitlines() or [""]:
        emit(f"  {mark} {line}")


@asynccontextmanager
async def _ticker(name: str) -> AsyncIterator[None]:
    """Elapsed seconds on stderr while waiting, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return

    async def tick() -> None:
        elapsed = 0
        while True:
            sys.stderr.write(f"\r  waiting for {name}... {elapsed}s ")
            sys.stderr.flush()
            await trio.sleep(1)
            elapsed += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _report(
    name: str,
    task: str,
    agent: AgentConfig,
    settings: Settings,
    result: DispatchResult,
    seconds: float,
    executable: str = "claude",
) -> int:
    facts = []
    if result.duration_ms is not None:
        facts.append(f"{result.duration_ms / 1000:.1f}s")
    if result.cost_usd is not None:
        facts.append(f"cost {money(result.cost_usd)}")
    if result.num_turns is not None:
        facts.append(plural(result.num_turns, "turn"))
    detail = f" ({', '.join(facts)})" if facts else ""
    if result.success:
        emit(f"ok    {name} answered{detail}")
        if result.session_id:
            emit(f"  session: {result.session_id}")
        emit(f"  outcome: {_outcome_text(result)}")
        emit("---")
        emit(result.result.rstrip())
        emit("---")
        if result.outcome in ("partial", "blocked"):
            said = "did not finish" if result.outcome == "partial" else "is blocked"
            emit(f"warn  the agent says it {said}; continue the same conversation:")
            for fix in _continue_fixes(result, agent):
                emit(fix_line(fix))
        if result.denied_tools:
            emit(f"warn  the agent was denied: {', '.join(result.denied_tools)}")
            for fix in _permission_fixes(name, agent, settings, result.denied_tools):
                emit(fix_line(fix))
        if result.budget_exceeded:
            emit(f"warn  it cost more than its cap of {money(_budget_cap(agent, settings))}")
            for fix in _fixes(result, "max_budget_usd"):
                emit(fix_line(fix))
        return 0
    emit(f"FAIL  {name}: {result.error_type or 'error'}: {result.error or 'no answer'}")
    why, fixes = diagnose(name, task, agent, settings, result, seconds, executable=executable)
    emit(f"  {why}")
    for fix in fixes:
        emit(fix_line(fix))
    hint = cli_remedies.present(result).hint
    if hint:
        emit(f"  hint: {hint}")
    if result.session_id and result.error_type in ("timeout", "budget"):
        emit(f"  session {result.session_id} can be resumed with dispatch_session")
    return 1


def _outcome_text(result: DispatchResult) -> str:
    """`done`, `partial (reason)`, ...: what the agent's last STATUS line said."""
    if result.outcome is None or result.outcome == "unknown":
        return "unknown (the agent wrote no STATUS line)"
    reason = result.outcome_reason
    return f"{result.outcome} ({reason})" if reason else result.outcome


def _continue_fixes(result: DispatchResult, agent: AgentConfig) -> list[str]:
    """The commands that resume the session the advice names, in the agent's directory."""
    if result.advice is None:
        return []
    resume = [r for r in result.advice.remedies() if isinstance(r, ResumeSession)]
    return [f"cd {command(agent.directory)} && {cli_remedies.command(r)}" for r in resume]


def diagnose(
    name: str,
    task: str,
    agent: AgentConfig,
    settings: Settings,
    result: DispatchResult,
    seconds: float,
    *,
    executable: str = "claude",
) -> tuple[str, list[str]]:
    """(what happened, commands that fix it) for a failed dispatch. The fixes are the
    remedies the dispatch itself named (`result.advice`), as commands."""
    kind = result.error_type
    if kind == "permission":
        return (
            "The agent needed a permission that `claude -p` does not grant by itself.",
            _permission_fixes(name, agent, settings, result.denied_tools or []),
        )
    if kind == "timeout":
        fixes = _fixes(result, "timeout", task=task)
        why = f"It did not finish within {seconds:g}s."
        if not fixes:
            why += " That is the longest timeout allowed: split the task into smaller ones."
        return why, fixes
    if kind == "budget":
        cap = _budget_cap(agent, settings)
        return (
            f"It reached its cost cap of {money(cap)}." if cap else "It reached a cost cap.",
            _fixes(result, "max_budget_usd"),
        )
    if kind == "not_found":
        fixes = _fixes(result, "directory")
        if fixes:
            return (
                "The agent's directory is gone.",
                [*fixes, cli_remedies.command(RemoveAgent(agent=name))],
            )
        return (
            "The claude CLI could not be started.",
            [INSTALL_CLAUDE, command("agent-dispatch", "doctor")],
        )
    if kind == "recursion":
        return (
            f"This shell is itself inside a dispatch ({DEPTH_VAR} is set), so nothing was run.",
            [f"env -u {DEPTH_VAR} {command('agent-dispatch', 'test', name)}"],
        )
    if kind == "usage_limit":
        return ("The Claude account hit a usage or rate limit; wait until it resets.", [])
    return (
        "claude reported an error; run it by hand in the agent's directory to see it.",
        [
            f"cd {command(agent.directory)} && {command(executable)} -p {command('Say hello')}",
            command("agent-dispatch", "doctor"),
        ],
    )


def _permission_fixes(
    name: str, agent: AgentConfig, settings: Settings, denied: list[str]
) -> list[str]:
    current = agent.allowed_tools
    if current is None:
        current = settings.default_allowed_tools
    fixes: list[Remedy] = []
    if denied:  # the list replaces the agent's, so it keeps what the agent had
        tools = ",".join(dict.fromkeys([*current, *denied]))
        fixes.append(UpdateAgent(agent=name, field="allowed_tools", value=tools))
    if not denied or _EDIT_TOOLS.intersection(denied):
        fixes.append(UpdateAgent(agent=name, field="permission_mode", value="acceptEdits"))
    return [cli_remedies.command(fix) for fix in fixes]


def _fixes(result: DispatchResult, field: str, *, task: str = "") -> list[str]:
    """The commands for the remedies in `result.advice` that change the agent's `field`
    (and, for a timeout, the runs with more time), in the order the advice names them."""
    if result.advice is None:
        return []
    found = [
        r
        for r in result.advice.remedies()
        if (isinstance(r, UpdateAgent) and r.field == field)
        or (field == "timeout" and isinstance(r, CallTimeout) and r.seconds > 0)
    ]
    task = "" if task == DEFAULT_TASK else task
    return [cli_remedies.command(r, task=task) for r in dict.fromkeys(found)]


def _budget_cap(agent: AgentConfig, settings: Settings) -> float | None:
    return (
        agent.max_budget_usd
        if agent.max_budget_usd is not None
        else (settings.default_max_budget_usd)
    )
