"""Agent commands: `add`, `update`, `remove`, `list`, `describe` (over registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from agent_dispatch.cli.common import (
    JsonFlag,
    command,
    config_store,
    cut,
    emit,
    emit_json,
    fix_line,
    money,
    plural,
    table,
    tool_list,
)
from agent_dispatch.cli.setup import group_repair_command
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import AgentPatch, Config
from agent_dispatch.service import registry
from agent_dispatch.service.agent_args import patch_from_args
from agent_dispatch.service.usage import UsageBook
from agent_dispatch.storage.usage import journal_path

# -- agents ------------------------------------------------------------------------


def add(
    name: str,
    directory: str,
    /,
    *,
    description: str = "",
    timeout: float | None = None,
    max_budget_usd: float | None = None,
    model: str | None = None,
    permission_mode: str | None = None,
    allowed_tools: str | None = None,
    disallowed_tools: str | None = None,
    capabilities: str = "",
    risky_capabilities: str = "",
    instructions: str = "",
) -> int:
    """Register a project directory as an agent.

    Parameters
    ----------
    name
        The agent's name (letters, digits, '_' and '-').
    directory
        The project directory (must exist); `claude -p` runs there.
    description
        What the agent is good for; generated from CLAUDE.md / README.md when omitted.
    timeout
        Seconds a dispatch may run (default 300).
    max_budget_usd
        Cost cap per dispatch in USD (0 = none).
    model
        Model passed as --model (e.g. sonnet).
    permission_mode
        acceptEdits, auto, bypassPermissions, default, dontAsk, manual or plan.
    allowed_tools
        Comma list of tools allowed without asking; "[]" = none; omitted = inherit the defaults.
    disallowed_tools
        Comma list of tools removed; "[]" = none; omitted = inherit the defaults.
    capabilities
        Comma list of descriptive labels.
    risky_capabilities
        Comma list of labels for what the agent can break.
    instructions
        Text appended to the agent's system prompt.
    """
    args = {k: v for k, v in locals().items() if k in AgentPatch.__struct_fields__}
    patch = patch_from_args(args, zero="default", hint=_flag_hint("add"))
    out = registry.add_agent(config_store(), name, patch)
    agent = msgspec.to_builtins(out.agent)
    emit(f"added agent {name}: {agent['directory']}")
    auto = "" if description.strip() else " (generated; change it with --description)"
    emit(f"  description: {agent.get('description', '')}{auto}")
    emit(f"  try it: {command('agent-dispatch', 'test', name)}")
    return 0


def _flag_hint(verb: str) -> Callable[[str], str]:
    def hint(field: str) -> str:
        flag = "--" + field.replace("_", "-")
        example = {"timeout": "600", "max_budget_usd": "0.5"}.get(field)
        if example:
            return f"For example {flag} {example}; none (or 0) restores the default."
        return f"See `agent-dispatch {verb} --help` for {flag}."

    return hint


def update(
    name: str,
    /,
    *,
    directory: str | None = None,
    description: str | None = None,
    timeout: str | None = None,
    max_budget_usd: str | None = None,
    model: str | None = None,
    permission_mode: str | None = None,
    allowed_tools: str | None = None,
    disallowed_tools: str | None = None,
    capabilities: str | None = None,
    risky_capabilities: str | None = None,
    instructions: str | None = None,
) -> int:
    """Change an agent's settings. A value of `none` clears a field (back to its default).

    Parameters
    ----------
    name
        The agent to change.
    directory
        A new project directory (must exist).
    description
        A new description.
    timeout
        Seconds a dispatch may run; none = 300.
    max_budget_usd
        Cost cap per dispatch in USD; none = no cap.
    model
        Model passed as --model; none = the CLI's default.
    permission_mode
        acceptEdits, auto, bypassPermissions, default, dontAsk, manual or plan; none = default.
    allowed_tools
        Comma list (replaces the current list); "[]" = none; none = inherit the defaults.
    disallowed_tools
        Comma list (replaces the current list); "[]" = none; none = inherit the defaults.
    capabilities
        Comma list of descriptive labels; none = empty.
    risky_capabilities
        Comma list; none = empty.
    instructions
        Text appended to the system prompt; none = empty.
    """
    args = {k: v for k, v in locals().items() if k in AgentPatch.__struct_fields__}
    patch = patch_from_args(args, zero="default", hint=_flag_hint("update"))
    if not patch.given():
        raise InvalidArgument(
            "update: nothing to change",
            f"Pass an option, e.g. `agent-dispatch update {name} --timeout 600`; "
            "see `agent-dispatch update --help`.",
        )
    out = registry.update_agent(config_store(), name, patch)
    changed = ", ".join(out.fields) or "nothing"
    emit(f"updated agent {name}: {changed}")
    return 0


def remove(name: str, /) -> int:
    """Remove an agent from the config (its directory is not touched).

    Parameters
    ----------
    name
        The agent to remove.
    """
    store = config_store()
    registry.remove_agent(store, name)
    emit(f"removed agent {name}")
    cfg = store.load()
    for group, spec in sorted(cfg.groups.items()):
        if any(m.agent == name for m in spec.members):
            emit(f"  group {group} still lists {name} as a member")
            emit(fix_line(group_repair_command(cfg, group), "    "))
    return 0


def _health(value: object) -> str:
    if value is True:
        return "ok"
    if value is False:
        return "MISSING"
    return str(value)


def _permissions(brief: dict[str, Any]) -> str:
    parts = []
    if "permission_mode" in brief:
        parts.append(str(brief["permission_mode"]))
    if "max_budget_usd" in brief:
        parts.append(f"max {money(brief['max_budget_usd'])}")
    return ", ".join(parts) or "-"


def list_(*, json: JsonFlag = False) -> int:
    """List the agents with health, permissions and tool lists.

    Tool lists are `inherit` (the settings defaults), `none` ([] in the config) or the names.
    """
    store = config_store()
    cfg = store.load()
    briefs = msgspec.to_builtins(registry.list_agents(cfg, _usage_of(store.path)))
    if json:
        emit_json({"agents": briefs})
        return 0
    if not briefs:
        emit(f"no agents in {store.path}")
        emit(f"  add one: {command('agent-dispatch', 'add', 'NAME', 'DIR')}")
        return 0
    s = cfg.settings
    rows = []
    for brief in briefs:
        agent = cfg.agents[brief["name"]]
        rows.append(
            [
                brief["name"],
                _health(brief["healthy"]),
                _permissions(brief),
                tool_list(agent.allowed_tools, s.default_allowed_tools),
                tool_list(agent.disallowed_tools, s.default_disallowed_tools),
                cut(brief["description"], 60),
            ]
        )
    headers = ["NAME", "HEALTH", "PERMISSIONS", "ALLOWED", "DISALLOWED", "DESCRIPTION"]
    for line in table(headers, rows):
        emit(line)
    for brief in briefs:
        if "problem" in brief:
            emit(f"{brief['name']}: {brief['problem']}")
    return 0


def describe(name: str, /, *, json: JsonFlag = False, preview_lines: int = 20) -> int:
    """Show one agent: config, detected facts and the start of its CLAUDE.md / README.md.

    Parameters
    ----------
    name
        The agent to describe.
    preview_lines
        Lines of CLAUDE.md and README.md to show (0..200).
    """
    store = config_store()
    cfg = store.load()
    info = msgspec.to_builtins(
        registry.inspect_agent(cfg, name, preview_lines, _usage_of(store.path))
    )
    if json:
        emit_json(info)
        return 0
    _print_agent(cfg, name, info)
    return 0


def _usage_of(config: Path) -> registry.UsageOf:
    """Each agent's recent figures, from the usage journal beside the config."""
    book = UsageBook(journal_path(config))
    book.refresh()
    return book.usage


