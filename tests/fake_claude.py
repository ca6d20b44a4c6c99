"""A fake `claude` CLI for process, dispatcher and server tests (stdlib only).

Run it through ``tests/bin/claude`` (an absolute path, or ``tests/bin`` first
on PATH): the wrapper execs ``$FAKE_CLAUDE_PYTHON -S tests/fake_claude.py``
(falling back to the repo's .venv python, then python3), so the fake's pid is
the pid the caller spawned.

Command line: the real CLI's shape. ``-p`` is required; known flags take their
values as the real CLI does (``--flag value`` or ``--flag=value``; the
variadic ``--allowedTools``/``--disallowedTools``/``--tools``/``--add-dir``/
``--mcp-config`` swallow following non-flag words, prompt included, like the
real one); everything after ``--`` is the prompt. Errors mimic the real CLI:
rc 1 and one stderr line for an unknown option, a missing value, a bad
``--output-format`` or ``--permission-mode``, a non-UUID ``--session-id``,
``--max-budget-usd`` <= 0, no prompt, and stream-json without ``--verbose``
(``Error: When using --print, --output-format=stream-json requires --verbose``).

Output: ``json`` prints one result object line (``--verbose`` makes it a
one-line array of every message, as the real CLI does); ``stream-json``
prints a system init line, api_retry lines, one assistant line per content
block, user tool_result lines, then the result line; ``text`` prints the
result text. ``session_id`` is the ``--session-id`` or ``--resume`` value
(any id is accepted), else a fresh UUID.

Directives: prompt lines of the form ``@fake KEY`` or ``@fake KEY=VALUE``
(one per line, leading spaces allowed; VALUE is the rest of the line, spaces
included). ``$FAKE_CLAUDE_DEFAULTS`` may hold more such lines (the prompt's
win). Unknown keys or bad values exit 2 with a message on stderr.

  reply=TEXT                 the result text (``\\n`` becomes a newline); default
                             ``fake reply to: <first non-directive prompt line, 80 chars>``
                             (``reply=Half.\\nSTATUS: partial why`` ends it with the
                             STATUS line agent-dispatch reads as the outcome)
  sleep=SECONDS              wait before answering (after the .started marker)
  wait_file=PATH             block until PATH exists (before answering)
  exit=N                     exit status (default: 0, or 1 for the error cases below)
  stderr=TEXT                write a line to stderr (repeatable)
  stderr_flood=BYTES         write BYTES to stderr before the answer
  stdout_flood=BYTES         write a BYTES-long non-JSON line to stdout before the answer
  grandchild=SECONDS         fork a grandchild (same group, stdio on /dev/null) that sleeps
  grandchild_hold_stdout=SECONDS   ... one that keeps stdout and stderr open while it sleeps
  grandchild_hold_stderr=SECONDS   ... one that keeps only stderr open
  escapee=SECONDS            ... one that calls setsid (leaves the group) and keeps stdout open
  ignore_sigterm             the leader ignores SIGTERM (grandchildren do not)
  tool_use=NAME              a tool call that runs (stream: tool_use block + user tool_result)
  deny=NAME                  a tool call that is denied: listed in permission_denials
  retry[=N]                  stream: N (default 1) system api_retry lines
  api_error=STATUS           rc 1, subtype success, is_error, api_error_status,
                             result "API Error: STATUS ..."
  budget_stop                rc 1, error_max_budget_usd, errors, terminal_reason budget_exhausted
  max_turns                  rc 1, error_max_turns, errors
  no_session                 rc 1, stderr ``No conversation found with session ID: <id>``
  cost=USD                   total_cost_usd (default 0.00014)
  structured=JSON            result gains structured_output (and result is the JSON text)
  no_result                  print everything but the result line (rc 0 unless exit=)
  hang_after_result          print the result, then never exit (a CLI hung on exit)
  raw=TEXT                   print TEXT as a stdout line instead of all normal output (repeatable)

Signals: SIGTERM exits 143 and SIGINT exits 0 without a result line, as the
real CLI does (unless ``ignore_sigterm``). stdin: when it is a pipe or a file
the fake, like the real CLI, waits up to 3 s for it and appends what it reads
to the prompt.

Recording: with ``$FAKE_CLAUDE_LOG`` set to a directory, each run writes
``<dir>/<pid>.json`` atomically (see ``_record`` for the fields: pid, pgid,
argv, cwd, prompt, depth, stdin kind, start, grandchildren, ...) then creates
``<dir>/<pid>.started`` just before it blocks or answers, and rewrites the
record with ``end`` ({rc, time, signal}) when it exits (not when SIGKILLed).

Test helpers (import from tests.fake_claude): CLAUDE_BIN, BIN_DIR,
fake_env, read_runs, read_run, pid_alive, wait_path, wait_started, wait_dead.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time

TYPE_CHECKING = False  # the fake starts on every run: don't import typing for annotations
if TYPE_CHECKING:
    from typing import Any

    Run = dict[str, Any]

# --- helpers for tests ------------------------------------------------------------

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = os.path.join(TESTS_DIR, "bin")
CLAUDE_BIN = os.path.join(BIN_DIR, "claude")


def fake_env(
    log_dir: str | os.PathLike[str] | None = None,
    *,
    base: dict[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """An environment whose `claude` is the fake (tests/bin first on PATH), run by this python."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = BIN_DIR + os.pathsep + env.get("PATH", os.defpath)
    env["FAKE_CLAUDE_PYTHON"] = sys.executable
    if log_dir is not None:
        env["FAKE_CLAUDE_LOG"] = os.fspath(log_dir)
    env.update(extra)
    return env


