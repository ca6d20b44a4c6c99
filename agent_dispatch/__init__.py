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

# Every name loads on first use (PEP 562): `import agent_dispatch.relay` (the `serve`
# front, started for every Claude Code session and every `claude -p` child) must not
# pay for trio, msgspec or mcp, nor even typing. Type checkers read the imports below.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final

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
        Outcome,
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
    "Outcome",
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

# Where each exported name lives.
_EXPORTS: Final[Mapping[str, str]] = {
    "AgentConfig": "agent_dispatch.models",
    "BudgetExceeded": "agent_dispatch.results",
    "CacheSettings": "agent_dispatch.models",
    "CancelOutcome": "agent_dispatch.service.async_jobs",
    "CancelResult": "agent_dispatch.service.async_jobs",
    "ClaudeCliError": "agent_dispatch.results",
    "ClaudeOrDirectoryNotFound": "agent_dispatch.results",
    "ClaudeRunner": "agent_dispatch.runtime.claude_runner",
    "Completions": "agent_dispatch.service.fanout",
    "Config": "agent_dispatch.models",
    "ConfigError": "agent_dispatch.errors",
    "ConfigStore": "agent_dispatch.storage.config",
    "DialogueResult": "agent_dispatch.service.dialogue",
    "DialogueTurn": "agent_dispatch.service.dialogue",
    "DispatchError": "agent_dispatch.errors",
    "DispatchFailed": "agent_dispatch.results",
    "DispatchRequest": "agent_dispatch.models",
    "DispatchResult": "agent_dispatch.results",
    "DispatchTimeout": "agent_dispatch.results",
    "Dispatcher": "agent_dispatch.service.dispatcher",
    "ErrorType": "agent_dispatch.results",
    "Group": "agent_dispatch.models",
    "GroupMember": "agent_dispatch.models",
    "InvalidArgument": "agent_dispatch.errors",
    "Job": "agent_dispatch.storage.jobs",
    "JobNotFound": "agent_dispatch.errors",
    "JobStatus": "agent_dispatch.models",
    "JobStore": "agent_dispatch.storage.jobs",
    "Listing": "agent_dispatch.storage.jobs",
    "NotAllowed": "agent_dispatch.errors",
    "Outcome": "agent_dispatch.results",
    "ParallelResult": "agent_dispatch.service.fanout",
    "PermissionDenied": "agent_dispatch.results",
    "Policy": "agent_dispatch.service.policy",
    "ProgressEvent": "agent_dispatch.models",
    "ProgressKind": "agent_dispatch.models",
    "RecursionLimitReached": "agent_dispatch.results",
    "Run": "agent_dispatch.service.streaming",
    "RunOutcome": "agent_dispatch.runtime.runner",
    "RunSpec": "agent_dispatch.runtime.runner",
    "Runner": "agent_dispatch.runtime.runner",
    "Script": "agent_dispatch.runtime.scripted",
    "ScriptedRunner": "agent_dispatch.runtime.scripted",
    "Settings": "agent_dispatch.models",
    "StartFailed": "agent_dispatch.runtime.runner",
    "StorageError": "agent_dispatch.errors",
    "TOOLS": "agent_dispatch.service.policy",
    "UnknownAgent": "agent_dispatch.errors",
    "UnknownGroup": "agent_dispatch.errors",
    "UsageLimitReached": "agent_dispatch.results",
    "WaitMode": "agent_dispatch.models",
    "Waited": "agent_dispatch.service.async_jobs",
    "load_config": "agent_dispatch.storage.config",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
