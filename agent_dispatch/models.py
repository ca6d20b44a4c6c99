"""The data model: msgspec Structs shared by every module.

Config structs are strict (unknown fields are errors, values are bounded);
results are plain data that crosses module and process boundaries.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, get_args

import msgspec

from agent_dispatch.errors import InvalidArgument

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
MAX_NAME_LENGTH = 64  # names are table cells, argv words and file-name-like keys
NAME_HINT = (
    f"Names match {NAME_PATTERN} in full (letters, digits, '_' and '-', starting with a"
    f" letter or digit), at most {MAX_NAME_LENGTH} characters."
)
_NAME_RE = re.compile(NAME_PATTERN)

# One Literal per set of names; every tuple of the names is derived from it.
PermissionMode = Literal[
    "acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "manual", "plan"
]
PERMISSION_MODES: tuple[PermissionMode, ...] = get_args(PermissionMode)
ErrorType = Literal[
    "permission", "timeout", "recursion", "not_found", "budget", "usage_limit", "cli_error"
]
ERROR_TYPES: tuple[ErrorType, ...] = get_args(ErrorType)
TerminalStatus = Literal["done", "failed", "cancelled"]
JobStatus = Literal["pending", "running", TerminalStatus]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(get_args(TerminalStatus))
ResponseFormat = Literal["", "json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = get_args(ResponseFormat)
WaitMode = Literal["all", "any"]
WAIT_MODES: tuple[WaitMode, ...] = get_args(WaitMode)
MIN_TIMEOUT = 10.0  # seconds a dispatch may be given, at least and at most
MAX_TIMEOUT = 7200.0
MAX_AGENT_TIMEOUT = 7 * 24 * 3600  # an agent's configured timeout, at most (a week)

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
TimeoutSeconds = Annotated[int, msgspec.Meta(ge=1, le=MAX_AGENT_TIMEOUT)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]


def name_problem(name: object) -> str | None:
    """None for an agent/group name, else what is wrong with it (for an error message).

    The one rule for agent and group names, wherever they come from: the config
    file, an MCP argument or a command line.
    """
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters long, at most {MAX_NAME_LENGTH}"
    if _NAME_RE.fullmatch(name) is None:  # fullmatch: no trailing newline either
        return f"must match {NAME_PATTERN}"
    return None


def is_valid_name(name: object) -> bool:
    """True when `name` is an agent/group name (see `name_problem`)."""
    return name_problem(name) is None


def check_name(name: str, field: str = "name", kind: str = "name", hint: str = NAME_HINT) -> str:
    """`name` when it is an agent/group name, else InvalidArgument saying what is wrong."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidArgument(f"{field}: invalid {kind} {shown_name(name)} ({problem})", hint)
    return name


def shown_name(name: object) -> str:
    """A name as an error quotes it: repr, and cut when over-long."""
    if not isinstance(name, str) or len(name) <= MAX_NAME_LENGTH:
        return repr(name)
    return f"{name[:MAX_NAME_LENGTH]!r}..."


def _require_finite(value: float | None, field: str) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{field}: expected a finite number")


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class AgentConfig(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One agent: a project directory that `claude -p` runs in."""

    directory: str
    description: str = ""
    timeout: TimeoutSeconds = 300
    model: str | None = None
    max_budget_usd: PositiveFloat | None = None
    permission_mode: PermissionMode | None = None
    # Tri-state: None inherits the settings defaults, () allows/denies nothing, else exactly.
    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] | None = None
    capabilities: tuple[str, ...] = ()
    risky_capabilities: tuple[str, ...] = ()
    instructions: str = ""

    def __post_init__(self) -> None:
        _require_finite(self.max_budget_usd, "max_budget_usd")
        if not self.directory.strip():
            raise ValueError("directory: must not be empty")


class GroupMember(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    agent: str
    use_for: str = ""


class Group(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: str = ""
    shared_context: str = ""
    members: tuple[GroupMember, ...] = ()


class CacheSettings(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    ttl: NonNegFloat = 300
    max_size: NonNegInt = 1000

    def __post_init__(self) -> None:
        _require_finite(self.ttl, "ttl")


class Settings(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    default_timeout: TimeoutSeconds = 300
    default_max_budget_usd: PositiveFloat | None = None
    default_permission_mode: PermissionMode | None = None
    default_allowed_tools: tuple[str, ...] = ()
    default_disallowed_tools: tuple[str, ...] = ()
    max_dispatch_depth: NonNegInt = 3
    max_concurrency: PositiveInt = 5
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    job_retention_days: NonNegFloat = 0
    claude_path: str | None = None
    # The longest JSON-RPC line `serve` takes; a longer one is answered with an error, unread.
    max_message_mib: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    # False: add_agent / update_agent / remove_agent refuse over MCP (the CLI still edits).
    mcp_agent_edits: bool = True

    def __post_init__(self) -> None:
        _require_finite(self.default_max_budget_usd, "default_max_budget_usd")
        _require_finite(self.job_retention_days, "job_retention_days")


def permission_mode_of(agent: AgentConfig, settings: Settings) -> str | None:
    """The mode an agent's runs get: its own, else the settings default (None: the CLI's)."""
    return agent.permission_mode or settings.default_permission_mode


class Config(_Strict, frozen=True, kw_only=True, forbid_unknown_fields=True):
    agents: dict[str, AgentConfig] = msgspec.field(default_factory=dict)
    groups: dict[str, Group] = msgspec.field(default_factory=dict)
    settings: Settings = msgspec.field(default_factory=Settings)


class DispatchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One delegation. `timeout_seconds=None` means the agent's own timeout."""

    agent: str
    task: str
    context: str = ""
    caller: str = ""
    goal: str = ""
    response_format: ResponseFormat = ""
    timeout_seconds: float | None = None
    session_id: str | None = None  # resume this session (dispatch_session)
    group: str | None = None


class DispatchResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a dispatch returns. Optional fields are omitted when unset."""

    agent: str
    success: bool
    result: str = ""
    session_id: str | None = None
    cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    error: str | None = None
    error_type: ErrorType | None = None
    parsed_result: Any = None
    denied_tools: list[str] | None = None
    hint: str | None = None
    budget_exceeded: bool | None = None
    cached: bool | None = None


ProgressKind = Literal["text", "tool_use", "retry"]


class ProgressEvent(msgspec.Struct, frozen=True):
    """A live event from a streaming child: assistant text, a tool call, an API retry."""

    kind: ProgressKind
    message: str
