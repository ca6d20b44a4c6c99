"""Shared pieces of the CLI commands: stores, output (tables, JSON, fix lines), claude lookup.

Commands print human-readable text to stdout and raise `DispatchError` for
anything the user can act on; `cli.run` turns those into `error:` / `hint:`
lines on stderr and exit status 1. Everything printed goes through `emit`,
`emit_json` or `warn`, which pass it through the one terminal sanitizer
(terminal.py): much of it is untrusted (agent results, job tasks, previews).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from cyclopts import Parameter

from agent_dispatch.cli.terminal import json_text, terminal_text
from agent_dispatch.errors import StorageError
from agent_dispatch.models import Config
from agent_dispatch.runtime.claude_runner import CLAUDE_ENV_VAR as CLAUDE_ENV_VAR
from agent_dispatch.runtime.claude_runner import find_claude as runner_find_claude
from agent_dispatch.storage.config import ConfigStore, config_path
from agent_dispatch.storage.jobs import ENV_VAR as JOBS_ENV_VAR
from agent_dispatch.storage.jobs import JobStore, jobs_dir

INSTALL_CLAUDE = "npm install -g @anthropic-ai/claude-code"
SERVER_NAME = "agent-dispatch"


def config_store() -> ConfigStore:
    return ConfigStore(config_path())


def job_store() -> JobStore:
    """The server's job records; a jobs path that is not a directory is an error here."""
    directory = jobs_dir()
    if os.path.lexists(directory) and not directory.is_dir():
        raise StorageError(
            f"job storage {directory} is not usable: it is not a directory",
            f"Move it away, or set {JOBS_ENV_VAR} to a directory.",
        )
    return JobStore(directory)


def emit(line: str = "") -> None:
    print(terminal_text(line), flush=True)


def emit_json(value: Any) -> None:
    print(json_text(value), flush=True)


def warn(line: str) -> None:
    print(terminal_text(line), file=sys.stderr, flush=True)


def command(*argv: str) -> str:
    """A shell command line that is safe to paste (every word quoted as needed)."""
    return " ".join(shlex.quote(word) for word in argv)


def fix_line(cmd: str, indent: str = "  ") -> str:
    return f"{indent}fix: {cmd}"


def cut(text: str, width: int) -> str:
    text = " ".join(terminal_text(text).split())
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    body = [[terminal_text(str(cell)) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return [line(list(headers)), *(line(row) for row in body)]


def tool_list(value: Sequence[str] | None, defaults: Sequence[str] = ()) -> str:
    """A tri-state tool list for people: `inherit`, `none`, or the names."""
    if value is None:
        return f"inherit ({','.join(defaults)})" if defaults else "inherit"
    if not value:
        return "none"
    return ",".join(value)


def money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.4f}".rstrip("0").rstrip(".") if value < 1 else f"${value:.2f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def find_claude(cfg: Config | None, env: Mapping[str, str] | None = None) -> str | None:
    """The claude executable a dispatch would use (the ClaudeRunner's own lookup)."""
    return runner_find_claude(
        os.environ if env is None else env, cfg.settings.claude_path if cfg is not None else None
    )


def server_command() -> tuple[str, list[str]]:
    """(command, args) that start the MCP server's front (`serve`, which relays each
    session to the user's service), as Claude Code should run it.

    The `agent-dispatch` console script when one can be found (beside this
    Python, as invoked, or on PATH), else this Python with `-m agent_dispatch`.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    candidates = []
    if os.path.basename(argv0) == SERVER_NAME:
        candidates.append(os.path.abspath(argv0))
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(sys.executable)), SERVER_NAME))
    on_path = shutil.which(SERVER_NAME)
    if on_path:
        candidates.append(os.path.abspath(on_path))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path, ["serve"]
    return os.path.abspath(sys.executable), ["-m", "agent_dispatch", "serve"]


def registration_json() -> str:
    cmd, args = server_command()
    return json.dumps({"type": "stdio", "command": cmd, "args": args}, separators=(",", ":"))


def registration_argv(claude: str = "claude") -> list[str]:
    """`claude mcp add-json agent-dispatch '<json>' --scope user` as an argv list."""
    return [claude, "mcp", "add-json", SERVER_NAME, registration_json(), "--scope", "user"]


JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Print JSON.")]
