"""Classifying one finished `claude -p` run into a DispatchResult (sans-IO).

Follows SPEC.md "Error text and type" and the output table of CLAUDE_CLI.md:
every error carries text, and actionable errors carry advice: prose and
structured remedies (agent_dispatch/remedies.py) that each face renders in its
own words. Nothing here names a tool call, a command or a Python call.
"""

from __future__ import annotations

import math
import re

from agent_dispatch.claude.output import (
    CliOutput,
    bound_text,
    decode_json,
    parse_json_reply,
    parse_output,
)
from agent_dispatch.claude.status import read_status
from agent_dispatch.claude.wording import Reading, is_limit_notice, reading, reset_time
from agent_dispatch.models import MAX_AGENT_TIMEOUT, MAX_TIMEOUT, DispatchResult, ErrorType
from agent_dispatch.remedies import (
    Advice,
    CallTimeout,
    Choice,
    NewSession,
    Part,
    ResumeSession,
    UpdateAgent,
    advice,
)

_TEXT_CAP = 1_000_000  # plain-text stdout kept as a result
_ERROR_CAP = 4000
_STDERR_CAP = 2000
_TOOL_NAME_CAP = 100
_MAX_DENIED = 10
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOT_JSON = object()


# -- classification -------------------------------------------------------------


def classify(
    *,
    agent: str,
    returncode: int | None,
    stdout: bytes,
    stderr: bytes,
    timed_out: bool,
    session_id: str | None,
    timeout_seconds: float | None = None,
    agent_timeout: float | None = None,
    max_budget_usd: float | None = None,
    response_format: str = "",
    stopped_after_result: bool = False,
    typical_seconds: float | None = None,
) -> DispatchResult:
    """Turn one finished (or timed-out) run into a DispatchResult.

    `timeout_seconds` is the deadline the run had; `agent_timeout` the agent's own,
    which a hint never suggests lowering; `typical_seconds` how long the agent's
    successful runs usually take (the p90 of its recent ones), which a hint to give
    it more time starts from. `stopped_after_result`: claude printed a
    complete result but did not exit, so it was stopped (at the deadline when
    `timed_out` too): the result stands, and more time would not have helped.

    `session_id` is the id the run was started with (pre-assigned or resumed);
    the CLI's own id wins when the output has one.

    The CLI's wording (usage limits, permissions, unknown sessions) is read the
    same on every stream: the JSON result, plain stdout, stderr.
    """
    out = parse_output(stdout)
    err_tail = _stderr_tail(stderr)
    if out is None:
        if timed_out:
            return _timeout_result(
                agent, session_id, timeout_seconds, agent_timeout, typical_seconds
            )
        return _no_result(agent, returncode, stdout, err_tail, session_id, response_format)
    result = _from_output(agent, out, returncode, err_tail, session_id, max_budget_usd)
    if result.success and response_format == "json":
        ok, value = parse_json_reply(result.result)
        result.parsed_result = value if ok else out.structured_output
    secs = _fmt_seconds(timeout_seconds)
    at = f" ({secs}s)" if secs else ""
    if stopped_after_result:
        _add_hint(
            result,
            advice(
                f"The result was complete{f' before the deadline{at}' if timed_out else ''}; "
                "claude did not exit after printing it, so the finished process was stopped."
            ),
        )
    elif timed_out:
        _add_hint(
            result,
            advice(
                f"The run finished right at the deadline{at}; ",
                *_raise_timeout_hint(agent, timeout_seconds, agent_timeout, typical_seconds),
            ),
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
        or is_limit_notice(out.result)
    )
    if not failed:
        read_status(res, out.result or "")
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
                advice(
                    f"This run cost ${out.total_cost_usd:.4f}, over the ${max_budget_usd:g} cap. ",
                    *_raise_budget_hint(agent, max_budget_usd),
                ),
            )
        return res

    res.success = False
    error = _error_text(out, err_tail, returncode)
    res.error = error
    said = reading([error, err_tail])
    res.error_type = _error_type(said, out, denied)
    if res.error_type == "budget":
        res.budget_exceeded = True
        resume = _resume_hint(agent, sid, " Then resume: ")
        _add_hint(res, advice(*_raise_budget_hint(agent, max_budget_usd), *resume))
    elif not _explain(res, said, denied, sid):
        _explain_stop(res, out, sid)
    return res


