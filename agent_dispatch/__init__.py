"""agent-dispatch: delegate work to Claude Code agents in other project directories.

The library runs on trio (only): open a Dispatcher and dispatch.

    import trio
    from agent_dispatch import Dispatcher, DispatchRequest, load_config

    async def main() -> None:
        async with Dispatcher.open(load_config()) as d:
            result = await d.dispatch(DispatchRequest(agent="backend", task="..."))
            result.raise_for_error()
            print(result.result)

    trio.run(main)

docs/library.md is the contract: what raises, what returns a failed result,
cancellation, progress, fan-out and jobs. Every name a program needs is here.
"""

from __future__ import annotations

from agent_dispatch.errors import (
    ConfigError,
    DispatchError,
    InvalidArgument,
    JobNotFound,
    NotAllowed,
    StorageError,
    UnknownAgent,
    UnknownGroup,
)
from agent_dispatch.models import (
    AgentConfig,
    CacheSettings,
    Config,
    DispatchRequest,
    Group,
    GroupMember,
    JobStatus,
    ProgressEvent,
    ProgressKind,
    Settings,
    WaitMode,
)
from agent_dispatch.results import (
    BudgetExceeded,
    ClaudeCliError,
    ClaudeOrDirectoryNotFound,
    DispatchFailed,
    DispatchResult,
    DispatchTimeout,
    ErrorType,
    PermissionDenied,
    RecursionLimitReached,
    UsageLimitReached,
)
from agent_dispatch.runtime.claude_runner import ClaudeRunner
from agent_dispatch.runtime.runner import Runner, RunOutcome, RunSpec, StartFailed
from agent_dispatch.runtime.scripted import Script, ScriptedRunner
from agent_dispatch.service.async_jobs import CancelOutcome, CancelResult, Waited
from agent_dispatch.service.dialogue import DialogueResult, DialogueTurn
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.fanout import Completions, ParallelResult
from agent_dispatch.service.policy import TOOLS, Policy
from agent_dispatch.service.streaming import Run
from agent_dispatch.storage.config import ConfigStore, load_config
from agent_dispatch.storage.jobs import Job, JobStore, Listing

__version__ = "0.1.0"

__all__ = (
    "TOOLS",
    "AgentConfig",
    "BudgetExceeded",
    "CacheSettings",
    "CancelOutcome",
    "CancelResult",
    "ClaudeCliError",
    "ClaudeOrDirectoryNotFound",
    "ClaudeRunner",
    "Completions",
    "Config",
    "ConfigError",
    "ConfigStore",
    "DialogueResult",
    "DialogueTurn",
    "DispatchError",
    "DispatchFailed",
    "DispatchRequest",
    "DispatchResult",
    "DispatchTimeout",
    "Dispatcher",
    "ErrorType",
    "Group",
    "GroupMember",
    "InvalidArgument",
    "Job",
    "JobNotFound",
    "JobStatus",
    "JobStore",
    "Listing",
    "NotAllowed",
    "ParallelResult",
    "PermissionDenied",
    "Policy",
    "ProgressEvent",
    "ProgressKind",
    "RecursionLimitReached",
    "Run",
    "RunOutcome",
    "RunSpec",
    "Runner",
    "Script",
    "ScriptedRunner",
    "Settings",
    "StartFailed",
    "StorageError",
    "UnknownAgent",
    "UnknownGroup",
    "UsageLimitReached",
    "WaitMode",
    "Waited",
    "__version__",
    "load_config",
)
