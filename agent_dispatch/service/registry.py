"""Agent and group management over the config file: what list/add/update/remove do.

Shared by the MCP tools and the CLI, so both validate and store exactly alike.
Every mutation is one `ConfigStore.update` (a locked read-modify-write).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from agent_dispatch.claude.invocation import CONTROL_RE
from agent_dispatch.errors import InvalidArgument, UnknownAgent, UnknownGroup
from agent_dispatch.models import (
    MAX_AGENT_TIMEOUT,
    PERMISSION_MODES,
    AgentConfig,
    Config,
    Group,
    GroupMember,
    check_name,
    clamped,
)
from agent_dispatch.storage import describe
from agent_dispatch.storage.config import ConfigStore, agent_directory

EditGuard = Callable[[Config, str, AgentConfig | None, AgentConfig | None], None]
"""Called inside the config lock with (config, name, agent before, agent after); raises
to refuse the change. The MCP tools pass `mcp_policy.check_edit`; the CLI passes none."""

CLEAR = "none"  # update: this value clears a field
EMPTY_LIST = "[]"  # a tool list that allows/denies nothing (vs. inheriting defaults)
MAX_PREVIEW_LINES = 200


def split_list(text: str) -> tuple[str, ...]:
    """Split a comma list, keeping commas inside parentheses (`Bash(git log:*, ...)`)."""
    items: list[str] = []
    depth, current = 0, list[str]()
    for ch in text:
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        depth += (ch == "(") - (ch == ")")
        current.append(ch)
    items.append("".join(current))
    return tuple(item.strip() for item in items if item.strip())


def parse_tool_list(text: str | None, field: str) -> tuple[str, ...] | None:
    """`""`/None: inherit (null); `"[]"`: none; else the comma list. Names are checked."""
    if text is None or not text.strip() or text.strip().lower() == CLEAR:
        return None
    if text.strip() == EMPTY_LIST:
        return ()
    tools = split_list(text)
    if not tools:  # ",,," is a typo, not a wish to allow nothing
        raise InvalidArgument(
            f"{field}: no tool names in {text!r}",
            f'Use "{EMPTY_LIST}" for no tools, or leave it out to inherit the defaults.',
        )
    for tool in tools:
        if tool.startswith("-"):
            raise InvalidArgument(f"{field}: tool name {tool!r} must not start with '-'")
    return tools


def _check_budget(value: float | None, field: str) -> float | None:
    """0/None: no cap. Negative or non-finite: rejected."""
    if value is None:
        return None
    if isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise InvalidArgument(
            f"{field}: expected a finite number >= 0, got {value!r}", "Use 0 for no budget cap."
        )
    return float(value) or None


def _check_timeout(value: float | None, field: str = "timeout") -> int | None:
    """0/None: the default. Negative, fractional, non-finite or over a week: rejected."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
        or value > MAX_AGENT_TIMEOUT
    ):
        raise InvalidArgument(
            f"{field}: expected a whole number of seconds, 0..{MAX_AGENT_TIMEOUT}, got {value!r}",
            "Use 0 for the default timeout (300 s).",
        )
    return int(value) or None


def _check_model(value: str) -> str | None:
    """A model name as `--model` takes it: one token, no leading '-', no control characters."""
    model = value.strip()
    if model.startswith("-") or CONTROL_RE.search(model):
        raise InvalidArgument(
            f"model: {value!r} is not a model name (no leading '-', no control characters)",
            "Pass a name such as sonnet or opus, or 'none' to use the CLI's default.",
        )
    return model or None


def _check_mode(value: str | None) -> str | None:
    if value is None or not value.strip() or value.strip().lower() == CLEAR:
        return None
    if value not in PERMISSION_MODES:
        raise InvalidArgument(
            f"permission_mode: {value!r} is not one of {', '.join(PERMISSION_MODES)}",
            "Leave it empty (or 'none') for the claude CLI's default mode.",
        )
    return value


def _check_directory(directory: str) -> str:
    if not directory or not directory.strip():
        raise InvalidArgument("directory: must not be empty")
    try:
        path = Path(directory).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, ~nosuchuser, a loop
        raise InvalidArgument(f"directory: {directory!r} is not usable: {exc}") from None
    if not path.is_dir():
        raise InvalidArgument(
            f"directory: {path} does not exist or is not a directory",
            "Create it first, or pass the project's existing directory.",
        )
    return str(path)


# -- agents ---------------------------------------------------------------------


