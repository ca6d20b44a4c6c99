"""Sans-IO adapter to the Claude Code CLI: the argv, prompt and environment of one run.

No I/O at all: process.py runs the child; claude_output.py decodes what it
prints and claude_classify.py turns that into a DispatchResult.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from decimal import Decimal

import msgspec

from agent_dispatch.claude.output import clean_text
from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import PERMISSION_MODES, PositiveFloat, convert

DEPTH_VAR = "AGENT_DISPATCH_DEPTH"
# What a parent Claude Code session sets for itself, never for a child: the nesting markers
# (some CLI versions refuse to run under them) and the parent's IDE connection.
_PARENT_SESSION_VARS = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_CODE_SSE_PORT")
JSON_FOOTER = (
    "## Response format\n"
    "Reply with exactly one JSON value (object, array, string, number, true, false or "
    "null) and nothing else: no prose before or after it and no Markdown code fences; "
    "only the STATUS line follows it."
)
# Asked of every child, so a reply says whether the work is finished (claude/status.py reads
# it back). Short: it is paid on every dispatch.
STATUS_FOOTER = (
    "End your answer with one last line: `STATUS: done`, `STATUS: partial <what is left>` "
    "or `STATUS: blocked <what you need>`."
)
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # never valid in one argv value


# -- invocation ------------------------------------------------------------------


class Invocation(msgspec.Struct, frozen=True, kw_only=True):
    """One `claude -p` run. `session_id` is passed as --session-id, or --resume when `resume`."""

    prompt: str
    session_id: str
    resume: bool = False
    stream: bool = False  # stream-json (+ --verbose) instead of json
    model: str | None = None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] = ()  # the effective list; empty = no flag
    disallowed_tools: tuple[str, ...] = ()
    max_budget_usd: float | None = None
    append_system_prompt: str = ""  # the agent's instructions


# Linux caps one argv element at 128 KiB (MAX_ARG_STRLEN): a longer prompt goes to stdin.
PROMPT_ARG_LIMIT = 100_000  # bytes


def stdin_prompt(inv: Invocation) -> bytes | None:
    """The prompt as stdin data when it is too long for one argument, else None.

    build_argv leaves such a prompt out; `claude -p` without a prompt argument
    reads it from stdin, which must then be a pipe that is written and closed.
    """
    data = _argv_text("task", inv.prompt).encode("utf-8")
    return data if len(data) > PROMPT_ARG_LIMIT else None


def build_argv(executable: str, inv: Invocation) -> list[str]:
    """The argv for `inv`; the prompt is the last element, after `--` (unless it is
    too long for one argument: see stdin_prompt).

    Structured values are validated first (raising InvalidArgument), so none can
    be read as a flag. Variadic tool flags use the single-token `--flag=a,b` form,
    which the CLI never extends with following words.
    """
    if not isinstance(executable, str) or not executable:
        raise InvalidArgument("claude executable: must not be empty")
    check_session_id(inv.session_id)
    if inv.model is not None:
        _check_value("model", inv.model, "Use a model name such as 'sonnet' or 'opus'.")
    if inv.permission_mode is not None:
        _check_permission_mode(inv.permission_mode)
    _check_tools("allowed_tools", inv.allowed_tools)
    _check_tools("disallowed_tools", inv.disallowed_tools)
    budget = None if inv.max_budget_usd is None else _format_budget(inv.max_budget_usd)
    prompt = _argv_text("task", inv.prompt)
    instructions = _argv_text("instructions", inv.append_system_prompt)

    argv = [executable, "-p", "--output-format"]
    argv += ["stream-json", "--verbose"] if inv.stream else ["json"]
    argv += ["--resume" if inv.resume else "--session-id", inv.session_id]
    if inv.model is not None:
        argv += ["--model", inv.model]
    if inv.permission_mode is not None:
        argv += ["--permission-mode", inv.permission_mode]
    if inv.allowed_tools:
        argv.append("--allowedTools=" + ",".join(inv.allowed_tools))
    if inv.disallowed_tools:
        argv.append("--disallowedTools=" + ",".join(inv.disallowed_tools))
    if budget is not None:
        argv += ["--max-budget-usd", budget]
    if instructions:
        argv.append("--append-system-prompt=" + instructions)
    if len(prompt.encode("utf-8")) <= PROMPT_ARG_LIMIT:
        argv += ["--", prompt]
    return argv


def _check_value(field: str, value: object, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{field}: must not be empty", hint)
    if value.lstrip().startswith("-"):
        raise InvalidArgument(f"{field}: must not start with '-' (got {value!r})", hint)
    if CONTROL_RE.search(value):
        raise InvalidArgument(f"{field}: must not contain control characters", hint)
    return value


def check_session_id(value: object) -> None:
    """Raise InvalidArgument unless `value` is a UUID usable as --session-id/--resume."""
    hint = "Pass the session_id a previous dispatch returned, or leave it empty for a new one."
    sid = _check_value("session_id", value, hint)
    if _UUID_RE.fullmatch(sid) is None:
        raise InvalidArgument(f"session_id: expected a UUID, got {sid!r}", hint)


def _check_permission_mode(value: object) -> None:
    hint = "Use one of: " + ", ".join(PERMISSION_MODES) + "."
    mode = _check_value("permission_mode", value, hint)
    if mode not in PERMISSION_MODES:
        raise InvalidArgument(f"permission_mode: unknown mode {mode!r}", hint)


def _check_tools(field: str, tools: object) -> None:
    hint = "Name tools like Bash, Read or 'Bash(git log:*)', one per list item."
    if isinstance(tools, str) or not isinstance(tools, (tuple, list)):
        raise InvalidArgument(f"{field}: expected a list of tool names", hint)
    for name in tools:
        _check_value(f"{field} item", name, hint)
        if "," in name:
            raise InvalidArgument(f"{field} item: must not contain ',' (got {name!r})", hint)


def _format_budget(value: object) -> str:
    hint = "Use a positive amount in USD, e.g. 0.5."
    budget = convert(value, PositiveFloat, field="max_budget_usd", hint=hint)
    # repr-like but never in exponent notation: 0.5 -> "0.5", 1e-05 -> "0.00001".
    return format(Decimal(repr(budget)), "f")


def _argv_text(field: str, text: object) -> str:
    if not isinstance(text, str):
        raise InvalidArgument(f"{field}: expected text")
    if "\x00" in text:
        raise InvalidArgument(
            f"{field}: must not contain a NUL character", "Remove the NUL byte from the text."
        )
    return clean_text(text)


def build_prompt(
    task: str, *, context: str = "", caller: str = "", goal: str = "", response_format: str = ""
) -> str:
    """The prompt text: the task alone, or Goal / Dispatched by / Context / Task sections;
    then the JSON footer when `response_format` is "json", and the status footer."""
    sections = [
        ("Goal", goal),
        ("Dispatched by", caller),
        ("Context", context),
    ]
    present = [(title, body.strip()) for title, body in sections if body and body.strip()]
    if present:
        parts = [f"## {title}\n{body}" for title, body in present]
        parts.append(f"## Task\n{task.strip()}")
        prompt = "\n\n".join(parts)
    else:
        prompt = task
    if response_format == "json":
        prompt = f"{prompt.rstrip()}\n\n{JSON_FOOTER}"
    return f"{prompt.rstrip()}\n\n{STATUS_FOOTER}"


def child_env(base: Mapping[str, str], depth: int) -> dict[str, str]:
    """The child's environment: `base` minus the parent session's variables, depth + 1."""
    env = {k: v for k, v in base.items() if k not in _PARENT_SESSION_VARS}
    env[DEPTH_VAR] = str(max(depth, 0) + 1)
    return env


def current_depth(env: Mapping[str, str]) -> int:
    """This process's dispatch depth; missing, garbage or negative values are 0."""
    raw = env.get(DEPTH_VAR, "").strip()
    if not raw or len(raw) > 9 or not raw.isascii() or not raw.isdigit():
        return 0
    return int(raw)


def new_session_id() -> str:
    return str(uuid.uuid4())
