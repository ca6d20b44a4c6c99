"""Agent and group management over the config file: what list/add/update/remove do.

Shared by the MCP tools and the CLI, so both validate and store exactly alike.
Every mutation is one `ConfigStore.update` (a locked read-modify-write).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from agent_dispatch.claude.invocation import CONTROL_RE
from agent_dispatch.errors import InvalidArgument, UnknownAgent, UnknownGroup
from agent_dispatch.models import (
    AgentConfig,
    AgentPatch,
    Config,
    Group,
    GroupMember,
    PermissionMode,
    check_name,
    clamped,
    revalidated,
)
from agent_dispatch.service.agent_args import CLEAR, split_list
from agent_dispatch.service.usage import AgentUsage
from agent_dispatch.storage import describe
from agent_dispatch.storage.config import ConfigStore, agent_directory

EditGuard = Callable[[Config, str, AgentConfig | None, AgentConfig | None], None]
"""Called inside the config lock with (config, name, agent before, agent after); raises
to refuse the change. The MCP tools pass `mcp_policy.check_edit`; the CLI passes none."""

MAX_PREVIEW_LINES = 200


# -- answers --------------------------------------------------------------------
# What list/inspect/add/update/remove answer, as the MCP tools publish them (outputSchema)
# and the CLI prints them as JSON. Fields in the order of the JSON; a field whose
# default is UNSET is left out when unset, as these answers always have.


class AgentBrief(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One agent as `list_agents` shows it: where it is, its health and detected facts.
    `problem` says why an unhealthy directory is; the permission fields are there only
    when the agent sets them."""

    name: str
    directory: str
    description: str
    healthy: bool | Literal["UNREADABLE"]
    has_claude_md: bool
    has_mcp_config: bool
    mcp_servers: list[str]
    stacks: list[str]
    dbs: list[str]
    capabilities: list[str]
    problem: str | UnsetType = UNSET
    permission_mode: PermissionMode | UnsetType = UNSET
    allowed_tools: list[str] | UnsetType = UNSET
    disallowed_tools: list[str] | UnsetType = UNSET
    max_budget_usd: float | UnsetType = UNSET
    risky_capabilities: list[str] | UnsetType = UNSET
    # Its typical figures over its recent runs (the usage journal), once it has run.
    usage: AgentUsage | UnsetType = UNSET


class AgentInfo(AgentBrief, kw_only=True, omit_defaults=True):
    """One agent in full: its brief, its config, the groups listing it, and (unless
    preview_lines is 0) the start of its CLAUDE.md and README.md, null when absent."""

    config: AgentConfig
    groups: list[str]
    claude_md_preview: str | UnsetType | None = UNSET
    readme_preview: str | UnsetType | None = UNSET


class AgentAdded(msgspec.Struct, kw_only=True):
    added: str
    agent: AgentConfig


class AgentUpdated(msgspec.Struct, kw_only=True):
    updated: str
    fields: list[str]


class Removed(msgspec.Struct, kw_only=True):
    """An agent or group removed from the config."""

    removed: str


class MemberView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A group member; `unknown: true` when it names no configured agent."""

    agent: str
    use_for: str
    unknown: bool | UnsetType = UNSET


class GroupBrief(msgspec.Struct, kw_only=True):
    name: str
    description: str
    members: list[MemberView]


class GroupInfo(msgspec.Struct, kw_only=True):
    name: str
    description: str
    shared_context: str
    members: list[MemberView]


def _check_model(value: str) -> str | None:
    """A model name as `--model` takes it: one token, no leading '-', no control characters."""
    model = value.strip()
    if model.startswith("-") or CONTROL_RE.search(model):
        raise InvalidArgument(
            f"model: {value!r} is not a model name (no leading '-', no control characters)",
            "Pass a name such as sonnet or opus, or 'none' to use the CLI's default.",
        )
    return model or None


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


UsageOf = Callable[[str], AgentUsage | None]
"""An agent's typical figures, None before its first journalled run (UsageBook.usage)."""


def no_usage(name: str) -> None:
    return None


def _brief_fields(name: str, agent: AgentConfig, usage: UsageOf) -> dict[str, Any]:
    facts = describe.detect(agent_directory(agent))

    def given(value: Any) -> Any:
        """A set optional field as the answer shows it (tuples as lists); UNSET if not set."""
        if value is None:
            return UNSET
        return list(value) if isinstance(value, tuple) else value

    return {
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
        "problem": facts.error or UNSET,
        "permission_mode": given(agent.permission_mode),
        "allowed_tools": given(agent.allowed_tools),
        "disallowed_tools": given(agent.disallowed_tools),
        "max_budget_usd": given(agent.max_budget_usd),
        "risky_capabilities": given(agent.risky_capabilities or None),
        "usage": given(usage(name)),
    }


def agent_brief(name: str, agent: AgentConfig, usage: UsageOf = no_usage) -> AgentBrief:
    return AgentBrief(**_brief_fields(name, agent, usage))