def read_runs(log_dir: str | os.PathLike[str]) -> list[Run]:
    """Every recorded run in ``log_dir``, oldest first."""
    runs = []
    for name in os.listdir(log_dir):
        if name.endswith(".json") and not name.startswith("."):
            with open(os.path.join(log_dir, name), encoding="utf-8") as f:
                runs.append(json.load(f))
    return sorted(runs, key=lambda r: (r["start"], r["pid"]))


def read_run(log_dir: str | os.PathLike[str], pid: int) -> Run:
    with open(os.path.join(log_dir, f"{pid}.json"), encoding="utf-8") as f:
        run: Run = json.load(f)
    return run


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie (exited, not yet reaped) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    state = data[data.rindex(b")") + 2 :][:1]
    return state not in (b"Z", b"X", b"x")


async def wait_path(path: str | os.PathLike[str]) -> None:
    """Wait until ``path`` exists. Callers bound it with ``trio.fail_after``."""
    import trio

    while not os.path.exists(path):
        await trio.sleep(0.01)  # an external process: no event to wait on


async def wait_started(log_dir: str | os.PathLike[str], count: int = 1) -> list[Run]:
    """Wait until ``count`` runs have started (and blocked or answered); return their records."""
    import trio

    while True:
        pids = [int(n.split(".")[0]) for n in os.listdir(log_dir) if n.endswith(".started")]
        if len(pids) >= count:
            return sorted((read_run(log_dir, p) for p in pids), key=lambda r: r["start"])
        await trio.sleep(0.01)


async def wait_dead(*pids: int) -> None:
    """Wait until none of ``pids`` is alive. Callers bound it with ``trio.fail_after``."""
    import trio

    while any(pid_alive(p) for p in pids):
        await trio.sleep(0.01)


# --- the fake CLI -------------------------------------------------------------------

STREAM_NEEDS_VERBOSE = "Error: When using --print, --output-format=stream-json requires --verbose"
NO_INPUT = (
    "Error: Input must be provided either through stdin or as a prompt argument when using --print"
)
PERMISSION_MODES = (
    "acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "manual", "plan",
)  # fmt: skip
MODEL = "claude-fake-1"
TOOLS = ["Task", "Bash", "Edit", "Glob", "Grep", "Read", "WebFetch", "Write"]

