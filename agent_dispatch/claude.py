"""Sans-IO adapter to the Claude Code CLI.

Builds the argv, prompt and environment for one `claude -p` run, decodes its
json / stream-json stdout and classifies the outcome into a DispatchResult.
No I/O at all: process.py runs the child, the Dispatcher wires the two.

Everything read from the child is untrusted: bytes are decoded with
replacement, lone surrogate escapes are neutralised before msgspec sees them,
and a malformed field is dropped rather than losing a paid answer.
"""

from __future__ import annotations

import math
import re
import shlex
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import PERMISSION_MODES, DispatchResult, ErrorType, ProgressEvent

__all__ = [
    "JSON_FOOTER",
    "CliOutput",
    "Invocation",
    "StreamParser",
    "build_argv",
    "build_prompt",
    "child_env",
    "classify",
    "current_depth",
    "has_result",
    "new_session_id",
    "not_found_result",
    "parse_json_reply",
    "parse_output",
]

DEPTH_VAR = "AGENT_DISPATCH_DEPTH"
_PARENT_SESSION_VARS = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")

JSON_FOOTER = (
    "## Response format\n"
    "Reply with exactly one JSON value (object, array, string, number, true, false or "
    "null) and nothing else: no prose before or after it and no Markdown code fences."
)

_TEXT_CAP = 1_000_000  # plain-text stdout kept as a result
_ERROR_CAP = 4000
_STDERR_CAP = 2000
_PROGRESS_CAP = 20_000
_TOOL_NAME_CAP = 100
_MAX_DENIED = 10