def agent_brief(name: str, agent: AgentConfig) -> dict[str, Any]:
    facts = describe.detect(agent_directory(agent))
    brief: dict[str, Any] = {
        "name": name,
        "directory": str(agent_directory(agent)),
        "description": agent.description,
        "healthy": facts.healthy,
        "has_claude_md": facts.has_claude_md,
        "has_mcp_config": facts.has_mcp_config,
        "mcp_servers": facts.mcp_servers,
        "stacks": facts.stacks,
        "dbs": facts.dbs,
        "capabilities": list(agent.capabilities),
    }
    if facts.error:
        brief["problem"] = facts.error
    for field in ("permission_mode", "allowed_tools", "disallowed_tools", "max_budget_usd"):
        value = getattr(agent, field)
        if value is not None:
            brief[field] = list(value) if isinstance(value, tuple) else value
    if agent.risky_capabilities:
        brief["risky_capabilities"] = list(agent.risky_capabilities)
    return brief


def list_agents(cfg: Config) -> list[dict[str, Any]]:
    return [agent_brief(name, cfg.agents[name]) for name in sorted(cfg.agents)]


def get_agent(cfg: Config, name: str) -> AgentConfig:
    check_name(name)
    if name not in cfg.agents:
        raise UnknownAgent(f"unknown agent {name!r}")
    return cfg.agents[name]


def inspect_agent(cfg: Config, name: str, preview_lines: int = 40) -> dict[str, Any]:
    agent = get_agent(cfg, name)
    lines = int(clamped(preview_lines, "preview_lines", 0, MAX_PREVIEW_LINES))
    directory = agent_directory(agent)
    info = agent_brief(name, agent)
    info["config"] = msgspec.to_builtins(agent)
    info["groups"] = sorted(
        g for g, grp in cfg.groups.items() if any(m.agent == name for m in grp.members)
    )
    if lines:
        info["claude_md_preview"] = describe.preview(directory, "CLAUDE.md", lines)
        info["readme_preview"] = describe.preview(directory, "README.md", lines)
    return info


def add_agent(
    store: ConfigStore,
    name: str,
    directory: str,
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
    guard: EditGuard | None = None,
) -> dict[str, Any]:
    check_name(name)
    path = _check_directory(directory)
    agent = AgentConfig(
        directory=path,
        description=description.strip() or describe.auto_description(Path(path)),
        timeout=_check_timeout(timeout) or 300,
        model=_check_model(model or ""),
        max_budget_usd=_check_budget(max_budget_usd, "max_budget_usd"),
        permission_mode=_check_mode(permission_mode),  # type: ignore[arg-type]
        allowed_tools=parse_tool_list(allowed_tools, "allowed_tools"),
        disallowed_tools=parse_tool_list(disallowed_tools, "disallowed_tools"),
        capabilities=split_list(capabilities),
        risky_capabilities=split_list(risky_capabilities),
        instructions=instructions,
    )

    def change(cfg: Config) -> Config:
        if name in cfg.agents:
            raise InvalidArgument(
                f"agent {name!r} already exists",
                f"Use update_agent(name={name!r}, ...) or `agent-dispatch update {name}`.",
            )
        if guard is not None:
            guard(cfg, name, None, agent)
        return msgspec.structs.replace(cfg, agents={**cfg.agents, name: agent})

    store.update(change)
    return {"added": name, "agent": msgspec.to_builtins(agent)}


_TEXT_FIELDS = ("description", "instructions")


def update_agent(
    store: ConfigStore, name: str, *, guard: EditGuard | None = None, **fields: Any
) -> dict[str, Any]:
    """Apply the given fields; `None`/"" leave a field unchanged, "none" clears it."""
    check_name(name)
    changes: dict[str, Any] = {}
    for field, raw in fields.items():
        if raw is None or (isinstance(raw, str) and raw == ""):
            continue
        clear = isinstance(raw, str) and raw.strip().lower() == CLEAR
        if field in _TEXT_FIELDS:
            changes[field] = "" if clear else raw
        elif field == "directory":
            changes[field] = _check_directory(raw)
        elif field == "model":
            changes[field] = None if clear else _check_model(raw)
        elif field == "permission_mode":
            changes[field] = _check_mode(raw)
        elif field in ("allowed_tools", "disallowed_tools"):
            changes[field] = parse_tool_list(raw, field)
        elif field in ("capabilities", "risky_capabilities"):
            changes[field] = () if clear else split_list(raw)
        elif field == "timeout":
            if raw == 0:
                continue
            changes[field] = 300 if clear else _check_timeout(raw)
        elif field == "max_budget_usd":
            if raw == 0:
                continue
            changes[field] = None if clear else _check_budget(raw, field)
        else:
            raise InvalidArgument(f"unknown field {field!r}")

    def change(cfg: Config) -> Config:
        if name not in cfg.agents:
            raise UnknownAgent(f"unknown agent {name!r}")
        agent = msgspec.structs.replace(cfg.agents[name], **changes)
        if guard is not None:
            guard(cfg, name, cfg.agents[name], agent)
        return msgspec.structs.replace(cfg, agents={**cfg.agents, name: agent})

    store.update(change)
    return {"updated": name, "fields": sorted(changes)}


