"""Resolving a request against the config: effective agent settings, timeouts, prompts.

Pure functions; the Dispatcher calls them before it spawns anything. Errors name
the field they are about (`session_id: ...`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec

from agent_dispatch.claude import invocation as claude
from agent_dispatch.errors import DispatchError, InvalidArgument, UnknownAgent, UnknownGroup
from agent_dispatch.models import (
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    NAME_HINT,
    AgentConfig,
    Config,
    DispatchRequest,
    DispatchResult,
    NonNegFloat,
    check_name,
    convert,
    permission_mode_of,
    revalidated,
)
from agent_dispatch.runtime.runner import RunSpec
from agent_dispatch.storage.config import agent_directory


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


def check_agent(cfg: Config, name: str, field: str = "agent") -> AgentConfig:
    """The configured agent `name`; InvalidArgument or UnknownAgent naming `field`."""
    check_name(name, field, "agent name", f"{NAME_HINT} Call list_agents to see them.")
    if name not in cfg.agents:
        raise UnknownAgent(f"{field}: unknown agent {name!r}")
    return cfg.agents[name]


def validate_request(cfg: Config, req: DispatchRequest, item: str = "") -> None:
    """Raise a DispatchError for a request that must not spawn anything.

    Each check's error names the request's field; for an `item` of a batch
    (`dispatches[2]`) the item is put in front, here and only here.
    """
    try:
        _validate(cfg, req)
    except DispatchError as exc:
        if not item:
            raise
        raise exc.under(item) from None


def _validate(cfg: Config, req: DispatchRequest) -> None:
    check_agent(cfg, req.agent)
    req = revalidated(req)  # a library's request gets the checks a face's conversion made
    if not req.task.strip():
        raise InvalidArgument("task: must not be empty", "Say what the agent should do.")
    if req.group is not None and req.group != "":
        if req.group not in cfg.groups:
            raise UnknownGroup(f"group: unknown group {req.group!r}")
        if all(m.agent != req.agent for m in cfg.groups[req.group].members):
            raise InvalidArgument(
                f"group: agent {req.agent!r} is not a member of group {req.group!r}",
                f"Call inspect_group(name={req.group!r}) to see its members.",
            )
    if req.session_id:
        claude.check_session_id(req.session_id)


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


def resolve_timeout(
    value: object, default: float, *, low: float = MIN_TIMEOUT, high: float | None = MAX_TIMEOUT
) -> float:
    """The one timeout parser of a dispatch: `None`/0 means the agent's own timeout;
    anything else is clamped to `low`..`high` s (the tools' 10..7200 by default; the
    library passes 0 and None: as given). Negative or not a finite number: rejected."""
    hint = "Pass seconds between 10 and 7200, or 0 for the agent's own timeout."
    if low <= 0 and high is None:
        hint = "Pass a number of seconds, or 0 (or None) for the agent's own timeout."
    seconds = convert(value, NonNegFloat | None, field="timeout_seconds", hint=hint)
    if not seconds:
        return default
    return min(max(seconds, low), math.inf if high is None else high)


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
        said = ""  # the agent's STATUS line, stripped from its result: keep what it said
        if res.outcome in ("partial", "blocked"):
            said = f" ({res.outcome}{f': {res.outcome_reason}' if res.outcome_reason else ''})"
        parts.append(f"### Result {i}: agent {req.agent}{said}\nTask: {req.task}\n\n{body}")
    return "\n\n".join(parts)


def recursion_refusal(cfg: Config, agent: str, depth: int) -> DispatchResult | None:
    """The failed result for a caller at `depth` >= max_dispatch_depth (None: go on)."""
    limit = cfg.settings.max_dispatch_depth
    if depth >= limit:
        return DispatchResult(
            agent=agent,
            success=False,
            error=f"dispatch depth {depth} reached max_dispatch_depth {limit}",
            error_type="recursion",
            hint="This dispatch was itself dispatched; do the work here instead, "
            "or raise settings.max_dispatch_depth in agents.yaml.",
        )
    return None


def run_spec(
    cfg: Config,
    req: DispatchRequest,
    eff: EffectiveAgent,
    context: str,
    env: Mapping[str, str],
    depth: int,
    timeout: float,
    *,
    stream: bool,
) -> RunSpec:
    """The run `req` makes of agent `eff`: its prompt (with `context`, the group's folded
    in), session, flags and the child's environment (one dispatch deeper than `depth`)."""
    invocation = claude.Invocation(
        prompt=claude.build_prompt(
            req.task,
            context=context,
            caller=req.caller,
            goal=req.goal,
            response_format=req.response_format,
        ),
        session_id=req.session_id or claude.new_session_id(),
        resume=bool(req.session_id),
        stream=stream,
        model=eff.model,
        permission_mode=eff.permission_mode,
        allowed_tools=eff.allowed_tools,
        disallowed_tools=eff.disallowed_tools,
        max_budget_usd=eff.max_budget_usd,
        append_system_prompt=eff.instructions,
    )
    return RunSpec(
        agent=req.agent,
        directory=eff.directory,
        invocation=invocation,
        env=claude.child_env(env, depth),
        timeout=timeout,
        claude_path=cfg.settings.claude_path,
        grace=cfg.settings.kill_grace_seconds,
    )
