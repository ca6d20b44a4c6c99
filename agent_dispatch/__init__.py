"""agent-dispatch: delegate work to Claude Code agents in other project directories."""

from __future__ import annotations

from agent_dispatch.config import load_config
from agent_dispatch.dispatcher import Dispatcher
from agent_dispatch.models import DispatchRequest, DispatchResult

__version__ = "0.1.0"

__all__ = ("DispatchRequest", "DispatchResult", "Dispatcher", "__version__", "load_config")
