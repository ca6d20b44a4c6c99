"""The data model: msgspec Structs shared by every module.

Config structs are strict (unknown fields are errors, values are bounded);
results are plain data that crosses module and process boundaries.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, overload

import msgspec
from msgspec import UNSET, UnsetType

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.results import ERROR_TYPES as ERROR_TYPES
from agent_dispatch.results import OUTCOMES as OUTCOMES
from agent_dispatch.results import DispatchResult as DispatchResult
from agent_dispatch.results import ErrorType as ErrorType
from agent_dispatch.results import Outcome as Outcome

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
TerminalStatus = Literal["done", "failed", "cancelled"]
JobStatus = Literal["pending", "running", TerminalStatus]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(get_args(TerminalStatus))
ResponseFormat = Literal["", "json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = get_args(ResponseFormat)


class WaitMode(enum.StrEnum):
    """What a wait on several jobs waits for: all of them, or the first to finish."""

    ALL = "all"
    ANY = "any"


WAIT_MODES: tuple[str, ...] = tuple(mode.value for mode in WaitMode)
MIN_TIMEOUT = 10.0  # seconds a dispatch may be given, at least and at most
MAX_TIMEOUT = 7200.0
MAX_AGENT_TIMEOUT = 7 * 24 * 3600  # an agent's configured timeout, at most (a week)
KILL_GRACE_SECONDS = 1.5  # SIGTERM to SIGKILL for a child's group, by default
MAX_KILL_GRACE_SECONDS = 60.0
MAX_TASK_GRACE_SECONDS = 600.0

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
    if value is not None and not _finite(value):
        raise ValueError(f"{field}: expected a finite number")


# -- converting arguments: each rule lives once, on the type ----------------------

_T = TypeVar("_T")
_AT_RE = re.compile(r"(?s)(.*) - at `\$(.*)`")
_FIELD_MSG_RE = re.compile(r"(?s)([a-z_]+): (.*)")  # raised by a model's __post_init__
_TYPE_WORDS = {"array": "list", "object": "mapping"}
# An enum value msgspec refuses is answered with the names it takes, by field name.
_CHOICES: dict[str, tuple[str, ...]] = {
    "permission_mode": PERMISSION_MODES,
    "response_format": RESPONSE_FORMATS,
    "status": JOB_STATUSES,
    "mode": WAIT_MODES,
}


def _finite(value: float) -> bool:
    return math.isfinite(value)  # the one finiteness check: msgspec.Meta cannot say it


def _lookup(value: object, path: str) -> object:
    """The part of builtins `value` at a msgspec path such as `.dispatches[2].task`."""
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        if key and isinstance(value, dict) and key in value:
            value = value[key]
        elif index and isinstance(value, list | tuple) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def validation_message(
    message: str, prefix: str = "", choices: tuple[str, ...] | None = None, got: Any = UNSET
) -> str:
    """msgspec's `Expected `int` >= 1 - at `$.x`` -> `prefix.x: expected int >= 1`;
    with `got` (the refused value), a bound also says what it got."""
    body, at = message, ""
    if m := _AT_RE.fullmatch(message):
        body, at = m.group(1), m.group(2)
    path = prefix + at
    if m := _FIELD_MSG_RE.fullmatch(body):
        path, body = f"{path}.{m.group(1)}", m.group(2)
    elif m := re.fullmatch(r"Object contains unknown field `(.*)`", body):
        body = f'unknown field "{m.group(1)}"'
    elif m := re.fullmatch(r"Object missing required field `(.*)`", body):
        body = f'missing required field "{m.group(1)}"'
    elif m := re.fullmatch(r"Invalid enum value (.*)", body):
        body = f"invalid value {m.group(1)}"
        choices = choices or _CHOICES.get(re.split(r"[.\]\[]", path.rstrip("]"))[-1])
        if choices:
            body += f" (expected one of {', '.join(repr(c) if not c else c for c in choices)})"
    elif got is not UNSET and (m := re.fullmatch(r"Expected `\w+` ([<>]=?) (\S+)", body)):
        op, bound = m.group(1), float(m.group(2))
        body = "must not be negative" if (op, bound) == (">=", 0) else f"must be {op} {bound:g}"
        body += f", got {got!r}"
    else:
        body = re.sub(r"`([^`]*)`", lambda t: _type_words(t.group(1)), body)
        body = body[:1].lower() + body[1:]
    return _at(path, body)


def _at(path: str, body: str) -> str:
    path = path.lstrip(".")
    return f"{path}: {body}" if path else body


def _type_words(spec: str) -> str:
    return " | ".join(_TYPE_WORDS.get(part, part) for part in spec.split(" | "))


def _non_finite(value: object, path: str = "") -> tuple[str, float] | None:
    """The path and value of the first float in `value` that is NaN or infinite."""
    if isinstance(value, float):
        return None if _finite(value) else (path, value)
    if isinstance(value, msgspec.Struct):
        names = value.__struct_fields__
        pairs: Any = zip((f".{f}" for f in names), (getattr(value, f) for f in names), strict=True)
    elif isinstance(value, dict):
        pairs = ((f".{k}", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        pairs = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for step, item in pairs:
        # Scalars are checked here, not by a call each: this runs on every dispatch.
        if isinstance(item, float):
            if not _finite(item):
                return (path + step, item)
        elif isinstance(item, msgspec.Struct | dict | list | tuple):
            if (found := _non_finite(item, path + step)) is not None:
                return found
    return None


@overload
def convert(
    value: object, type_: type[_T], *, field: str = ..., hint: str = ..., strict: bool = ...
) -> _T: ...
@overload
def convert(
    value: object, type_: Any, *, field: str = ..., hint: str = ..., strict: bool = ...
) -> Any: ...
def convert(
    value: object, type_: Any, *, field: str = "", hint: str = "", strict: bool = True
) -> Any:
    """`value` as `type_`, or InvalidArgument naming the field path (`dispatches[2].task`).

    The one way an argument (MCP, command line or library) becomes data: msgspec.convert
    applies the type's Meta constraints and enums, and every number in the result must
    be finite (NaN and infinity pass a Meta bound that is only on one side).
    `strict=False` also takes numbers and booleans spelled as text (command lines).
    """
    try:
        out = msgspec.convert(value, type_, strict=strict)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = m.group(2) if (m := _AT_RE.fullmatch(message)) else ""
        bad = _lookup(value, at)
        found = (at, bad) if isinstance(bad, float) and not _finite(bad) else None
        if found is None:  # (NaN fails a bound: then the reason is said instead)
            choices = get_args(type_) if get_origin(type_) is Literal else None
            message = validation_message(message, field, choices, bad)
            raise InvalidArgument(message, hint) from None
    else:
        found = _non_finite(out)
    if found is not None:
        path, number = found
        raise InvalidArgument(_at(field + path, f"expected a finite number, got {number!r}"), hint)
    return out


def revalidated(value: _T) -> _T:
    """A Struct built by a constructor (which checks no Meta) passed through `convert`."""
    return convert(msgspec.to_builtins(value), type(value))


def clamped(value: object, field: str, low: float, high: float, hint: str = "") -> float:
    """A finite number clamped into low..high (bounds written a..b clamp, see SPEC)."""
    number: float = convert(value, float, field=field, hint=hint)
    return min(max(number, low), high)


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


class AgentPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A change to an agent's fields: the one spec of them that add and update take.

    UNSET leaves a field as it is (for a new agent: its default); None clears it back
    to AgentConfig's default (timeout 300, no budget cap, tool lists inherited, empty
    text). The faces convert their spellings into this (service/agent_args.py).
    """

    directory: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    timeout: TimeoutSeconds | UnsetType | None = UNSET
    model: str | UnsetType | None = UNSET
    max_budget_usd: PositiveFloat | UnsetType | None = UNSET
    permission_mode: PermissionMode | UnsetType | None = UNSET
    allowed_tools: tuple[str, ...] | UnsetType | None = UNSET
    disallowed_tools: tuple[str, ...] | UnsetType | None = UNSET
    capabilities: tuple[str, ...] | UnsetType | None = UNSET
    risky_capabilities: tuple[str, ...] | UnsetType | None = UNSET
    instructions: str | UnsetType | None = UNSET

    def given(self) -> dict[str, Any]:
        """The fields this patch sets or clears (None: clear), by name."""
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not UNSET}

    def values(self) -> dict[str, Any]:
        """The given fields with each clear replaced by AgentConfig's default."""
        return {f: _AGENT_DEFAULTS[f] if v is None else v for f, v in self.given().items()}

    def apply(self, agent: AgentConfig) -> AgentConfig:
        return msgspec.structs.replace(agent, **self.values())


