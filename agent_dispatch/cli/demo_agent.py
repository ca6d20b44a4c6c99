"""A simulated `claude` for `agent-dispatch demo` on machines without a logged-in Claude CLI.

Standard library only, run as a script (`python -S demo_agent.py -p ... -- PROMPT`)
through a wrapper the demo writes; it never imports agent_dispatch. It accepts the
flags agent-dispatch passes, reads CLAUDE.md in its working directory, and answers
with the sentence of it that best matches the task, clearly marked as simulated.
Output follows the real CLI: one JSON result line (`--output-format json`) or
stream-json lines (`--output-format stream-json --verbose`), with a short pause per
step so progress is visible.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid

_VALUE_FLAGS = {
    "--output-format",
    "--session-id",
    "--resume",
    "-r",
    "--model",
    "--permission-mode",
    "--max-budget-usd",
    "--append-system-prompt",
    "--allowedTools",
    "--disallowedTools",
}
STEP_SECONDS = 0.15
_LABEL_RE = re.compile(r"^\[simulated [^\]]*\]\s*")
_RESULT_RE = re.compile(
    r"### Result \d+: agent (\S+)[^\n]*\nTask: [^\n]*\n\n(.*?)(?=\n\n### |\Z)", re.S
)
_WORD_RE = re.compile(r"[a-z][a-z0-9/{}_-]{3,}")
# Where agent-dispatch's prompt asks for a last STATUS line (invocation.STATUS_FOOTER):
# not part of the task; the simulated agent answers it with `STATUS: done`.
STATUS_ASK = "\n\nEnd your answer with one last line:"


def parse(argv: list[str]) -> tuple[dict[str, str], str]:
    """(flags, prompt). Mirrors the real CLI's shape: the prompt follows `--`."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return flags, " ".join(argv[i + 1 :])
        name, eq, value = arg.partition("=")
        if eq:
            flags[name] = value
        elif arg in _VALUE_FLAGS and i + 1 < len(argv):
            flags[arg] = argv[i + 1]
            i += 1
        else:
            flags[arg] = ""
        i += 1
    return flags, ""


def project_brief(cwd: str) -> tuple[str, list[str]]:
    """(project name, the sentences of its CLAUDE.md)."""
    try:
        with open(os.path.join(cwd, "CLAUDE.md"), encoding="utf-8", errors="replace") as f:
            text = f.read(64 * 1024)
    except OSError:
        text = ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(lines)) if s.strip()]
    return os.path.basename(cwd) or "project", sentences


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def answer(prompt: str, cwd: str) -> str:
    name, sentences = project_brief(cwd)
    prompt = prompt.split(STATUS_ASK, 1)[0]
    if "### Result" in prompt:  # an aggregation task: merge what the agents said
        parts = re.findall(_RESULT_RE, prompt)
        merged = " ".join(f"{agent}: {_LABEL_RE.sub('', body.strip())}" for agent, body in parts)
        return f"[simulated {name}] Combined answer. {merged}"
    task = prompt.split("## Task\n", 1)[-1].strip()
    if not sentences:
        return f"[simulated {name}] I have no CLAUDE.md to go on; you asked: {task[:200]}"
    wanted = _words(task)
    best = max(sentences, key=lambda s: len(wanted & _words(s)))
    return f"[simulated {name}] {best}"


def _line(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    flags, prompt = parse(argv)
    if "-p" not in flags and "--print" not in flags:
        sys.stderr.write("demo agent: only -p (print) mode is simulated\n")
        return 1
    cwd = os.getcwd()
    session = flags.get("--session-id") or flags.get("--resume") or flags.get("-r")
    session = session or str(uuid.uuid4())
    started = time.monotonic()
    reply = answer(prompt, cwd)
    if STATUS_ASK in prompt:
        reply += "\n\nSTATUS: done"
    stream = flags.get("--output-format") == "stream-json"
    if stream:
        _line({"type": "system", "subtype": "init", "session_id": session, "model": "simulated"})
        steps: list[dict[str, object]] = [
            {"type": "text", "text": "[simulated] Reading the project's CLAUDE.md."},
            {
                "type": "tool_use",
                "id": "toolu_demo",
                "name": "Read",
                "input": {"file_path": "CLAUDE.md"},
            },
            {"type": "text", "text": "[simulated] Writing the answer."},
        ]
        for block in steps:
            time.sleep(STEP_SECONDS)
            _line({"type": "assistant", "session_id": session, "message": {"content": [block]}})
    else:
        time.sleep(STEP_SECONDS)
    _line(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": reply,
            "session_id": session,
            "total_cost_usd": 0.0,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "num_turns": 1,
            "permission_denials": [],
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
