"""MCP tools that run agents: dispatch, session, stream, parallel, dialogue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import msgspec
import trio
from mcp.server.mcpserver import Context

from agent_dispatch.errors import InvalidArgument, StorageError
from agent_dispatch.models import (
    DispatchRequest,
    DispatchResult,
    ParallelItem,
    clamped,
    dispatch_request,
)
from agent_dispatch.server.remedies import present_job
from agent_dispatch.server.toolkit import (
    Toolbox,
    either,
    json_argument,
    progress_reporter,
    result_answer,
)
from agent_dispatch.service.dialogue import DialogueResult
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.service.views import RefAnswer, ref_answer

HEARTBEAT_SECONDS = 15.0
MAX_SUMMARY_CHARS = 100_000


def summary_length(value: float) -> int:
    return int(clamped(value, "summary_chars", 0, MAX_SUMMARY_CHARS))


def shape(
    dispatcher: Dispatcher,
    req: DispatchRequest,
    result: DispatchResult,
    *,
    return_ref: bool,
    summary_chars: int,
) -> DispatchResult | RefAnswer:
    """The tool answer for one dispatch: the result, or a ref payload to fetch it later."""
    if not return_ref:
        return result_answer(result, req.response_format)
    try:
        job = dispatcher.store_ref(req, result)
    except StorageError as exc:  # the run is done (and paid for): never lose its answer
        out = result_answer(result, req.response_format)
        note = f"return_ref failed, so this is the whole result: {exc.message}"
        return msgspec.structs.replace(out, hint=f"{out.hint} {note}" if out.hint else note)
    return ref_answer(present_job(job), summary_chars)


class ParallelResults(msgspec.Struct, kw_only=True):
    """dispatch_parallel without an aggregate: one answer per item, in input order."""

    results: list[Annotated[Any, either(DispatchResult, RefAnswer)]]


class ParallelAggregated(msgspec.Struct, kw_only=True):
    """dispatch_parallel with an aggregate: the items' answers and the merged one."""

    individual_results: list[Annotated[Any, either(DispatchResult, RefAnswer)]]
    aggregated: DispatchResult


_DISPATCHES_HINT = 'Pass a list like [{"agent": "backend", "task": "..."}].'


def parse_dispatches(dispatches: list[dict[str, Any]] | str) -> list[ParallelItem]:
    """A list of objects, or a JSON string of one; errors name the item."""
    raw: Any = dispatches
    if isinstance(dispatches, str):
        raw = json_argument("dispatches", dispatches, _DISPATCHES_HINT)
    if not isinstance(raw, list):
        raise InvalidArgument(
            "dispatches: expected a list of {agent, task, ...} objects", _DISPATCHES_HINT
        )
    items = []
    for i, entry in enumerate(raw):
        if isinstance(entry, dict) and "session_id" in entry:  # items are what dispatch takes
            raise InvalidArgument(
                f'dispatches[{i}]: unknown field "session_id"',
                "Continue sessions one at a time with dispatch_session.",
            )
        items.append(dispatch_request(entry, f"dispatches[{i}]", ParallelItem))
    return items


@asynccontextmanager
async def heartbeat(ctx: Context, what: str) -> AsyncIterator[None]:
    """Progress at the start and every few seconds: keeps a client's idle timer alive."""

    async def beat() -> None:
        elapsed = 0.0
        await ctx.report_progress(0, None, f"{what}: started")
        while True:
            await trio.sleep(HEARTBEAT_SECONDS)
            elapsed += HEARTBEAT_SECONDS
            await ctx.report_progress(elapsed, None, f"{what}: running for {elapsed:.0f}s")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


def register_dispatch_tools(box: Toolbox, dispatcher: Dispatcher) -> None:
    @box.tool
    async def dispatch(
        agent: str,
        task: str,
        ctx: Context,
        context: str = "",
        caller: str = "",
        goal: str = "",
        response_format: str = "",
        timeout_seconds: float = 0,
        group: str = "",
        return_ref: bool = False,
        summary_chars: float = 500,
    ) -> DispatchResult | RefAnswer:
        """Delegate one task to an agent and wait for its answer (clean answers are cached).
        timeout_seconds: 0 = the agent's own; else clamped to 10..7200. return_ref=true
        returns a short summary and a ref for fetch_result instead of the whole answer."""
        req = dispatch_request(locals())
        chars = summary_length(summary_chars)
        async with heartbeat(ctx, f"dispatch to {agent}"):
            result = await dispatcher.dispatch(req)
        return shape(dispatcher, req, result, return_ref=return_ref, summary_chars=chars)

    @box.tool
    async def dispatch_session(
        agent: str,
        task: str,
        ctx: Context,
        session_id: str = "",
        context: str = "",
        caller: str = "",
        goal: str = "",
        response_format: str = "",
        timeout_seconds: float = 0,
    ) -> DispatchResult:
        """Start a conversation with an agent, or continue one by passing the session_id of
        an earlier result (also how a timed-out, partial or blocked dispatch goes on). Never
        cached."""
        req = dispatch_request(locals())
        async with heartbeat(ctx, f"session with {agent}"):
            result = await dispatcher.dispatch_session(req)
        return result_answer(result, req.response_format)

    @box.tool
    async def dispatch_stream(
        agent: str,
        task: str,
        ctx: Context,
        context: str = "",
        caller: str = "",
        goal: str = "",
        response_format: str = "",
        timeout_seconds: float = 0,
    ) -> DispatchResult:
        """Like dispatch_session, with the agent's text, tool calls and retries sent live as
        progress notifications."""
        req = dispatch_request(locals())
        result = await dispatcher.dispatch_stream(req, progress_reporter(ctx))
        return result_answer(result, req.response_format)

    @box.tool
    async def dispatch_parallel(
        dispatches: list[dict[str, Any]] | str,
        ctx: Context,
        aggregate: str = "",
    ) -> ParallelResults | ParallelAggregated:
        """Run several dispatches at once (each item: agent, task, and optionally context,
        caller, goal, response_format, timeout_seconds, group). Results come back in input
        order; `aggregate` names an agent that merges them. The whole batch is validated
        before anything runs."""
        items = parse_dispatches(dispatches)
        chars = [summary_length(it.summary_chars) for it in items]
        requests = [it.request() for it in items]
        done = 0

        async def item_done(index: int, result: DispatchResult) -> None:
            nonlocal done
            done += 1
            state = "ok" if result.success else f"failed ({result.error_type})"
            await ctx.report_progress(
                done, len(requests), f"{done}/{len(requests)}: {result.agent} {state}"
            )

        outcome = await dispatcher.dispatch_parallel(
            requests, aggregate=aggregate or None, on_item_done=item_done
        )
        shaped = [
            shape(dispatcher, req, r, return_ref=it.return_ref, summary_chars=n)
            for r, req, it, n in zip(outcome.results, requests, items, chars, strict=True)
        ]
        if outcome.aggregated is None:
            return ParallelResults(results=shaped)
        return ParallelAggregated(
            individual_results=shaped, aggregated=result_answer(outcome.aggregated)
        )

    @box.tool
    async def dispatch_dialogue(
        requester: str,
        responder: str,
        topic: str,
        ctx: Context,
        max_rounds: float = 3,
    ) -> DialogueResult:
        """Two agents talk about a topic until one side ends a message with [RESOLVED]
        (max_rounds 1..10). Returns the whole conversation and the final answer."""
        async with heartbeat(ctx, f"dialogue {requester} <-> {responder}"):
            result = await dispatcher.dispatch_dialogue(
                requester=requester, responder=responder, topic=topic, max_rounds=max_rounds
            )
        return result
