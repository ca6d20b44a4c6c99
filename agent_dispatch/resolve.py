"""Resolving a request against the config: effective agent settings, timeouts, prompts.

Pure functions; the Dispatcher calls them before it spawns anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import msgspec

from agent_dispatch.config import agent_directory
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import (
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    Config,
    DispatchRequest,
    DispatchResult,
    permission_mode_of,
)


class EffectiveAgent(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's config with the settings defaults folded in: what a run uses."""

    name: str
    directory: str
    timeout: float
    model: str | None
    max_budget_usd: float | None
    permission_mode: str | None
    allowed_tools: tuple[str, ...]
    disallowed_tools: tuple[str, ...]
    instructions: str


def effective_agent(cfg: Config, name: str) -> EffectiveAgent:
    agent = cfg.agents[name]
    s = cfg.settings
    return EffectiveAgent(
        name=name,
        directory=str(agent_directory(agent)),
        timeout=float(agent.timeout),
        model=agent.model,
        max_budget_usd=(
            agent.max_budget_usd if agent.max_budget_usd is not None else s.default_max_budget_usd
        ),
        permission_mode=permission_mode_of(agent, s),
        allowed_tools=(
            agent.allowed_tools if agent.allowed_tools is not None else s.default_allowed_tools
        ),
        disallowed_tools=(
            agent.disallowed_tools
            if agent.disallowed_tools is not None
            else s.default_disallowed_tools
        ),
        instructions=agent.instructions,
    )


def directory_exists(path: str) -> bool:
    """One stat: cheap enough to run on the event loop before a spawn."""
    return os.path.isdir(path)


def resolve_timeout(value: float | None, default: float) -> float:
    """`None`/0 means the agent's own timeout; anything else is clamped to 10..7200 s."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(
            f"timeout_seconds: expected a finite number, got {value!r}",
            "Pass seconds between 10 and 7200, or 0 for the agent's own timeout.",
        )
    if value < 0:
        raise InvalidArgument(
            f"timeout_seconds: must not be negative, got {value!r}",
            "Pass seconds between 10 and 7200, or 0 for the agent's own timeout.",
        )
    if value == 0:
        return default
    return min(max(float(value), MIN_TIMEOUT), MAX_TIMEOUT)


def fold_group_context(cfg: Config, group_name: str, agent: str, context: str) -> str:
    group = cfg.groups[group_name]
    parts = [f"You are part of the agent group '{group_name}'."]
    if group.description:
        parts.append(group.description)
    if group.shared_context:
        parts.append(group.shared_context)
    for member in group.members:
        if member.agent == agent and member.use_for:
            parts.append(f"Your role in this group: {member.use_for}")
    if context:
        parts.append(context)
    return "\n\n".join(parts)


def aggregation_task(requests: Sequence[DispatchRequest], results: Sequence[DispatchResult]) -> str:
    parts = [
        "Several agents worked on related tasks in parallel. Combine their results into one "
        "coherent answer: reconcile overlaps, call out contradictions and failures.",
    ]
    for i, (req, res) in enumerate(zip(requests, results, strict=True), start=1):
        body = res.result if res.success else f"FAILED: {res.error}"
        parts.append(f"### Result {i}: agent {req.agent}\nTask: {req.task}\n\n{body}")
    return "\n\n".join(parts)
