"""agent-dispatch: delegate work to Claude Code agents in other project directories."""

from __future__ import annotations

__version__ = "0.1.0"