_BOOL_FLAGS = {
    "--print", "--verbose", "--fork-session", "--no-session-persistence",
    "--strict-mcp-config", "--dangerously-skip-permissions", "--include-partial-messages",
    "--continue",
}  # fmt: skip
_VALUE_FLAGS = {
    "--output-format", "--input-format", "--session-id", "--resume", "--model",
    "--permission-mode", "--max-budget-usd", "--max-turns", "--append-system-prompt",
    "--system-prompt", "--json-schema", "--settings", "--setting-sources", "--fallback-model",
}  # fmt: skip
_VARIADIC_FLAGS = {"--allowedTools", "--disallowedTools", "--tools", "--add-dir", "--mcp-config"}
_ALIASES = {
    "-p": "--print",
    "-r": "--resume",
    "-c": "--continue",
    "--allowed-tools": "--allowedTools",
    "--disallowed-tools": "--disallowedTools",
}
_DIRECTIVE_FLAGS = {
    "ignore_sigterm", "budget_stop", "max_turns", "no_session", "no_result",
    "hang_after_result", "retry",
}  # fmt: skip
_DIRECTIVE_REPEATABLE = {"stderr", "tool_use", "deny", "raw"}
_DIRECTIVE_FLOATS = {
    "sleep", "grandchild", "grandchild_hold_stdout", "grandchild_hold_stderr", "escapee", "cost",
}  # fmt: skip
_DIRECTIVE_INTS = {"exit", "stderr_flood", "stdout_flood", "api_error", "retry"}
_DIRECTIVE_TEXT = {"reply", "wait_file", "structured"}


class _Usage(Exception):
    """A command-line error: rc 1 and one stderr line, like the real CLI."""


class _BadDirective(Exception):
    """A test bug: rc 2."""


def _parse_argv(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional += args[i:]
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = _ALIASES.get(name, name)
        if name in _BOOL_FLAGS and not eq:
            opts[name] = True
        elif name in _VALUE_FLAGS:
            if not eq:
                if i >= len(args):
                    raise _Usage(f"error: option '{name} <value>' argument missing")
                value = args[i]
                i += 1
            opts[name] = value
        elif name in _VARIADIC_FLAGS:
            values = [value] if eq else []
            while not eq and i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
            if not values:
                raise _Usage(f"error: option '{name} <values...>' argument missing")
            opts.setdefault(name, []).extend(values)
        else:
            raise _Usage(f"error: unknown option '{arg}'")
    return opts, positional


def _validate(opts: dict[str, Any], prompt: str) -> None:
    if not opts.get("--print"):
        raise _Usage("fake claude: only --print mode is supported")
    fmt = opts.get("--output-format", "text")
    if fmt not in ("text", "json", "stream-json"):
        raise _Usage(
            f"error: option '--output-format <format>' argument '{fmt}' is invalid. "
            "Allowed choices are text, json, stream-json."
        )
    if fmt == "stream-json" and not opts.get("--verbose"):
        raise _Usage(STREAM_NEEDS_VERBOSE)
    mode = opts.get("--permission-mode")
    if mode is not None and mode not in PERMISSION_MODES:
        raise _Usage(
            f"error: option '--permission-mode <mode>' argument '{mode}' is invalid. "
            f"Allowed choices are {', '.join(PERMISSION_MODES)}."
        )
    sid = opts.get("--session-id")
    if sid is not None and not _is_uuid(sid):
        raise _Usage("Error: Invalid session ID. Must be a valid UUID.")
    if sid is not None and "--resume" in opts and not opts.get("--fork-session"):
        raise _Usage(
            "Error: --session-id can only be used with --continue or --resume "
            "if --fork-session is also specified."
        )
    budget = opts.get("--max-budget-usd")
    if budget is not None:
        try:
            ok = float(budget) > 0
        except ValueError:
            ok = False
        if not ok:
            raise _Usage("Error: --max-budget-usd must be a positive number")
    if not prompt.strip():
        raise _Usage(NO_INPUT)


def _is_uuid(text: str) -> bool:
    parts = text.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12]:
        return False
    return all(c in "0123456789abcdefABCDEF" for p in parts for c in p)


def _new_uuid() -> str:
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _parse_directives(text: str, into: dict[str, Any]) -> None:
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line.startswith("@fake ") and line != "@fake":
            continue
        key, eq, value = line[len("@fake") :].strip().partition("=")
        key = key.strip()
        try:
            if key in _DIRECTIVE_REPEATABLE and eq:
                into.setdefault(key, []).append(value)
            elif key in _DIRECTIVE_FLAGS and not eq:
                into[key] = 1 if key == "retry" else True
            elif key in _DIRECTIVE_INTS and eq:
                into[key] = int(value)
            elif key in _DIRECTIVE_FLOATS and eq:
                into[key] = float(value)
            elif key in _DIRECTIVE_TEXT and eq:
                into[key] = value
            else:
                raise _BadDirective(f"fake claude: bad directive {line!r}")
        except ValueError as exc:
            raise _BadDirective(f"fake claude: bad directive {line!r}: {exc}") from None


