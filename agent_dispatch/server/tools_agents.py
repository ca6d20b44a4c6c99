"""MCP tools for agents, groups and the result cache."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from agent_dispatch import offload
from agent_dispatch.models import AgentPatch
from agent_dispatch.server.toolkit import Toolbox
from agent_dispatch.service import edit_policy as mcp_policy
from agent_dispatch.service import registry
from agent_dispatch.service.agent_args import patch_from_args
from agent_dispatch.service.cache import CacheStats
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore


class AgentList(msgspec.Struct, kw_only=True):
    agents: list[registry.AgentBrief]


class GroupList(msgspec.Struct, kw_only=True):
    groups: list[registry.GroupBrief]


class Cleared(msgspec.Struct, kw_only=True):
    """How many cached results `cache_clear` dropped."""

    cleared: int


def register_agent_tools(box: Toolbox, dispatcher: Dispatcher, store: ConfigStore) -> None:
    """Agents, groups and the cache: config reads and locked config edits."""

    async def config() -> Any:
        return dispatcher.config()  # raises ConfigError -> envelope

    def usage_of() -> registry.UsageOf:
        """The journal's figures, brought up to date (blocking: in a worker thread)."""
        book = dispatcher.usage
        if book is None:
            return registry.no_usage
        book.refresh()
        return book.usage

    @box.tool
    async def list_agents() -> AgentList:
        """List the configured agents with health, detected facts (stacks, DBs, MCP servers)
        and, once an agent has run, its typical figures (runs, success rate, p50/p90
        duration and cost, last used)."""
        cfg = await config()

        def listing() -> list[registry.AgentBrief]:
            return registry.list_agents(cfg, usage_of())

        return AgentList(agents=await offload.run_sync(listing))

    @box.tool
    async def inspect_agent(name: str, preview_lines: int = 40) -> registry.AgentInfo:
        """Full config, detected facts, typical figures and CLAUDE.md / README.md previews
        of one agent."""
        cfg = await config()

        def inspection() -> registry.AgentInfo:
            return registry.inspect_agent(cfg, name, preview_lines, usage_of())

        return await offload.run_sync(inspection)

    @box.tool
    async def list_groups() -> GroupList:
        """List agent groups; members that are not configured agents say `unknown: true`."""
        return GroupList(groups=registry.list_groups(await config()))

    @box.tool
    async def inspect_group(name: str) -> registry.GroupInfo:
        """One group's description, shared context and members."""
        return registry.inspect_group(await config(), name)

    @box.tool
    async def add_agent(
        name: str,
        directory: str,
        description: str = "",
        timeout: float = 0,
        max_budget_usd: float = 0,
        permission_mode: str = "",
        allowed_tools: str = "",
        disallowed_tools: str = "",
        capabilities: str = "",
        risky_capabilities: str = "",
        instructions: str = "",
        model: str = "",
    ) -> registry.AgentAdded:
        """Register a project directory as an agent. Lists are comma separated;
        timeout 0 = 300 s; max_budget_usd 0 = no cap; a tool list of "[]" means none.
        permission_mode bypassPermissions is set only from the CLI."""
        mcp_policy.check_edits_allowed(await config(), name, "add")
        args = {k: v for k, v in locals().items() if k in AgentPatch.__struct_fields__}
        patch = patch_from_args(args, zero="default", hint=_ADD_HINTS.get)
        return await offload.run_sync(
            functools.partial(registry.add_agent, store, name, patch, guard=mcp_policy.check_edit)
        )

    @box.tool
    async def update_agent(
        name: str,
        directory: str = "",
        description: str = "",
        timeout: float | str = 0,
        max_budget_usd: float | str = 0,
        model: str = "",
        permission_mode: str = "",
        allowed_tools: str = "",
        disallowed_tools: str = "",
        capabilities: str = "",
        risky_capabilities: str = "",
        instructions: str = "",
    ) -> registry.AgentUpdated:
        """Change fields of an agent. Empty (or 0) = unchanged; "none" clears a field
        (timeout back to 300 s, max_budget_usd to no cap). permission_mode
        bypassPermissions, and agents that run with it, are changed only from the CLI."""
        mcp_policy.check_edits_allowed(await config(), name, "update")
        args = {k: v for k, v in locals().items() if k in AgentPatch.__struct_fields__}
        patch = patch_from_args(args, zero="unchanged", hint=_UPDATE_HINTS.get)
        return await offload.run_sync(
            functools.partial(
                registry.update_agent, store, name, patch, guard=mcp_policy.check_edit
            )
        )

    @box.tool
    async def remove_agent(name: str) -> registry.Removed:
        """Remove an agent from the config (its directory is untouched)."""
        mcp_policy.check_edits_allowed(await config(), name, "remove")
        return await offload.run_sync(registry.remove_agent, store, name, mcp_policy.check_edit)

    @box.tool
    async def cache_stats() -> CacheStats:
        """Result cache size, hits, misses, evictions, hit rate and TTL."""
        await config()
        return dispatcher.cache.stats()

    @box.tool
    async def cache_clear() -> Cleared:
        """Drop every cached dispatch result."""
        await config()  # like every tool: a broken config is reported, not skipped
        return Cleared(cleared=dispatcher.cache.clear())


_ADD_HINTS = {
    "timeout": "Pass whole seconds, or 0 for the default timeout (300 s).",
    "max_budget_usd": "Pass dollars, or 0 for no budget cap.",
    "permission_mode": "Leave it empty (or 'none') for the claude CLI's default mode.",
}
_UPDATE_HINTS = {
    **_ADD_HINTS,
    "timeout": 'Pass whole seconds (0 = unchanged), or "none" for the default (300 s).',
    "max_budget_usd": 'Pass dollars (0 = unchanged), or "none" for no budget cap.',
}
