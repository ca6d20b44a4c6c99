"""The failed results of a run that never started (sans-IO): no directory, no claude
executable, a command line the OS refused. The runtime says which (`StartFailed`);
these say it to the caller, with the fix."""

from __future__ import annotations

from agent_dispatch.models import DispatchResult
from agent_dispatch.remedies import Advice, UpdateAgent, advice


def not_found_result(agent: str, message: str, fix: Advice) -> DispatchResult:
    """A `not_found` failure (missing agent directory or claude executable)."""
    return DispatchResult(
        agent=agent, success=False, error=message, error_type="not_found", advice=fix
    )


def command_too_long(agent: str, argv: list[str]) -> DispatchResult:
    """The OS refused the command line (E2BIG): say which part is too long."""
    longest = max(argv, key=len)
    return DispatchResult(
        agent=agent,
        success=False,
        error=(
            f"the command line is too long for the OS: one argument is {len(longest.encode())}"
            f" bytes ({longest[:40]!r}...); Linux allows 131072"
        ),
        error_type="cli_error",
        advice=advice(
            "Shorten the agent's instructions (",
            UpdateAgent(agent=agent, field="instructions"),
            ") or its other settings; a long task or context is passed on stdin and is fine.",
        ),
    )


def claude_missing(agent: str, env_value: str | None, claude_path: str | None) -> DispatchResult:
    """No runnable claude: name the setting that pointed at it, so the fix is the right one."""
    if env_value:
        where = f"AGENT_DISPATCH_CLAUDE={env_value!r}"
        fix = "Point AGENT_DISPATCH_CLAUDE at the claude executable, or unset it."
    elif claude_path:
        where = f"settings.claude_path {claude_path!r}"
        fix = "Fix settings.claude_path in agents.yaml, or remove it to use claude on PATH."
    else:
        where = "claude on PATH"
        fix = (
            "Install Claude Code (npm install -g @anthropic-ai/claude-code), or set "
            "settings.claude_path in agents.yaml or AGENT_DISPATCH_CLAUDE."
        )
    return not_found_result(agent, f"claude executable not found ({where})", advice(fix))