def _default_reply(prompt: str) -> str:
    for raw_line in prompt.splitlines():
        line = raw_line.strip()
        if line and not line.startswith("@fake"):
            return f"fake reply to: {line[:80]}"
    return "fake reply to: "


def _stdin_kind() -> str:
    try:
        st = os.fstat(0)
    except OSError:
        return "closed"
    if stat.S_ISCHR(st.st_mode):
        try:
            null = os.stat(os.devnull)
        except OSError:
            null = None
        if null is not None and st.st_rdev == null.st_rdev:
            return "devnull"
        return "tty" if os.isatty(0) else "chardev"
    if stat.S_ISFIFO(st.st_mode):
        return "pipe"
    if stat.S_ISSOCK(st.st_mode):
        return "socket"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "other"


def _read_stdin(kind: str) -> str:
    """Like the real CLI: a non-terminal stdin is read (up to 3 s) and appended to the prompt."""
    if kind not in ("pipe", "file", "socket"):
        return ""
    import select

    chunks: list[bytes] = []
    end = time.monotonic() + 3.0
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([0], [], [], left)
        if not ready:
            break
        chunk = os.read(0, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


class _Recorder:
    def __init__(self, log_dir: str | None, record: Run) -> None:
        self.log_dir = log_dir
        self.record = record

    def write(self) -> None:
        if self.log_dir is None:
            return
        pid = self.record["pid"]
        tmp = os.path.join(self.log_dir, f".{pid}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.record, f)
        os.replace(tmp, os.path.join(self.log_dir, f"{pid}.json"))

    def started(self) -> None:
        if self.log_dir is None:
            return
        path = os.path.join(self.log_dir, f"{self.record['pid']}.started")
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))

    def end(self, rc: int, sig: str | None = None) -> None:
        self.record["end"] = {"rc": rc, "time": time.time(), "signal": sig}
        self.write()


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _out(obj: Any) -> None:
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    _write(1, text.encode() + b"\n")


def _err(text: str) -> None:
    _write(2, text.encode() + b"\n")


def _fork_sleeper(seconds: float, *, keep_stdout: bool, keep_stderr: bool, setsid: bool) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:  # the grandchild
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if setsid:
            os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        if not keep_stdout:
            os.dup2(null, 1)
        if not keep_stderr:
            os.dup2(null, 2)
        os.close(null)
        time.sleep(seconds)
    finally:
        os._exit(0)


def _usage_block(turns: int, cost: float) -> tuple[dict[str, Any], dict[str, Any]]:
    usage = {
        "input_tokens": 10 * turns,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 5 * turns,
        "service_tier": "standard",
    }
    model_usage = {
        MODEL: {
            "inputTokens": 10 * turns,
            "outputTokens": 5 * turns,
            "cacheReadInputTokens": 0,
            "cacheCreationInputTokens": 0,
            "webSearchRequests": 0,
            "costUSD": cost,
            "contextWindow": 200000,
        }
    }
    return usage, model_usage