def _usage_line(u: dict[str, Any]) -> str:
    seconds = "/".join(
        "-" if u.get(k) is None else f"{u[k]:.1f}s" for k in ("p50_duration_s", "p90_duration_s")
    )
    costs = "/".join(money(u.get(k)) for k in ("p50_cost_usd", "p90_cost_usd"))
    return (
        f"{plural(u['runs'], 'recent run')}, {u['success_rate']:.0%} succeeded, p50/p90 {seconds}, "
        f"cost p50/p90 {costs}, last {u.get('last_used') or '-'}"
    )


def _print_agent(cfg: Config, name: str, info: dict[str, Any]) -> None:
    agent = cfg.agents[name]
    s = cfg.settings
    rows = [
        ("directory", f"{info['directory']} ({_health(info['healthy'])})"),
        ("description", info["description"]),
        ("timeout", f"{agent.timeout}s"),
        ("model", agent.model or "default"),
        ("permission_mode", agent.permission_mode or s.default_permission_mode or "default"),
        ("max_budget_usd", money(agent.max_budget_usd)),
        ("allowed_tools", tool_list(agent.allowed_tools, s.default_allowed_tools)),
        ("disallowed_tools", tool_list(agent.disallowed_tools, s.default_disallowed_tools)),
        ("capabilities", ", ".join(agent.capabilities) or "-"),
        ("risky", ", ".join(agent.risky_capabilities) or "-"),
        ("groups", ", ".join(info["groups"]) or "-"),
        ("CLAUDE.md", "yes" if info["has_claude_md"] else "no"),
        ("MCP servers", ", ".join(info["mcp_servers"]) or "-"),
        ("stacks", ", ".join(info["stacks"]) or "-"),
        ("databases", ", ".join(info["dbs"]) or "-"),
    ]
    if "problem" in info:
        rows.insert(1, ("problem", info["problem"]))
    if "usage" in info:
        rows.append(("usage", _usage_line(info["usage"])))
    emit(name)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        emit(f"  {key.ljust(width)}  {value}")
    if agent.instructions:
        emit("  instructions:")
        for line in agent.instructions.splitlines():
            emit(f"    {line}")
    for title, key in (("CLAUDE.md", "claude_md_preview"), ("README.md", "readme_preview")):
        text = info.get(key)
        if text:
            emit(f"--- {title} ---")
            for line in text.splitlines():
                emit(line)
