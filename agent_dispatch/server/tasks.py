"""MCP tasks (the `io.modelcontextprotocol/tasks` extension, SEP-2663): long dispatches
that a client which takes tasks (Claude Code, interactive) tracks on its own.

Only a `tools/call` of `dispatch`, `dispatch_session` or `dispatch_stream` whose own
request declares the extension (its `_meta` client capabilities, 2026-07-28 era) may
become a task (a stream's live lines then go to the task's status line, the only
channel a task has);
every other call takes the tools' inline path untouched. Such a call runs as a job
(the job id is the task id) and waits up to `settings.task_grace_seconds`: a job
that ends inside it (a cache hit among them) is answered inline, as the tool would;
otherwise the answer is the task handle, the job's record already on disk.

`tasks/get` reads the job (live, else its record: a restart or `claude --resume`
still gets a definite answer), `tasks/cancel` cancels it without waiting, and
`tasks/update` is accepted (no task asks questions yet).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, get_args

import msgspec
import trio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolRequestParams, CallToolResult, ClientCapabilities
from mcp_types import RequestParams as _RequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from agent_dispatch.errors import DispatchError
from agent_dispatch.models import (
    TERMINAL_STATUSES,
    DispatchResult,
    TaskReply,
    TaskTool,
    dispatch_request,
)
from agent_dispatch.safe_text import terminal_text
from agent_dispatch.server.remedies import present_job
from agent_dispatch.server.toolkit import error_result, result_answer
from agent_dispatch.server.tools_dispatch import summary_length
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.views import ref_answer
from agent_dispatch.storage.jobs import Job, validate_job_id

__all__ = ["TASKS_EXTENSION", "DispatchTasks", "declares_tasks", "poll_interval_ms", "task_id"]

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_TOOLS: frozenset[str] = frozenset(get_args(TaskTool))
STATUS_CHARS = 200
# Adaptive polling: a task's answer reaches the client one interval late at most,
# so young tasks are polled often, old ones rarely: (age below, interval) in seconds.
POLL_STEPS: tuple[tuple[float, int], ...] = ((60, 1000), (600, 3000))
POLL_SLOW_MS = 5000
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)


class TaskParams(_RequestParams):
    """tasks/get, tasks/cancel: the task's id."""

    task_id: str


class TaskUpdateParams(TaskParams):
    """tasks/update: answers to a task's questions (none are asked yet)."""

    input_responses: dict[str, Any] = Field(default_factory=dict)


def declares_tasks(protocol_version: str, capabilities: ClientCapabilities | None) -> bool:
    """Whether a request with these client capabilities (its own `_meta` envelope on the
    2026-07-28 era) declares the tasks extension: the one case a task may be returned."""
    if protocol_version not in _MODERN or capabilities is None:
        return False
    declared = capabilities.extensions
    return isinstance(declared, Mapping) and TASKS_EXTENSION in declared


def task_id(raw: object) -> str:
    """`raw` as a job id, else the -32602 a client is told for an unknown task."""
    try:
        return validate_job_id(raw, "taskId")
    except DispatchError as exc:
        raise MCPError(code=INVALID_PARAMS, message=f"unknown task: {exc.message}") from None


def poll_interval_ms(age_seconds: float) -> int:
    """How often a client should poll a task this old."""
    for below, interval in POLL_STEPS:
        if age_seconds < below:
            return interval
    return POLL_SLOW_MS


def status_line(job: Job) -> str:
    """The task's short status: the job's last progress line, else its state; one line,
    no control or bidi characters, at most STATUS_CHARS."""
    if job.status in TERMINAL_STATUSES:
        text = job.error or job.status
    elif job.progress:
        text = job.progress[-1]
    else:
        text = "waiting for a free slot" if job.status == "pending" else "running"
    line = " ".join(terminal_text(text).split())
    return line if len(line) <= STATUS_CHARS else line[: STATUS_CHARS - 3] + "..."