_AGENT_DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
    for f in msgspec.structs.fields(AgentConfig)
}


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
    # Seconds a child's process group gets between SIGTERM and SIGKILL (timeout, cancel).
    kill_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_KILL_GRACE_SECONDS)] = (
        KILL_GRACE_SECONDS
    )
    # The per-user service exits after this many seconds with no session and no job (0: never).
    service_idle_seconds: NonNegFloat = 900
    # An MCP client that takes tasks (Claude Code, interactive) gets the answer of a
    # dispatch inline when it comes within this many seconds, else a task handle.
    task_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_TASK_GRACE_SECONDS)] = 8

    def __post_init__(self) -> None:
        _require_finite(self.default_max_budget_usd, "default_max_budget_usd")
        _require_finite(self.job_retention_days, "job_retention_days")
        _require_finite(self.service_idle_seconds, "service_idle_seconds")


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
    timeout_seconds: NonNegFloat | None = None  # 0 too: the agent's own
    session_id: str | None = None  # resume this session (dispatch_session)
    group: str | None = None


TaskTool = Literal["dispatch", "dispatch_session", "dispatch_stream"]


class TaskReply(msgspec.Struct, frozen=True, kw_only=True):
    """How a job started as an MCP task answers once done: as the tool `tool` would have,
    with that tool's shaping arguments (`return_ref` and `summary_chars` of dispatch)."""

    tool: TaskTool
    return_ref: bool = False
    summary_chars: int = 500

    @property
    def cached(self) -> bool:
        """Whether its run consults and fills the cache, as the tool's run does."""
        return self.tool == "dispatch"