def _explain_stop(res: DispatchResult, out: CliOutput, session_id: str | None) -> None:
    """Hint at a failure by how the result object says the run stopped."""
    if out.subtype == "error_max_turns":
        resume = _resume_hint(res.agent, session_id, " Continue: ")
        _add_hint(res, advice("The agent hit its turn limit.", *resume))
    elif out.api_error_status in (401, 403):
        _add_hint(
            res,
            advice(
                "The API rejected claude's credentials: log in with `claude` as the user the "
                "server runs as, or set ANTHROPIC_API_KEY in the server's environment; then retry."
            ),
        )
    elif out.api_error_status in (500, 502, 503, 529):
        _add_hint(
            res, advice("The API had a temporary problem; retrying the same call usually works.")
        )


def _error_type(
    said: Reading | None, out: CliOutput | None = None, denied: list[str] | None = None
) -> ErrorType:
    """The failure's type: what the result object says first, then the wording."""
    if out is not None and out.subtype == "error_max_budget_usd":
        return "budget"
    if denied:
        return "permission"
    if out is not None and out.api_error_status == 429:
        return "usage_limit"
    if said is not None and said.condition != "no_session":
        return said.condition
    return "cli_error"


def _explain(
    res: DispatchResult, said: Reading | None, denied: list[str], session_id: str | None
) -> bool:
    """Hint at a failure by its type and wording (both output paths); False when
    neither says anything this knows. `session_id`: a session to continue, if any."""
    if res.error_type == "permission":
        _add_hint(res, _denied_hint(res.agent, denied))
    elif res.error_type == "usage_limit":
        notice = said.text if said is not None and said.condition == "usage_limit" else ""
        _add_hint(res, _usage_limit_hint(notice or res.error or "", res.agent, session_id))
    elif said is not None and said.condition == "no_session":
        res.session_id = None
        _add_hint(
            res,
            advice(
                "That session does not exist (or belongs to another directory). Start a new one: ",
                NewSession(agent=res.agent),
                ".",
            ),
        )
    else:
        return False
    return True


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
    return bound_text(text, _ERROR_CAP)


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
    if returncode == 0 and is_text and not is_limit_notice(text):
        res = DispatchResult(agent=agent, success=True, session_id=session_id)
        read_status(res, bound_text(text, _TEXT_CAP))
        if response_format == "json":
            ok, value = parse_json_reply(res.result)
            res.parsed_result = value if ok else None
        return res
    error = f"no result from claude ({_describe_rc(returncode)})"
    out_tail = bound_text(text[-_STDERR_CAP:], _STDERR_CAP) if is_text else ""
    said = reading([err_tail, out_tail])
    detail = said.text if said is not None else err_tail or out_tail  # the stream that explains
    if detail:
        error += f": {detail}"
    res = DispatchResult(
        agent=agent, success=False, error=error, error_type=_error_type(said), session_id=session_id
    )
    # No result, so no session known to hold the task: a usage limit says "retry", not "continue".
    interrupted = (
        returncode == 0 or (returncode is not None and returncode < 0) or returncode == 143
    )
    if not _explain(res, said, [], None) and interrupted:
        res.advice = advice(
            "The run was interrupted before it produced a result.",
            *_resume_hint(agent, session_id, " Retry, or continue it: "),
        )
    return res


def _looks_like_cli_json(text: str) -> bool:
    """Whether `text` is CLI JSON output (a stream without its result line), not a reply."""
    first = text.split("\n", 1)[0].strip()
    if not first.startswith(("{", "[")):
        return False
    value = decode_json(first, _NOT_JSON)
    if value is _NOT_JSON:  # cut short: CLI output if it has the CLI's keys
        return '"type"' in first or '"session_id"' in first
    if isinstance(value, list):
        return any(isinstance(v, dict) and "type" in v for v in value)
    return isinstance(value, dict) and "type" in value


def _timeout_result(
    agent: str,
    session_id: str | None,
    timeout_seconds: float | None,
    agent_timeout: float | None,
    typical_seconds: float | None,
) -> DispatchResult:
    secs = _fmt_seconds(timeout_seconds)
    resume = _resume_hint(agent, session_id, "Resume it: ")
    more_time = _raise_timeout_hint(
        agent, timeout_seconds, agent_timeout, typical_seconds, capital=not resume
    )
    return DispatchResult(
        agent=agent,
        success=False,
        error=f"timed out after {secs}s" if secs else "timed out",
        error_type="timeout",
        session_id=session_id,
        advice=advice(*resume, " Or " if resume else "", *more_time),
    )


# -- hints and formatting -------------------------------------------------------


