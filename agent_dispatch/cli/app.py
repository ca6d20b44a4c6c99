"""The `agent-dispatch` command line: set agents up, check them, look at jobs, serve MCP.

`main()` is the console script. Commands live in small modules (cli_agents,
cli_groups, cli_setup, cli_test, cli_jobs, demo) and are registered on one cyclopts `App` here.
Errors never reach the user as tracebacks: `run()` prints a `DispatchError`
(and cyclopts' own parse errors) as `error: ...` / `hint: ...` on stderr and
returns exit status 1. A command run with `--json` also prints the error as
`{"error": ..., "hint": ...}` on stdout, so a program reading stdout gets JSON.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Sequence

from cyclopts import App, CycloptsError
from cyclopts.exceptions import UnusedCliTokensError

from agent_dispatch import __version__, exception_groups
from agent_dispatch.cli import agents as cli_agents
from agent_dispatch.cli import demo
from agent_dispatch.cli import groups as cli_groups
from agent_dispatch.cli import jobs as cli_jobs
from agent_dispatch.cli import service_cmd as cli_service
from agent_dispatch.cli import setup as cli_setup
from agent_dispatch.cli import stats as cli_stats
from agent_dispatch.cli import test_cmd as cli_test
from agent_dispatch.cli.common import emit_json, warn
from agent_dispatch.errors import DispatchError

app = App(
    name="agent-dispatch",
    help="Delegate tasks to Claude Code agents in other project directories (MCP server + CLI).",
    version=__version__,
    backend="trio",
    exit_on_error=False,
    print_error=False,
    help_on_error=False,
    result_action="return_value",
)


# -- commands ----------------------------------------------------------------------------


app.command(cli_agents.add)
app.command(cli_agents.update)
app.command(cli_agents.remove)
app.command(cli_agents.list_, name="list")
app.command(cli_agents.describe)
app.command(cli_groups.group_app)
app.command(cli_setup.init)
app.command(cli_setup.doctor)
app.command(cli_test.test)
app.command(cli_jobs.jobs)
app.command(cli_jobs.job)
app.command(cli_jobs.cancel)
app.command(cli_jobs.gc)
app.command(cli_stats.stats)
app.command(demo.demo)
app.command(cli_service.service_app)


# -- running -------------------------------------------------------------------------


def _wants_json(tokens: list[str]) -> bool:
    """True when the command line gives `--json` to a command that has that flag."""
    words = tokens[: tokens.index("--")] if "--" in tokens else tokens
    if "--json" not in words:
        return False
    try:
        _, apps, _ = app.parse_commands(words)
    except CycloptsError:
        return False
    command = apps[-1].default_command if apps else None
    return command is not None and "json" in inspect.signature(command).parameters


def _print_error(message: str, hint: str = "", *, as_json: bool = False) -> None:
    warn(f"error: {message}")
    if hint:
        warn(f"hint: {hint}")
    if as_json:
        emit_json({"error": message, "hint": hint})


def _cyclopts_message(exc: CycloptsError) -> str:
    if isinstance(exc, UnusedCliTokensError):
        words = " ".join(exc.unused_tokens or [])
        return f"unexpected argument(s): {words}"
    return " ".join(str(exc).split()) or type(exc).__name__


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command line; returns the exit status instead of raising."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(tokens)
    try:
        result = app(tokens)
    except CycloptsError as exc:
        _print_error(_cyclopts_message(exc), "See `agent-dispatch --help`.", as_json=as_json)
        return 1
    except BrokenPipeError:
        # stdout went away (`| head`): stop quietly, and keep the exit flush from failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except BaseException as exc:
        return _exit_status(exc, as_json=as_json)
    if isinstance(result, bool):
        return 0 if result else 1
    return result if isinstance(result, int) else 0


def _exit_status(exc: BaseException, *, as_json: bool) -> int:
    """The CLI's edge: what a command raised (bare or grouped by nurseries) as the exit
    status and one error line; re-raised when it is not ours to report."""
    _, not_interrupts = exception_groups.split(exc, KeyboardInterrupt)
    if not_interrupts is None:  # Ctrl-C, however many tasks it reached
        warn("interrupted")
        if as_json:
            emit_json({"error": "interrupted", "hint": ""})
        return 130
    error = exception_groups.first(exc, DispatchError)
    if error is not None:
        _print_error(error.message, error.face_hint, as_json=as_json)
        return 1
    if isinstance(exc, SystemExit) or os.environ.get("AGENT_DISPATCH_DEBUG"):
        raise exc
    only = exception_groups.sole(exc)
    if isinstance(only, OSError):
        _print_error(str(only), as_json=as_json)
        return 1
    if not isinstance(exc, Exception):
        raise exc
    leaf = exception_groups.leaves(exc)[0]
    _print_error(
        f"unexpected {type(leaf).__name__}: {leaf}",
        "Run again with AGENT_DISPATCH_DEBUG=1 for the traceback, and please report it.",
        as_json=as_json,
    )
    return 1


def main() -> None:
    """Console script entry point."""
    sys.exit(run())
