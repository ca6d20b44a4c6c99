"""The console script: the composition root of the two faces.

`agent-dispatch serve` is the MCP server (`server`), every other command the CLI
(`cli`); neither face imports the other. `serve` starts without loading the CLI
parser (cyclopts, ~120 ms): it is what Claude Code runs, for every session.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        sys.exit(serve())
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


def serve() -> int:
    """Run the MCP server on stdin/stdout (what Claude Code starts; prints nothing)."""
    from agent_dispatch.server.stdio import main as serve_stdio

    return serve_stdio()
