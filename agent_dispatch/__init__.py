"""agent-dispatch: delegate work to Claude Code agents in other project directories."""

from __future__ import annotations

from agent_dispatch.models import DispatchRequest, DispatchResult
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import load_config

__version__ = "0.1.0"

__all__ = ("DispatchRequest", "DispatchResult", "Dispatcher", "__version__", "load_config")