class ParallelItem(DispatchRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One element of dispatch_parallel's `dispatches`: a dispatch's arguments."""

    return_ref: bool = False
    summary_chars: float = 500

    def request(self) -> DispatchRequest:
        return DispatchRequest(**{f: getattr(self, f) for f in DispatchRequest.__struct_fields__})


_Request = TypeVar("_Request", bound=DispatchRequest)
_EMPTY_IS_NONE = ("group", "session_id")  # a face's "" for these: none


@overload
def dispatch_request(args: Mapping[str, object], field: str = ...) -> DispatchRequest: ...
@overload
def dispatch_request(args: object, field: str, type_: type[_Request]) -> _Request: ...
def dispatch_request(args: object, field: str = "", type_: Any = DispatchRequest) -> Any:
    """The one way tool, command-line and library arguments become a DispatchRequest.

    `args` are a face's parameters (a tool's `locals()` will do: DispatchRequest skips
    names that are not its fields; a ParallelItem refuses them); an empty group or
    session_id means none. The
    request's types and Meta constraints check every value, so an error names the
    field (put under `field`, e.g. `dispatches[2]`).
    """
    if isinstance(args, Mapping):  # anything else: convert says what it expected
        args = {k: None if k in _EMPTY_IS_NONE and v == "" else v for k, v in args.items()}
    return convert(args, type_, field=field)


ProgressKind = Literal["queued", "started", "text", "tool_use", "retry"]
PROGRESS_KINDS: tuple[ProgressKind, ...] = get_args(ProgressKind)
# A tool call's input, JSON-encoded, is kept up to this many bytes; a bigger one (a
# whole file to Write) is dropped, so a buffer of events stays small.
MAX_TOOL_INPUT_BYTES = 32 * 1024


class ProgressEvent(msgspec.Struct, frozen=True):
    """A live event of one run: it waits for a slot, starts, or its child says something.

    `kind` says which:
    - "queued": every slot was taken when the run asked for one; it waits.
    - "started": the run holds a slot and its child exists: `pid` (the local child's
      process id, which leads its process group; None when nothing local runs) and
      `session_id` (the claude session the run uses).
    - "text": assistant text (cut at 20,000 characters).
    - "tool_use": the child calls a tool: `tool` (its name, None when the child sent
      none) and `tool_input` (the input object as the child sent it; None, with
      `tool_input_dropped` set, when it is over MAX_TOOL_INPUT_BYTES encoded as JSON).
    - "retry": the CLI retries a failed API request.

    `message` is the one-line text every face shows (e.g. "Using tool: Bash"); `at`
    is the wall-clock time (`time.time()`) the service saw the event, 0.0 when unset.
    """

    kind: ProgressKind
    message: str
    at: float = 0.0
    tool: str | None = None
    tool_input: Any = None
    tool_input_dropped: bool = False
    pid: int | None = None
    session_id: str | None = None
