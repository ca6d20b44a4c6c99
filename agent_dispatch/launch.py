"""The console script: the composition root of the faces.

`agent-dispatch serve` is the thin front (`relay`): what Claude Code runs, for every
session, so it loads neither the CLI parser (cyclopts, ~120 ms) nor the MCP server;
it relays the session to the user's service. `agent-dispatch serve --standalone` is
the MCP server in this process (`server`), for places where a service cannot run.
Every other command is the CLI (`cli`); no face imports another.
"""

from __future__ import annotations

import sys

from agent_dispatch import __version__

TYPE_CHECKING = False  # the front's import path stays free of typing (see relay)
if TYPE_CHECKING:
    from collections.abc import Sequence


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["serve"]:
        sys.exit(serve())
    if argv == ["serve", "--standalone"]:
        sys.exit(serve(standalone=True))
    sys.exit(run())


def run(argv: Sequence[str] | None = None) -> int:
    """One command line through the CLI, which also lists `serve`; the exit status."""
    from agent_dispatch.cli.app import app
    from agent_dispatch.cli.app import run as run_cli

    try:
        app["serve"]
    except KeyError:
        app.command(serve)
    return run_cli(argv)


def serve(*, standalone: bool = False) -> int:
    """Serve MCP on stdin/stdout (what Claude Code starts; prints nothing).

    Relays the session to this setup's service, started when it is not running,
    which runs the jobs of every session and outlives them.

    Parameters
    ----------
    standalone
        Run the MCP server in this process instead: no service; its jobs end with it.
    """
    if standalone:
        from agent_dispatch.server.stdio import main as serve_stdio

        return serve_stdio()
    from agent_dispatch.relay import main as relay

    return relay(__version__)