# One decoder for everything; float_hook turns out-of-range numbers into inf
# (then dropped by the field checks) instead of failing the whole object.
_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(float_hook=float)

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_CHAR_RE = re.compile("[\ud800-\udfff]")
# A \uXXXX surrogate escape with its run of backslashes (odd run = a real escape).
_SURROGATE_ESCAPE_RE = re.compile(
    r"(\\+)u(d[89ab][0-9a-f]{2})(\\ud[c-f][0-9a-f]{2})?|(\\+)u(d[c-f][0-9a-f]{2})",
    re.IGNORECASE,
)
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOT_JSON = object()
_WHOLE_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)
_INNER_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n[ \t]*```", re.DOTALL)


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


def build_argv(executable: str, inv: Invocation) -> list[str]:
    """The argv for `inv`; the prompt is always the last element, after `--`.

    Structured values are validated first (raising InvalidArgument), so none can
    be read as a flag. Variadic tool flags use the single-token `--flag=a,b` form,
    which the CLI never extends with following words.
    """
    if not isinstance(executable, str) or not executable:
        raise InvalidArgument("claude executable: must not be empty")
    _check_session_id(inv.session_id)
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
    argv += ["--", prompt]
    return argv


def _check_value(field: str, value: object, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{field}: must not be empty", hint)
    if value.lstrip().startswith("-"):
        raise InvalidArgument(f"{field}: must not start with '-' (got {value!r})", hint)
    if _CONTROL_RE.search(value):
        raise InvalidArgument(f"{field}: must not contain control characters", hint)
    return value


def _check_session_id(value: object) -> None:
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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument("max_budget_usd: expected a number", hint)
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"max_budget_usd: expected a finite number > 0, got {value!r}", hint)
    # repr-like but never in exponent notation: 0.5 -> "0.5", 1e-05 -> "0.00001".
    return format(Decimal(repr(float(value))), "f")


def _argv_text(field: str, text: object) -> str:
    if not isinstance(text, str):
        raise InvalidArgument(f"{field}: expected text")
    if "\x00" in text:
        raise InvalidArgument(
            f"{field}: must not contain a NUL character", "Remove the NUL byte from the text."
        )
    return _clean(text)


def build_prompt(
    task: str, *, context: str = "", caller: str = "", goal: str = "", response_format: str = ""
) -> str:
    """The prompt text: the task alone, or Goal / Dispatched by / Context / Task sections."""
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
    return prompt


def child_env(base: Mapping[str, str], depth: int) -> dict[str, str]:
    """The child's environment: `base` minus the parent-session markers, depth + 1."""
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


# -- decoding --------------------------------------------------------------------


class CliOutput(msgspec.Struct, kw_only=True):
    """A lenient view of the CLI's result object: malformed fields become None/empty."""

    subtype: str | None = None
    is_error: bool = False
    result: str | None = None
    session_id: str | None = None
    total_cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    permission_denials: list[str] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)
    api_error_status: int | None = None
    terminal_reason: str | None = None
    structured_output: Any = None


def _clean(text: str) -> str:
    """`text` with lone surrogates replaced, so it always re-encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_CHAR_RE.sub("\ufffd", text)
    return text


def _fix_surrogate_escape(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        slashes, pair = m.group(1), m.group(3)
        if len(slashes) % 2 == 1 and pair is not None:
            return m.group(0)  # a valid surrogate pair
        head = slashes[:-1] + "\\ufffd" if len(slashes) % 2 == 1 else f"{slashes}u{m.group(2)}"
        return head + ("\\ufffd" if pair is not None else "")
    slashes = m.group(4)
    if len(slashes) % 2 == 1:
        return slashes[:-1] + "\\ufffd"
    return m.group(0)


def _decode(text: str, default: Any = None) -> Any:
    """Decode one JSON document, or return `default` when it is not one."""
    if "\\u" in text or "\\U" in text:
        # msgspec rejects lone surrogate escapes outright; neutralise them first.
        text = _SURROGATE_ESCAPE_RE.sub(_fix_surrogate_escape, text)
    try:
        return _DECODER.decode(text)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return default


def _str(value: object) -> str | None:
    return _clean(value) if isinstance(value, str) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _denial_names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names = []
    for item in value:
        name = item.get("tool_name") if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip():
            names.append(_clean(name))
    return names


def _error_list(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    out = []
    for item in items:
        text = item.get("message") if isinstance(item, dict) else item
        if isinstance(text, str) and text.strip():
            out.append(_clean(text))
    return out


def _output_from(obj: Mapping[str, Any]) -> CliOutput:
    subtype = _str(obj.get("subtype"))
    is_error = obj.get("is_error")
    if not isinstance(is_error, bool):
        is_error = subtype is not None and subtype.startswith("error")
    return CliOutput(
        subtype=subtype,
        is_error=is_error,
        result=_str(obj.get("result")),
        session_id=_str(obj.get("session_id")),
        total_cost_usd=_float(obj.get("total_cost_usd")),
        duration_ms=_int(obj.get("duration_ms")),
        num_turns=_int(obj.get("num_turns")),
        permission_denials=_denial_names(obj.get("permission_denials")),
        errors=_error_list(obj.get("errors")),
        api_error_status=_int(obj.get("api_error_status")),
        terminal_reason=_str(obj.get("terminal_reason")),
        structured_output=obj.get("structured_output"),
    )


def _result_in(value: Any) -> CliOutput | None:
    """The result object in one decoded document (an object, or a --verbose array)."""
    if isinstance(value, dict):
        return _output_from(value) if value.get("type") == "result" else None
    if isinstance(value, list):
        for item in reversed(value):
            if isinstance(item, dict) and item.get("type") == "result":
                return _output_from(item)
    return None


def _lines_from_end(data: bytes) -> Iterator[bytes]:
    """Non-empty stripped lines, last first, without splitting a big buffer up front."""
    end = len(data)
    while end > 0:
        start = data.rfind(b"\n", 0, end) + 1
        line = data[start:end].strip()
        if line:
            yield line
        end = start - 1


def _result_in_line(line: bytes) -> CliOutput | None:
    if b"result" not in line:  # cheap filter before decoding
        return None
    return _result_in(_decode(line.decode("utf-8", "replace")))


def has_result(stdout: bytes) -> bool:
    """Whether `stdout` already holds a complete result object (json or stream-json)."""
    end = len(stdout)
    for _ in range(2):  # the result is the last line; allow one stray line after it
        while end > 0 and stdout[end - 1 : end].isspace():
            end -= 1
        if end <= 0:
            return False
        start = stdout.rfind(b"\n", 0, end) + 1
        if _result_in_line(stdout[start:end]) is not None:
            return True
        end = start
    return False


def parse_output(stdout: bytes) -> CliOutput | None:
    """The result object from json output (object or array) or stream-json (last result line)."""
    for line in _lines_from_end(stdout):
        found = _result_in_line(line)
        if found is not None:
            return found
    if stdout.count(b"\n", 0, len(stdout.rstrip())) > 0:  # e.g. pretty-printed JSON
        return _result_in(_decode(stdout.decode("utf-8", "replace")))
    return None


class StreamParser:
    """Incremental stream-json decoding: progress events out, session id and result kept."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.result: CliOutput | None = None

    def feed_line(self, line: bytes) -> list[ProgressEvent]:
        """Decode one stdout line; return its progress events (possibly none)."""
        line = line.strip()
        if not line.startswith(b"{") or line.startswith(b'{"type":"stream_event"'):
            return []
        msg = _decode(line.decode("utf-8", "replace"))
        if not isinstance(msg, dict):
            return []
        kind = msg.get("type")
        if self.session_id is None:
            self.session_id = _str(msg.get("session_id"))
        if kind == "assistant":
            return _assistant_events(msg.get("message"))
        if kind == "system" and msg.get("subtype") == "api_retry":
            return [ProgressEvent("retry", _retry_message(msg))]
        if kind == "result":
            self.result = _output_from(msg)
            if self.result.session_id:
                self.session_id = self.result.session_id
        return []


def _assistant_events(message: object) -> list[ProgressEvent]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    events = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text = _str(block.get("text"))
            if text and text.strip():
                events.append(ProgressEvent("text", _bound(text, _PROGRESS_CAP)))
        elif block.get("type") == "tool_use":
            name = _str(block.get("name")) or "?"
            events.append(ProgressEvent("tool_use", f"Using tool: {name[:_TOOL_NAME_CAP]}"))
    return events


def _retry_message(msg: Mapping[str, Any]) -> str:
    text = "API retry"
    attempt, most = _int(msg.get("attempt")), _int(msg.get("max_retries"))
    if attempt is not None:
        text += f" {attempt}" + (f"/{most}" if most is not None else "")
    delay = _float(msg.get("retry_delay_ms"))
    if delay is not None:
        text += f" in {delay / 1000:.1f}s"
    status = _int(msg.get("error_status"))
    if status is not None:
        text += f" (status {status})"
    return text


def parse_json_reply(text: str) -> tuple[bool, Any]:
    """(ok, value): `text` as one JSON value, tolerating ``` / ```json fences."""
    body = _clean(text).strip()
    candidates = [body]
    fence = _WHOLE_FENCE_RE.fullmatch(body)
    if fence:
        candidates.insert(0, fence.group(1))
    else:
        blocks = _INNER_FENCE_RE.findall(body)
        if len(blocks) == 1:  # prose around a single fenced block
            candidates.append(blocks[0])
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate:
            continue
        value = _decode(candidate, _NOT_JSON)
        if value is not _NOT_JSON:
            return True, value
    return False, None


# -- classification -------------------------------------------------------------

_USAGE_LIMIT_RE = re.compile(
    r"usage limit|rate[ _-]?limit|session limit|weekly limit|\b\d+[ -]hour limit"
    r"|limit reached|limit will reset|hit your (?:\w+ )?limit|out of (?:extra )?usage"
    r"|too many requests",
    re.IGNORECASE,
)
_USAGE_LIMIT_RESULT_RE = re.compile(  # a "successful" result that is only the limit notice
    r"(?:claude ai usage limit reached|you've hit your (?:\w+ )?limit|you have reached your"
    r" (?:\w+ )?limit|\d+[ -]hour limit reached)",
    re.IGNORECASE,
)
_EPOCH_RE = re.compile(r"\|\s*(\d{9,13})\b")
_RESET_RE = re.compile(
    r"\b(?:resets?|try again)\s+((?:at |on |in |after )?[^\n;|·∙]{1,80}?)"
    r"\s*(?:\.(?:\s|$)|[\n;|·∙]|$)",
    re.IGNORECASE,
)
_PERMISSION_RE = re.compile(
    r"permission(?:s)? (?:denied|required|was denied)|requires? (?:approval|permission)"
    r"|not (?:allowed|permitted) to use|was blocked|denied permission",
    re.IGNORECASE,
)


def not_found_result(agent: str, message: str, hint: str) -> DispatchResult:
    """A `not_found` failure (missing agent directory or claude executable)."""
    return DispatchResult(
        agent=agent, success=False, error=message, error_type="not_found", hint=hint
    )


def classify(
    *,
    agent: str,
    returncode: int | None,
    stdout: bytes,
    stderr: bytes,
    timed_out: bool,
    session_id: str | None,
    timeout_seconds: float | None = None,
    max_budget_usd: float | None = None,
    response_format: str = "",
) -> DispatchResult:
    """Turn one finished (or timed-out) run into a DispatchResult.

    `session_id` is the id the run was started with (pre-assigned or resumed);
    the CLI's own id wins when the output has one.
    """
    out = parse_output(stdout)
    err_tail = _stderr_tail(stderr)
    if out is None:
        if timed_out:
            return _timeout_result(agent, session_id, timeout_seconds)
        return _no_result(agent, returncode, stdout, err_tail, session_id, response_format)
    result = _from_output(agent, out, returncode, err_tail, session_id, max_budget_usd)
    if result.success and response_format == "json":
        ok, value = parse_json_reply(result.result)
        result.parsed_result = value if ok else out.structured_output
    if timed_out:
        secs = _fmt_seconds(timeout_seconds)
        _add_hint(
            result,
            f"The run finished right at the deadline{f' ({secs}s)' if secs else ''}; "
            + _raise_timeout_hint(agent),
        )
    return result


def _from_output(
    agent: str,
    out: CliOutput,
    returncode: int | None,
    err_tail: str,
    session_id: str | None,
    max_budget_usd: float | None,
) -> DispatchResult:
    sid = out.session_id or session_id
    res = DispatchResult(
        agent=agent,
        success=True,
        session_id=sid,
        cost_usd=out.total_cost_usd,
        duration_ms=out.duration_ms,
        num_turns=out.num_turns,
    )
    denied = _denied(out.permission_denials)
    if denied:
        res.denied_tools = denied
    failed = (
        out.is_error
        or out.result is None
        or (out.subtype or "").startswith("error")
        or _is_limit_notice(out.result)
    )
    if not failed:
        res.result = out.result or ""
        if denied:
            _add_hint(res, _denied_hint(agent, denied))
        if (
            max_budget_usd is not None
            and out.total_cost_usd is not None
            and out.total_cost_usd > max_budget_usd
        ):
            res.budget_exceeded = True
            _add_hint(
                res,
                f"This run cost ${out.total_cost_usd:.4f}, over the ${max_budget_usd:g} cap; "
                + _raise_budget_hint(agent),
            )
        return res

    res.success = False
    error = _error_text(out, err_tail, returncode)
    res.error = error
    res.error_type = _error_type(out, error, denied)
    if res.error_type == "budget":
        res.budget_exceeded = True
        _add_hint(res, _raise_budget_hint(agent) + _resume_hint(agent, sid, " Then resume: "))
    elif res.error_type == "permission":
        _add_hint(res, _denied_hint(agent, denied))
    elif res.error_type == "usage_limit":
        _add_hint(res, _usage_limit_hint(error, agent, sid))
    elif out.subtype == "error_max_turns":
        _add_hint(res, "The agent hit its turn limit." + _resume_hint(agent, sid, " Continue: "))
    return res


def _error_type(out: CliOutput, error: str, denied: list[str]) -> ErrorType:
    if out.subtype == "error_max_budget_usd":
        return "budget"
    if denied:
        return "permission"
    if out.api_error_status == 429 or _USAGE_LIMIT_RE.search(error):
        return "usage_limit"
    if _PERMISSION_RE.search(error):
        return "permission"
    return "cli_error"


def _is_limit_notice(text: str) -> bool:
    head = text.strip()
    return len(head) <= 300 and _USAGE_LIMIT_RESULT_RE.match(head) is not None


def _error_text(out: CliOutput, err_tail: str, returncode: int | None) -> str:
    if out.result and out.result.strip():
        text = out.result.strip()
        status = out.api_error_status
        if status is not None and str(status) not in text:
            text += f" (API status {status})"
    elif out.errors:
        text = "; ".join(e.strip() for e in out.errors)
    elif out.subtype and out.subtype != "success":
        text = out.subtype
    elif err_tail:
        text = err_tail
    else:
        text = f"no result from claude ({_describe_rc(returncode)})"
    return _bound(text, _ERROR_CAP)


def _no_result(
    agent: str,
    returncode: int | None,
    stdout: bytes,
    err_tail: str,
    session_id: str | None,
    response_format: str,
) -> DispatchResult:
    text = stdout[: _TEXT_CAP * 4].decode("utf-8", "replace").strip()
    is_text = bool(text) and not _looks_like_cli_json(text)
    if returncode == 0 and is_text:
        res = DispatchResult(
            agent=agent, success=True, result=_bound(text, _TEXT_CAP), session_id=session_id
        )
        if response_format == "json":
            ok, value = parse_json_reply(res.result)
            res.parsed_result = value if ok else None
        return res
    error = f"no result from claude ({_describe_rc(returncode)})"
    detail = err_tail or (_bound(text[-_STDERR_CAP:], _STDERR_CAP) if is_text else "")
    if detail:
        error += f": {detail}"
    res = DispatchResult(
        agent=agent, success=False, error=error, error_type="cli_error", session_id=session_id
    )
    if "no conversation found" in err_tail.lower():
        res.session_id = None
        res.hint = (
            "That session does not exist (or belongs to another directory). Start a new one: "
            f"dispatch_session(agent={_q(agent)}, task=...) without session_id."
        )
    elif returncode == 0 or (returncode is not None and returncode < 0) or returncode == 143:
        res.hint = "The run was interrupted before it produced a result." + _resume_hint(
            agent, session_id, " Retry, or continue it: "
        )
    return res


def _looks_like_cli_json(text: str) -> bool:
    """Whether `text` is CLI JSON output (a stream without its result line), not a reply."""
    first = text.split("\n", 1)[0].strip()
    if not first.startswith(("{", "[")):
        return False
    value = _decode(first, _NOT_JSON)
    if value is _NOT_JSON:  # cut short: CLI output if it has the CLI's keys
        return '"type"' in first or '"session_id"' in first
    if isinstance(value, list):
        return any(isinstance(v, dict) and "type" in v for v in value)
    return isinstance(value, dict) and "type" in value


def _timeout_result(
    agent: str, session_id: str | None, timeout_seconds: float | None
) -> DispatchResult:
    secs = _fmt_seconds(timeout_seconds)
    resume = _resume_hint(agent, session_id, "Resume it: ")
    more_time = _raise_timeout_hint(agent)
    hint = f"{resume} Or {more_time}" if resume else more_time[0].upper() + more_time[1:]
    return DispatchResult(
        agent=agent,
        success=False,
        error=f"timed out after {secs}s" if secs else "timed out",
        error_type="timeout",
        session_id=session_id,
        hint=hint,
    )


# -- hints and formatting -------------------------------------------------------


def _q(value: str) -> str:
    return msgspec.json.encode(_clean(value)).decode()


def _add_hint(res: DispatchResult, hint: str) -> None:
    res.hint = f"{res.hint} {hint}" if res.hint else hint


def _resume_hint(agent: str, session_id: str | None, prefix: str) -> str:
    if not session_id:
        return ""
    return (
        f"{prefix}dispatch_session(agent={_q(agent)}, session_id={_q(session_id)}, "
        'task="continue").'
    )


def _raise_timeout_hint(agent: str) -> str:
    return (
        f"give it more time with update_agent(name={_q(agent)}, timeout=N), "
        f"`agent-dispatch update {shlex.quote(agent)} --timeout N`, "
        "or timeout_seconds=N on the dispatch."
    )


def _raise_budget_hint(agent: str) -> str:
    return (
        f"Raise the cap with update_agent(name={_q(agent)}, max_budget_usd=N) or "
        f"`agent-dispatch update {shlex.quote(agent)} --max-budget-usd N`."
    )


def _denied_hint(agent: str, denied: list[str]) -> str:
    if not denied:
        return (
            "The agent lacked a permission. Allow the tool with "
            f"update_agent(name={_q(agent)}, allowed_tools=...) or set its permission_mode."
        )
    tools = ",".join(denied)
    return (
        f"Denied tools: {', '.join(denied)}. To allow them: "
        f"update_agent(name={_q(agent)}, allowed_tools={_q(tools)}) or "
        f"`agent-dispatch update {shlex.quote(agent)} --allowed-tools {shlex.quote(tools)}` "
        "(this replaces the agent's list; include tools it already allows)."
    )


def _usage_limit_hint(error: str, agent: str, session_id: str | None) -> str:
    when = _reset_time(error)
    head = (
        f"The Claude account hit its usage limit; it resets {when}. Retry after that"
        if when
        else "The Claude account hit its usage or rate limit. Wait for it to reset, then retry"
    )
    return head + (_resume_hint(agent, session_id, ", or continue: ") or ".")


def _reset_time(text: str) -> str | None:
    epoch = _EPOCH_RE.search(text)
    if epoch:
        seconds = int(epoch.group(1))
        if seconds > 10**11:  # milliseconds
            seconds //= 1000
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
        if moment is not None:
            return moment.strftime("at %Y-%m-%d %H:%M UTC")
    found = _RESET_RE.search(text)
    if found:
        when = found.group(1).strip().rstrip(".")
        return when or None
    return None


def _denied(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        cut = name[:_TOOL_NAME_CAP]
        if cut not in out:
            out.append(cut)
            if len(out) == _MAX_DENIED:
                break
    return out


def _stderr_tail(stderr: bytes) -> str:
    """The last meaningful stderr lines, bounded."""
    if not stderr:
        return ""
    text = _ANSI_RE.sub("", stderr[-8 * _STDERR_CAP :].decode("utf-8", "replace"))
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    tail = "\n".join(lines[-10:])
    return tail if len(tail) <= _STDERR_CAP else "…" + tail[-_STDERR_CAP:]


def _describe_rc(returncode: int | None) -> str:
    if returncode is None:
        return "exit code unknown"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    return f"{seconds:g}"


def _bound(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap] + "… [truncated]"