def _assistant(block: dict[str, Any], session_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "assistant",
        "message": {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [block],
            "stop_reason": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
        "parent_tool_use_id": None,
        "session_id": session_id,
        "uuid": _new_uuid(),
        **extra,
    }


def _tool_result(tool_id: str, content: str, is_error: bool, session_id: str) -> dict[str, Any]:
    block: dict[str, Any] = {
        "tool_use_id": tool_id,
        "type": "tool_result",
        "content": content,
        "is_error": is_error,
    }
    return {
        "type": "user",
        "message": {"role": "user", "content": [block]},
        "parent_tool_use_id": None,
        "session_id": session_id,
        "uuid": _new_uuid(),
    }


def _conversation(
    d: dict[str, Any], opts: dict[str, Any], session_id: str, prompt: str, cwd: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int]:
    """Every message the run prints (stream order), the result object, and the exit status."""
    messages: list[dict[str, Any]] = [
        {
            "type": "system",
            "subtype": "init",
            "cwd": cwd,
            "session_id": session_id,
            "tools": TOOLS,
            "mcp_servers": [],
            "model": opts.get("--model", MODEL),
            "permissionMode": opts.get("--permission-mode", "default"),
            "apiKeySource": "none",
            "claude_code_version": "0.0.0-fake",
            "uuid": _new_uuid(),
        }
    ]
    for attempt in range(1, d.get("retry", 0) + 1):
        messages.append(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": attempt,
                "max_retries": d["retry"],
                "retry_delay_ms": 500 * attempt,
                "error_status": 500,
                "error": "server_error",
                "session_id": session_id,
                "uuid": _new_uuid(),
            }
        )
    turns = 1
    denials: list[dict[str, Any]] = []
    tools = [(name, False) for name in d.get("tool_use", [])]
    tools += [(name, True) for name in d.get("deny", [])]
    for n, (name, denied) in enumerate(tools, 1):
        tool_id = f"toolu_fake_{n}"
        tool_input = {"command": "echo fake", "description": "A fake tool call"}
        messages.append(_assistant({"type": "text", "text": f"Using {name}."}, session_id))
        messages.append(
            _assistant(
                {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input},
                session_id,
            )
        )
        if denied:
            text = f"Claude requested permissions to use {name}, but you haven't granted it yet."
            denials.append({"tool_name": name, "tool_use_id": tool_id, "tool_input": tool_input})
        else:
            text = "fake"
        messages.append(_tool_result(tool_id, text, denied, session_id))
        turns += 1

    cost = d.get("cost", 0.00014)
    reply = d.get("reply", _default_reply(prompt)).replace("\\n", "\n")
    result: dict[str, Any] = {
        "subtype": "success",
        "is_error": False,
        "duration_ms": 12,
        "duration_api_ms": 10,
        "num_turns": turns,
        "session_id": session_id,
        "stop_reason": "end_turn",
        "terminal_reason": "completed",
        "permission_denials": denials,
        "api_error_status": None,
        "uuid": _new_uuid(),
    }
    rc = 0
    if "api_error" in d:
        status = d["api_error"]
        reply = f"API Error: {status} fake API error. This is a fake; try again in a moment."
        messages.append(
            _assistant(
                {"type": "text", "text": reply},
                session_id,
                error="server_error",
                is_api_error_message=True,
                api_error_status=status,
            )
        )
        cost = d.get("cost", 0)
        result.update(
            is_error=True,
            result=reply,
            api_error_status=status,
            terminal_reason="api_error",
            stop_reason="stop_sequence",
        )
        rc = 1
    elif d.get("budget_stop"):
        budget = opts.get("--max-budget-usd", "0")
        cost = d.get("cost", float(budget) * 2 if float(budget) > 0 else 9.0)
        result.update(
            subtype="error_max_budget_usd",
            is_error=True,
            errors=[f"Reached maximum budget (${budget})"],
            terminal_reason="budget_exhausted",
            stop_reason="tool_use",
        )
        rc = 1
    elif d.get("max_turns"):
        limit = opts.get("--max-turns", "1")
        result.update(
            subtype="error_max_turns",
            is_error=True,
            errors=[f"Reached maximum number of turns ({limit})"],
            terminal_reason="max_turns",
            stop_reason="tool_use",
        )
        rc = 1
    else:
        if "structured" in d:
            reply = d["structured"]
            result["structured_output"] = json.loads(reply)
        messages.append(_assistant({"type": "text", "text": reply}, session_id))
        result["result"] = reply
    usage, model_usage = _usage_block(turns, cost)
    result.update(total_cost_usd=cost, usage=usage, modelUsage=model_usage, type="result")
    if d.get("no_result"):
        return messages, None, d.get("exit", 0)
    messages.append(result)
    return messages, result, d.get("exit", rc)