class DispatchTasks(Extension):
    """The tasks extension over one Dispatcher and the server's dispatch tools."""

    identifier = TASKS_EXTENSION

    def __init__(self, dispatcher: Dispatcher, tools: Sequence[Tool]) -> None:
        self._dispatcher = dispatcher
        self._tools = {tool.name: tool for tool in tools if tool.name in TASK_TOOLS}

    def methods(self) -> Sequence[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return (
            MethodBinding("tasks/get", TaskParams, self._get, protocol_versions=modern),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, protocol_versions=modern),
            MethodBinding("tasks/update", TaskUpdateParams, self._update, protocol_versions=modern),
        )

    # -- tools/call ----------------------------------------------------------------

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name not in self._tools or not declares_tasks(
            ctx.protocol_version, ctx.session.client_capabilities
        ):
            return await call_next(ctx)
        job = await self._submit(params)
        if job is None:  # arguments the tool refuses: its inline path says why
            return await call_next(ctx)
        handed_off = False
        try:
            with trio.move_on_after(self._grace()):
                await self._dispatcher.wait(job.id)
            job = await self._dispatcher.job(job.id)
            if job.status not in TERMINAL_STATUSES:
                handed_off = True
                return self._handle(job)
        finally:
            if not handed_off and job.status not in TERMINAL_STATUSES:
                # The call itself was cancelled before it became a task: so is its run.
                with trio.CancelScope(shield=True):
                    await self._dispatcher.cancel(job.id, reason="cancelled: the call was")
        return self._completed(job)

    async def _submit(self, params: CallToolRequestParams) -> Job | None:
        """The call as a job, or None when the tool would refuse its arguments."""
        tool = self._tools[params.name]
        arguments = params.arguments or {}
        if set(arguments) - set(tool.parameters.get("properties", {})):
            return None
        try:
            args = tool.fn_metadata.validate_arguments(arguments)
        except Exception:  # the tool's own validation answers, with its error envelope
            return None
        try:
            reply = TaskReply(
                tool=params.name,  # type: ignore[arg-type]  # checked: in TASK_TOOLS
                return_ref=bool(args.get("return_ref", False)),
                summary_chars=summary_length(args.get("summary_chars", 500)),
            )
            return await self._dispatcher.submit_task(dispatch_request(args), reply)
        except DispatchError:
            return None

    def _grace(self) -> float:
        try:
            return self._dispatcher.config().settings.task_grace_seconds
        except DispatchError:
            return 0.0

    def _handle(self, job: Job) -> dict[str, Any]:
        note = (
            f"Agent {job.agent!r} is working on this as job {job.id}. Its answer arrives as a"
            " task notification when it is done: do not dispatch it again."
        )
        return {
            "resultType": "task",
            **self._view(job),
            "_meta": {"com.anthropic/agent-task": {"modelImmediateResponse": note}},
        }

    # -- the task's answer -----------------------------------------------------------

    def _completed(self, job: Job) -> CallToolResult:
        """The result the tool would have answered with for this finished job."""
        if job.status == "cancelled" or job.result is None or job.reply is None:
            reason = job.error or f"the job ended {job.status} without a result"
            return error_result(
                DispatchError(
                    f"{job.agent}: {reason}",
                    f"Job {job.id} has no answer; dispatch the task again if it is still wanted.",
                )
            )
        answer = self._answer(job, job.result, job.reply)
        converted = self._tools[job.reply.tool].fn_metadata.convert_result(
            msgspec.to_builtins(answer)
        )
        assert isinstance(converted, CallToolResult)  # noqa: S101 - a plain dict converts so
        return converted

    def _answer(self, job: Job, result: DispatchResult, reply: TaskReply) -> msgspec.Struct:
        response_format = job.request.response_format if job.request is not None else ""
        if reply.return_ref:  # the job's record is the ref: fetch_result reads it
            return ref_answer(present_job(job), reply.summary_chars)
        return result_answer(result, response_format)

    def _view(self, job: Job) -> dict[str, Any]:
        """The task fields of `job` (SEP-2663 Task)."""
        created = _timestamp(job.created_at)
        updated = job.completed_at or job.started_at or job.created_at
        view: dict[str, Any] = {
            "taskId": job.id,
            "status": "working",
            "statusMessage": status_line(job),
            "createdAt": job.created_at,
            "lastUpdatedAt": updated,
            "ttlMs": self._ttl_ms(),
            "pollIntervalMs": poll_interval_ms(_now() - created),
        }
        if job.status == "cancelled":
            view["status"] = "cancelled"
        elif job.status in TERMINAL_STATUSES:
            view["status"] = "completed"
            view["result"] = self._completed(job).model_dump(
                by_alias=True, mode="json", exclude_none=True
            )
        return view

    def _ttl_ms(self) -> int | None:
        try:
            days = self._dispatcher.config().settings.job_retention_days
        except DispatchError:
            return None
        return int(days * 86_400_000) if days > 0 else None

    # -- methods ---------------------------------------------------------------------

    async def _task(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> Job:
        require_client_extension(ctx, TASKS_EXTENSION)
        job_id = task_id(params.task_id)
        try:
            job = await self._dispatcher.job(job_id)
        except DispatchError:
            job = None
        if job is None or job.reply is None:  # a job, but not one started as a task
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task: {job_id}")
        return job

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        return self._view(await self._task(ctx, params))

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> dict[str, Any]:
        job = await self._task(ctx, params)
        if job.status not in TERMINAL_STATUSES:
            self._dispatcher.cancel_soon(job.id, reason="cancelled by the client (tasks/cancel)")
        return {}

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams
    ) -> dict[str, Any]:
        await self._task(ctx, params)
        return {}


def _timestamp(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return _now()


def _now() -> float:
    return time.time()
