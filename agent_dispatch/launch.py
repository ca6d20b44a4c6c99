"""The console script: `serve` starts without loading the CLI parser (cyclopts, ~120 ms)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["serve"]:  # what Claude Code runs; every other form goes to the CLI
        from agent_dispatch.serve import main as serve

        sys.exit(serve())
    from agent_dispatch.cli import main as cli

    cli()