def _add_hint(res: DispatchResult, more: Advice) -> None:
    res.advice = res.advice + more if res.advice else more


def _resume_hint(agent: str, session_id: str | None, prefix: str) -> tuple[Part, ...]:
    if not session_id:
        return ()
    return (prefix, ResumeSession(agent=agent, session_id=session_id), ".")


def _raise_timeout_hint(
    agent: str,
    ran_out: float | None,
    agent_timeout: float | None,
    typical_seconds: float | None = None,
    *,
    capital: bool = False,
) -> tuple[Part, ...]:
    store, call = timeout_fixes(ran_out, agent_timeout, typical_seconds)
    options: list[UpdateAgent | CallTimeout] = []
    if store is not None:
        options.append(UpdateAgent(agent=agent, field="timeout", value=store))
    if call is not None:
        options.append(CallTimeout(agent=agent, seconds=call))
    if not options:
        return (
            ("It" if capital else "it")
            + " already had the longest timeout allowed: split the task into smaller ones.",
        )
    parts: list[Part] = [("Give" if capital else "give") + " it more time with "]
    parts.append(Choice(options=tuple(options)))
    if store is None and agent_timeout is not None:
        parts += [
            f" (the agent's own timeout is {agent_timeout:g}s: ",
            CallTimeout(agent=agent, seconds=0),
            " uses it)",
        ]
    return (*parts, ".")


def _raise_budget_hint(agent: str, max_budget_usd: float | None) -> tuple[Part, ...]:
    more = UpdateAgent(agent=agent, field="max_budget_usd", value=more_budget(max_budget_usd))
    return ("Raise the cap with ", Choice(options=(more,)), ".")


def more_time(
    seconds: float | None, *, cap: float = MAX_TIMEOUT, typical: float | None = None
) -> int:
    """The agent's typical duration (`typical`, the p90 of its successful runs) rounded
    up to a whole minute when that is more than the timeout that ran out; else twice
    that timeout; 60..cap s (600 when nothing is known)."""
    known = seconds is not None and math.isfinite(seconds) and seconds > 0
    if typical is not None and math.isfinite(typical) and typical > 0:
        minutes = 60.0 * math.ceil(typical / 60)
        if not known or minutes > (seconds or 0):
            return int(min(cap, max(60.0, minutes)))
    if not known or seconds is None:
        return 600
    return int(min(cap, max(60.0, math.ceil(seconds * 2))))


def timeout_fixes(
    ran_out: float | None, agent_timeout: float | None, typical: float | None = None
) -> tuple[int | None, int | None]:
    """(an agent timeout to store, a per-call timeout_seconds) that give a run more time
    than `ran_out`; None where a value would not: never lower the agent's own timeout
    (a short per-call deadline ran out), never past the maxima (7200 s per call, a week
    per agent)."""
    store: int | None = more_time(ran_out, cap=MAX_AGENT_TIMEOUT, typical=typical)
    if store is not None and (
        (agent_timeout is not None and store <= agent_timeout)
        or (ran_out is not None and store <= ran_out)
    ):
        store = None
    call: int | None = more_time(ran_out, typical=typical)
    if ran_out is not None and call is not None and call <= ran_out:
        call = None
    return store, call


def more_budget(cap: float | None) -> float:
    """The cost cap a hint suggests: twice the one reached, in cents ($1 when unknown)."""
    if cap is None or not math.isfinite(cap) or cap <= 0:
        return 1.0
    return max(round(cap * 2, 2), 0.01)


def _denied_hint(agent: str, denied: list[str]) -> Advice:
    if not denied:
        return advice(
            "The agent lacked a permission. Allow the tool with ",
            UpdateAgent(agent=agent, field="allowed_tools"),
            " or set its permission_mode.",
        )
    allow = UpdateAgent(agent=agent, field="allowed_tools", value=",".join(denied))
    return advice(
        f"Denied tools: {', '.join(denied)}. To allow them: ",
        Choice(options=(allow,)),
        " (this replaces the agent's list; include tools it already allows).",
    )


def _usage_limit_hint(notice: str, agent: str, session_id: str | None) -> Advice:
    when = reset_time(notice)
    head = (
        f"The Claude account hit its usage limit; it resets {when}. Retry the same call after that"
        if when
        else "The Claude account hit its usage or rate limit. Wait for it to reset, then retry"
    )
    return advice(head, *(_resume_hint(agent, session_id, ", or continue: ") or (".",)))


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