def remove_agent(store: ConfigStore, name: str, guard: EditGuard | None = None) -> dict[str, Any]:
    check_name(name)

    def change(cfg: Config) -> Config:
        if name not in cfg.agents:
            raise UnknownAgent(f"unknown agent {name!r}")
        if guard is not None:
            guard(cfg, name, cfg.agents[name], None)
        agents = {k: v for k, v in cfg.agents.items() if k != name}
        return msgspec.structs.replace(cfg, agents=agents)

    store.update(change)
    return {"removed": name}


# -- groups ---------------------------------------------------------------------


def _members_view(cfg: Config, group: Group) -> list[dict[str, Any]]:
    out = []
    for m in group.members:
        item: dict[str, Any] = {"agent": m.agent, "use_for": m.use_for}
        if m.agent not in cfg.agents:
            item["unknown"] = True
        out.append(item)
    return out


def list_groups(cfg: Config) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": group.description,
            "members": _members_view(cfg, group),
        }
        for name, group in sorted(cfg.groups.items())
    ]


def get_group(cfg: Config, name: str) -> Group:
    check_name(name)
    if name not in cfg.groups:
        raise UnknownGroup(f"unknown group {name!r}")
    return cfg.groups[name]


def inspect_group(cfg: Config, name: str) -> dict[str, Any]:
    group = get_group(cfg, name)
    return {
        "name": name,
        "description": group.description,
        "shared_context": group.shared_context,
        "members": _members_view(cfg, group),
    }


def parse_members(text: str) -> tuple[GroupMember, ...]:
    """`agent` or `agent:use for text`, comma separated."""
    members: list[GroupMember] = []
    for item in split_list(text):
        agent, _, use_for = item.partition(":")
        name = check_name(agent.strip(), "members")
        if any(m.agent == name for m in members):
            raise InvalidArgument(
                f"members: {name!r} is listed twice",
                "Name each agent once; `agent:what it is for` says what to use it for.",
            )
        members.append(GroupMember(agent=name, use_for=use_for.strip()))
    return tuple(members)


def save_group(
    store: ConfigStore,
    name: str,
    *,
    create: bool,
    description: str | None = None,
    shared_context: str | None = None,
    members: str | None = None,
) -> dict[str, Any]:
    check_name(name)
    parsed = parse_members(members) if members else None

    def change(cfg: Config) -> Config:
        if create and name in cfg.groups:
            raise InvalidArgument(
                f"group {name!r} already exists",
                f"Change it with `agent-dispatch group update {name}` (or update it over MCP).",
            )
        if not create and name not in cfg.groups:
            raise UnknownGroup(f"unknown group {name!r}")
        if parsed is not None:
            unknown = [m.agent for m in parsed if m.agent not in cfg.agents]
            if unknown:
                raise UnknownAgent(f"members: unknown agent(s) {', '.join(unknown)}")
        group = cfg.groups.get(name, Group())
        updates: dict[str, Any] = {}
        if description is not None:
            updates["description"] = "" if description.lower() == CLEAR else description
        if shared_context is not None:
            updates["shared_context"] = "" if shared_context.lower() == CLEAR else shared_context
        if parsed is not None:
            updates["members"] = parsed
        group = msgspec.structs.replace(group, **updates)
        return msgspec.structs.replace(cfg, groups={**cfg.groups, name: group})

    cfg = store.update(change)
    return inspect_group(cfg, name)


def remove_group(store: ConfigStore, name: str) -> dict[str, Any]:
    check_name(name)

    def change(cfg: Config) -> Config:
        if name not in cfg.groups:
            raise UnknownGroup(f"unknown group {name!r}")
        return msgspec.structs.replace(
            cfg, groups={k: v for k, v in cfg.groups.items() if k != name}
        )

    store.update(change)
    return {"removed": name}