def list_agents(cfg: Config, usage: UsageOf = no_usage) -> list[AgentBrief]:
    return [agent_brief(name, cfg.agents[name], usage) for name in sorted(cfg.agents)]


def get_agent(cfg: Config, name: str) -> AgentConfig:
    check_name(name)
    if name not in cfg.agents:
        raise UnknownAgent(f"unknown agent {name!r}")
    return cfg.agents[name]


def inspect_agent(
    cfg: Config, name: str, preview_lines: int = 40, usage: UsageOf = no_usage
) -> AgentInfo:
    agent = get_agent(cfg, name)
    lines = int(clamped(preview_lines, "preview_lines", 0, MAX_PREVIEW_LINES))
    directory = agent_directory(agent)
    info = AgentInfo(
        **_brief_fields(name, agent, usage),
        config=agent,
        groups=sorted(
            g for g, grp in cfg.groups.items() if any(m.agent == name for m in grp.members)
        ),
    )
    if lines:
        info.claude_md_preview = describe.preview(directory, "CLAUDE.md", lines)
        info.readme_preview = describe.preview(directory, "README.md", lines)
    return info


def _checked(patch: AgentPatch) -> AgentPatch:
    """`patch` with its types and bounds checked (a constructed one too), the directory
    resolved, and the model and tool names usable as `claude` arguments."""
    patch = revalidated(patch)
    fixes: dict[str, Any] = {}
    if isinstance(patch.directory, str):
        fixes["directory"] = _check_directory(patch.directory)
    if isinstance(patch.model, str):
        fixes["model"] = _check_model(patch.model)
    for field in ("allowed_tools", "disallowed_tools"):
        for tool in getattr(patch, field) or ():
            if tool.startswith("-"):
                raise InvalidArgument(f"{field}: tool name {tool!r} must not start with '-'")
    return msgspec.structs.replace(patch, **fixes)


def add_agent(
    store: ConfigStore, name: str, patch: AgentPatch, *, guard: EditGuard | None = None
) -> AgentAdded:
    """Add agent `name` with the patch's fields (a directory is required; unset fields
    take their defaults; an empty description is generated from the project)."""
    check_name(name)
    if patch.directory is UNSET:
        raise InvalidArgument("directory: must not be empty")
    fields = _checked(patch).values()
    if not fields.get("description", "").strip():
        fields["description"] = describe.auto_description(Path(fields["directory"]))
    agent = AgentConfig(**fields)

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
    return AgentAdded(added=name, agent=agent)


def update_agent(
    store: ConfigStore, name: str, patch: AgentPatch, *, guard: EditGuard | None = None
) -> AgentUpdated:
    """Apply the patch to agent `name`: unset fields stay, None clears to the default."""
    check_name(name)
    patch = _checked(patch)

    def change(cfg: Config) -> Config:
        if name not in cfg.agents:
            raise UnknownAgent(f"unknown agent {name!r}")
        agent = patch.apply(cfg.agents[name])
        if guard is not None:
            guard(cfg, name, cfg.agents[name], agent)
        return msgspec.structs.replace(cfg, agents={**cfg.agents, name: agent})

    store.update(change)
    return AgentUpdated(updated=name, fields=sorted(patch.given()))


def remove_agent(store: ConfigStore, name: str, guard: EditGuard | None = None) -> Removed:
    check_name(name)

    def change(cfg: Config) -> Config:
        if name not in cfg.agents:
            raise UnknownAgent(f"unknown agent {name!r}")
        if guard is not None:
            guard(cfg, name, cfg.agents[name], None)
        agents = {k: v for k, v in cfg.agents.items() if k != name}
        return msgspec.structs.replace(cfg, agents=agents)

    store.update(change)
    return Removed(removed=name)


# -- groups ---------------------------------------------------------------------


def _members_view(cfg: Config, group: Group) -> list[MemberView]:
    return [
        MemberView(agent=m.agent, use_for=m.use_for, unknown=m.agent not in cfg.agents or UNSET)
        for m in group.members
    ]


def list_groups(cfg: Config) -> list[GroupBrief]:
    return [
        GroupBrief(name=name, description=group.description, members=_members_view(cfg, group))
        for name, group in sorted(cfg.groups.items())
    ]


def get_group(cfg: Config, name: str) -> Group:
    check_name(name)
    if name not in cfg.groups:
        raise UnknownGroup(f"unknown group {name!r}")
    return cfg.groups[name]


def inspect_group(cfg: Config, name: str) -> GroupInfo:
    group = get_group(cfg, name)
    return GroupInfo(
        name=name,
        description=group.description,
        shared_context=group.shared_context,
        members=_members_view(cfg, group),
    )


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
) -> GroupInfo:
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


def remove_group(store: ConfigStore, name: str) -> Removed:
    check_name(name)

    def change(cfg: Config) -> Config:
        if name not in cfg.groups:
            raise UnknownGroup(f"unknown group {name!r}")
        return msgspec.structs.replace(
            cfg, groups={k: v for k, v in cfg.groups.items() if k != name}
        )

    store.update(change)
    return Removed(removed=name)