def main(args: list[str]) -> int:
    log_dir = os.environ.get("FAKE_CLAUDE_LOG") or None
    stdin = _stdin_kind()
    record: Run = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "argv": args,
        "cwd": os.getcwd(),
        "stdin": stdin,
        "depth": os.environ.get("AGENT_DISPATCH_DEPTH"),
        "env": {
            k: os.environ.get(k)
            for k in (
                "AGENT_DISPATCH_DEPTH",
                "CLAUDECODE",
                "CLAUDE_CODE_ENTRYPOINT",
                "CLAUDE_CODE_SSE_PORT",
            )
        },
        "start": time.time(),
        "prompt": None,
        "grandchildren": [],
        "end": None,
    }
    rec = _Recorder(log_dir, record)

    def on_signal(signum: int, frame: object) -> None:
        rc = 143 if signum == signal.SIGTERM else 0
        rec.end(rc, signal.Signals(signum).name)
        os._exit(rc)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        opts, positional = _parse_argv(args)
        prompt = " ".join(positional)
        piped = _read_stdin(stdin)
        if piped:
            prompt = f"{prompt}\n{piped}" if prompt else piped
            record["stdin_bytes"] = len(piped)
        record["prompt"] = prompt
        _validate(opts, prompt)
        directives: dict[str, Any] = {}
        _parse_directives(os.environ.get("FAKE_CLAUDE_DEFAULTS", ""), directives)
        _parse_directives(prompt, directives)
    except _Usage as exc:
        _err(str(exc))
        rec.end(1)
        return 1
    except _BadDirective as exc:
        _err(str(exc))
        rec.end(2)
        return 2
    return _run(opts, directives, prompt, rec)


def _run(opts: dict[str, Any], d: dict[str, Any], prompt: str, rec: _Recorder) -> int:
    record = rec.record
    fmt = opts.get("--output-format", "text")
    session_id = opts.get("--session-id") or opts.get("--resume") or _new_uuid()
    if opts.get("--fork-session") and "--resume" in opts and "--session-id" not in opts:
        session_id = _new_uuid()
    record.update(
        directives=d,
        output_format=fmt,
        session_id=session_id,
        resume=opts.get("--resume"),
        model=opts.get("--model"),
        permission_mode=opts.get("--permission-mode"),
        allowed_tools=opts.get("--allowedTools"),
        disallowed_tools=opts.get("--disallowedTools"),
        max_budget_usd=opts.get("--max-budget-usd"),
        append_system_prompt=opts.get("--append-system-prompt"),
    )
    if d.get("no_session") and "--resume" in opts:
        _err(f"No conversation found with session ID: {opts['--resume']}")
        rec.end(1)
        return 1

    sleepers = [
        ("grandchild", False, False, False),
        ("grandchild_hold_stdout", True, True, False),
        ("grandchild_hold_stderr", False, True, False),
        ("escapee", True, True, True),
    ]
    for key, keep_out, keep_err, setsid in sleepers:
        if key in d:
            pid = _fork_sleeper(d[key], keep_stdout=keep_out, keep_stderr=keep_err, setsid=setsid)
            record["grandchildren"].append(pid)
    if d.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    messages, result, rc = _conversation(d, opts, session_id, prompt, record["cwd"])
    raw = d.get("raw")
    stream = fmt == "stream-json" and raw is None
    if stream:
        _out(messages[0])  # init comes first, before any waiting
    rec.write()
    rec.started()

    if "sleep" in d:
        time.sleep(d["sleep"])
    if "wait_file" in d:
        while not os.path.exists(d["wait_file"]):
            time.sleep(0.01)
    for line in d.get("stderr", []):
        _err(line)
    if d.get("stderr_flood"):
        _write(2, b"e" * (d["stderr_flood"] - 1) + b"\n")
    if d.get("stdout_flood"):
        _write(1, b"x" * (d["stdout_flood"] - 1) + b"\n")

    if raw is not None:
        for line in raw:
            _out(line)
        rc = d.get("exit", 0)
    elif stream:
        for message in messages[1:]:
            _out(message)
    elif fmt == "json" and opts.get("--verbose"):
        _out(messages)
    elif fmt == "json":
        if result is not None:
            _out(result)
    elif result is not None:
        _out(str(result.get("result") or "; ".join(result.get("errors", []))))

    if d.get("hang_after_result"):
        while True:
            time.sleep(3600)
    rec.end(rc)
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        os._exit(141)
