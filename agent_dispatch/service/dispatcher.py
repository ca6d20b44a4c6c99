"""The service: one Dispatcher owns the limiter, the cache, the job nursery and the runner.

The Dispatcher is the library's public face as well as the one the MCP server and
the CLI sit on: they open it with `policy=TOOLS` (service/policy.py), the rails
their tools promise; a trio program gets its numbers honoured as given.

Every path that runs a `claude` invocation (dispatch, session, stream, parallel,
aggregation, dialogue, async jobs) goes through `_run`, which decides the run
(a RunSpec) and hands it to the Runner under one token of the single
`trio.CapacityLimiter`, held for the run's whole life (service/runs.py).
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sniffio
import trio

from agent_dispatch import exception_groups
from agent_dispatch.claude import invocation as claude
from agent_dispatch.errors import ConfigError, InvalidArgument
from agent_dispatch.models import (
    Config,
    DispatchRequest,
    DispatchResult,
    PositiveInt,
    convert,
)
from agent_dispatch.runtime.claude_runner import ClaudeRunner, find_claude
from agent_dispatch.runtime.runner import Runner
from agent_dispatch.service.async_jobs import AsyncJobs
from agent_dispatch.service.cache import ResultCache, cache_key
from agent_dispatch.service.caller import current_caller
from agent_dispatch.service.dialogue import (
    DialogueResult,
    check_dialogue,
    clamp_rounds,
    run_dialogue,
)
from agent_dispatch.service.fanout import Completions, ParallelResult, checked_batch
from agent_dispatch.service.job_methods import JobMethods
from agent_dispatch.service.policy import LIBRARY, Policy
from agent_dispatch.service.resolve import (
    aggregation_task,
    check_agent,
    effective_agent,
    fold_group_context,
    recursion_refusal,
    resolve_timeout,
    run_spec,
    validate_request,
)
from agent_dispatch.service.runs import ProgressCallback, RunStats, run_once
from agent_dispatch.service.streaming import StreamMethods
from agent_dispatch.service.usage import UsageBook, journalled
from agent_dispatch.storage import usage
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import JobStore, jobs_dir

ItemCallback = Callable[[int, DispatchResult], Awaitable[None]]


def require_trio() -> None:
    """agent_dispatch runs on trio only: say so, rather than fail deep inside."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library != "trio":
        where = f"under {library}" if library else "outside an async function"
        raise RuntimeError(
            f"agent_dispatch runs on trio, and was called {where}: run your program "
            "with trio.run() (asyncio and anyio's asyncio backend are not supported)"
        )


class Dispatcher(JobMethods, StreamMethods):
    """Delegates tasks to agents. Create with `async with Dispatcher.open(cfg) as d:`."""

    def __init__(
        self,
        config: Config | ConfigStore,
        nursery: trio.Nursery,
        *,
        max_concurrency: int | None = None,
        limiter: trio.CapacityLimiter | None = None,
        cache: bool | None = None,
        runner: Runner | None = None,
        policy: Policy = LIBRARY,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        jobs: JobStore | None = None,
    ) -> None:
        require_trio()
        self.runner: Runner = runner or ClaudeRunner()
        self.policy = policy
        self._store = config if isinstance(config, ConfigStore) else None
        self._static = config if isinstance(config, Config) else None
        if self._store is None and self._static is None:
            raise TypeError(
                f"Dispatcher needs a Config or a ConfigStore, not {type(config).__name__} "
                "(load one with agent_dispatch.load_config())"
            )
        self._env = dict(os.environ if env is None else env)
        try:
            first = self._load()
        except ConfigError:
            first = Config()  # keep serving: every call reports the broken config
        s = first.settings
        if limiter is not None and max_concurrency is not None:
            raise InvalidArgument(
                "max_concurrency: give it or a limiter, not both",
                "A shared trio.CapacityLimiter sets the limit itself (its total_tokens).",
            )
        self._fixed_limit = limiter is not None or max_concurrency is not None
        if limiter is None:
            tokens = s.max_concurrency
            if max_concurrency is not None:
                tokens = convert(max_concurrency, PositiveInt, field="max_concurrency")
            limiter = trio.CapacityLimiter(tokens)
        self.limiter = limiter
        self._caching = policy.cache if cache is None else cache
        cache_opts: dict[str, Any] = {"ttl": s.cache.ttl, "max_size": s.cache.max_size}
        if clock is not None:
            cache_opts["clock"] = clock
        self.cache = ResultCache(**cache_opts)
        self._applied = first
        # Dispatches are journalled beside a config file (the faces); a fixed Config
        # has no file, so a program's dispatches are not journalled unless asked.
        self.usage = UsageBook(usage.journal_path(self._store.path)) if self._store else None
        self._jobs = AsyncJobs(jobs or JobStore(jobs_dir(self._env)), nursery, self._job_run)
        self._nursery = nursery

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: Config | ConfigStore,
        *,
        max_concurrency: int | None = None,
        limiter: trio.CapacityLimiter | None = None,
        cache: bool | None = None,
        runner: Runner | None = None,
        policy: Policy = LIBRARY,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        jobs: JobStore | None = None,
    ) -> AsyncIterator[Dispatcher]:
        """Run a Dispatcher; leaving the block cancels its jobs (their children die first).

        Args:
          config: a Config (fixed) or a ConfigStore (its file, re-read when it changes).
          max_concurrency: live runs at most (default: settings.max_concurrency).
          limiter: a trio.CapacityLimiter to share one limit with the rest of your app
            (each run holds one token for its whole life); not with max_concurrency.
          cache: keep clean one-shot results and answer identical dispatches from them
            (settings.cache sets ttl and size). Off unless asked for.
          runner: what carries out a run. Default: a ClaudeRunner (a local `claude -p`
            child in its own process group); a ScriptedRunner answers without a child.
          policy: the rails on callers' numbers; the library honours them as given.
          env: the environment the children inherit (default: os.environ).
          jobs: the job store (default: the jobs directory `env` names).

        Stale job records a dead process left are settled in a worker thread beside
        the body (their process groups stopped); job reads wait for it, nothing else.

        An exception raised in the body comes out as itself, Ctrl-C as KeyboardInterrupt.

        Raises:
          RuntimeError: not running under trio (agent_dispatch is trio-only).
          InvalidArgument: max_concurrency is not a positive integer, or given with limiter.
        """
        require_trio()
        with exception_groups.collapsed():
            async with trio.open_nursery() as nursery:
                dispatcher = cls(
                    config,
                    nursery,
                    max_concurrency=max_concurrency,
                    limiter=limiter,
                    cache=cache,
                    runner=runner,
                    policy=policy,
                    env=env,
                    clock=clock,
                    jobs=jobs,
                )
                dispatcher._start_recovery()
                try:
                    yield dispatcher
                finally:
                    nursery.cancel_scope.cancel()

    # -- configuration -------------------------------------------------------

    def _load(self) -> Config:
        if self._store is not None:
            return self._store.load()
        if self._static is None:  # pragma: no cover - one of the two is always set
            raise TypeError("Dispatcher needs a Config or a ConfigStore")
        return self._static

    def config(self) -> Config:
        """The current config (re-read cheaply when it is a file); applies changes."""
        cfg = self._load()
        if cfg is not self._applied:
            self._apply(cfg)
        return cfg

    def _apply(self, cfg: Config) -> None:
        old, s = self._applied, cfg.settings
        if not self._fixed_limit and self.limiter.total_tokens != s.max_concurrency:
            self.limiter.total_tokens = s.max_concurrency  # borrowed slots are kept
        self.cache.configure(ttl=s.cache.ttl, max_size=s.cache.max_size)
        for name in set(old.agents) | set(cfg.agents):
            if old.agents.get(name) != cfg.agents.get(name) or old.settings != s:
                self.cache.invalidate_agent(name)
        self._applied = cfg

    def claude_executable(self, cfg: Config | None = None) -> str | None:
        """The claude executable a local run would use (None: there is no runnable one)."""
        cfg = cfg or self.config()
        return find_claude(self._caller_env(), cfg.settings.claude_path)

    def _caller_env(self) -> Mapping[str, str]:
        """The environment of the caller this task serves (service/caller.py), else ours."""
        caller = current_caller()
        return self._env if caller is None else caller.env

    # -- validation ------------------------------------------------------------

    def validate(self, req: DispatchRequest, cfg: Config | None = None, field: str = "") -> None:
        """Raise a DispatchError for a request that must not spawn anything; `field`
        (an item such as `dispatches[2]`) is put in front of the field it names."""
        validate_request(cfg or self.config(), req, field)

    # -- single dispatch -------------------------------------------------------

    async def dispatch(self, req: DispatchRequest) -> DispatchResult:
        """One dispatch, to its end; clean successes are cached when the cache is on.

        A failed run (timeout, usage limit, budget, permission, ...) is a result with
        `success=False`; `result.raise_for_error()` turns it into an exception.

        Raises:
          InvalidArgument, UnknownAgent, UnknownGroup: the request is wrong; nothing ran.
          ConfigError: the config file is broken.
          trio.Cancelled: a scope around the call was cancelled; the child's process
            group is gone and its slot free when this propagates.
        """
        return await self._dispatch(req, use_cache=True, tool="dispatch")

    async def dispatch_session(self, req: DispatchRequest) -> DispatchResult:
        """A dispatch that starts (or, with `session_id`, resumes) a session; never cached.
        Raises as `dispatch` does."""
        return await self._dispatch(req, use_cache=False, tool="dispatch_session")

    async def dispatch_stream(
        self, req: DispatchRequest, on_progress: ProgressCallback | None = None
    ) -> DispatchResult:
        """A dispatch whose assistant text, tool calls and retries reach `on_progress` live.

        Every event is awaited in order before the result returns, so a slow callback
        delays the result: a consumer that may be slow reads `stream()` instead.
        Raises as `dispatch` does."""
        return await self._dispatch(
            req, use_cache=False, on_progress=on_progress, tool="dispatch_stream"
        )

    async def _dispatch(
        self,
        req: DispatchRequest,
        *,
        use_cache: bool,
        tool: str,
        on_progress: ProgressCallback | None = None,
    ) -> DispatchResult:
        cfg = self.config()
        self.validate(req, cfg)
        return await self._run(cfg, req, use_cache=use_cache, on_progress=on_progress, tool=tool)

    async def _run(
        self,
        cfg: Config,
        req: DispatchRequest,
        *,
        use_cache: bool,
        on_progress: ProgressCallback | None = None,
        on_spawn: Callable[[int | None], None] | None = None,
        lifecycle: bool = False,
        stats: RunStats | None = None,
        tool: str = "dispatch",
        job_id: str | None = None,
    ) -> DispatchResult:
        """`_execute`, journalled (the run's end, once it has one) as done through `tool`."""
        execute = functools.partial(
            self._execute, cfg, req, use_cache, on_progress, on_spawn, lifecycle, stats
        )
        return await journalled(self.usage, execute, tool, req, job_id)

    async def _execute(
        self,
        cfg: Config,
        req: DispatchRequest,
        use_cache: bool,
        on_progress: ProgressCallback | None,
        on_spawn: Callable[[int | None], None] | None,
        lifecycle: bool,
        stats: RunStats | None,
    ) -> tuple[DispatchResult, bool]:
        """Resolve, consult the cache, run through the runner under the limiter, cache;
        the result and whether the cache answered."""
        env = self._caller_env()
        depth = claude.current_depth(env)
        refusal = recursion_refusal(cfg, req.agent, depth)
        if refusal is not None:
            return refusal, False
        eff = effective_agent(cfg, req.agent)
        rails = self.policy
        timeout = resolve_timeout(
            req.timeout_seconds, eff.timeout, low=rails.min_timeout, high=rails.max_timeout
        )
        context = req.context
        if req.group:
            context = fold_group_context(cfg, req.group, req.agent, context)
        key = ""
        caching = use_cache and self._caching and cfg.settings.cache.enabled and not req.session_id
        if caching:
            key = cache_key(
                agent=req.agent,
                task=req.task,
                context=context,
                caller=req.caller,
                goal=req.goal,
                response_format=req.response_format,
                agent_snapshot=eff,
            )
            hit = self.cache.get(key)
            if hit is not None:
                return hit, True
        spec = run_spec(cfg, req, eff, context, env, depth, timeout, stream=on_progress is not None)
        result = await run_once(
            self.runner,
            self.limiter,
            spec,
            agent_timeout=eff.timeout,
            max_budget_usd=eff.max_budget_usd,
            response_format=req.response_format,
            on_progress=on_progress,
            on_spawn=on_spawn,
            lifecycle=lifecycle,
            stats=stats,
            typical_seconds=self.usage.typical_seconds(req.agent) if self.usage else None,
        )
        if caching:
            self.cache.put(key, req.agent, result)
        return result, False

    # -- fan-out -----------------------------------------------------------------

    def max_parallel_items(self, cfg: Config | None = None) -> int | None:
        """The most items one dispatch_parallel takes (None: no cap, the library's way)."""
        if not self.policy.cap_batches:
            return None
        cfg = cfg or self.config()
        return max(100, 20 * cfg.settings.max_concurrency)

    def _batch(self, requests: Sequence[DispatchRequest], cfg: Config) -> list[DispatchRequest]:
        """The whole batch, validated before anything is spawned."""
        return checked_batch(
            requests,
            self.max_parallel_items(cfg),
            lambda i, r: self.validate(r, cfg, f"dispatches[{i}]"),
        )

    def as_completed(self, requests: Sequence[DispatchRequest]) -> Completions:
        """`async for index, result in d.as_completed(requests):` each result as its run
        finishes, `index` its place in `requests`. Every run holds a slot of the one
        limiter; there is no cap on the number of requests. Leaving the loop, or a
        cancelled scope around it, stops the runs left (`async with d.as_completed(...)
        as results:` makes that deterministic: they are gone when the block is left).

        Raises (at the call, before anything runs):
          InvalidArgument, UnknownAgent, UnknownGroup: an item is wrong (named
            `dispatches[i]`). ConfigError: the config file is broken.
        """
        cfg = self.config()
        batch = self._batch(requests, cfg)

        async def run(req: DispatchRequest) -> DispatchResult:
            return await self._run(cfg, req, use_cache=True, tool="as_completed")

        return Completions(run, batch, self._nursery)

    async def dispatch_parallel(
        self,
        requests: Sequence[DispatchRequest],
        *,
        aggregate: str | None = None,
        on_item_done: ItemCallback | None = None,
    ) -> ParallelResult:
        """Run every request concurrently (bounded by the limiter); results in input order,
        then, with `aggregate`, that agent's synthesis of them. Raises as `as_completed`."""
        cfg = self.config()
        batch = self._batch(requests, cfg)
        if aggregate:
            check_agent(cfg, aggregate, "aggregate")
        results: list[DispatchResult | None] = [None] * len(batch)
        async with Completions(
            lambda req: self._run(cfg, req, use_cache=True, tool="dispatch_parallel"),
            batch,
            self._nursery,
        ) as done_in_order:
            async for i, result in done_in_order:
                results[i] = result
                if on_item_done is not None:
                    await on_item_done(i, result)
        done = [r for r in results if r is not None]
        aggregated = None
        if aggregate:
            aggregated = await self._run(
                cfg,
                DispatchRequest(agent=aggregate, task=aggregation_task(batch, done)),
                use_cache=False,
                tool="aggregate",
            )
        return ParallelResult(results=done, aggregated=aggregated)

    # -- async jobs ----------------------------------------------------------------

    async def _job_run(
        self,
        req: DispatchRequest,
        *,
        cached: bool,
        on_spawn: Callable[[int | None], None],
        on_progress: ProgressCallback,
        tool: str,
        job_id: str,
    ) -> DispatchResult:
        return await self._run(
            self.config(),
            req,
            use_cache=cached,
            on_progress=on_progress,
            on_spawn=on_spawn,
            tool=tool,
            job_id=job_id,
        )

    # -- dialogue ----------------------------------------------------------------

    async def dispatch_dialogue(
        self,
        *,
        requester: str,
        responder: str,
        topic: str,
        max_rounds: float = 3,
        caller: str = "",
    ) -> DialogueResult:
        """Let two agents talk until one ends a message with [RESOLVED] (1..10 rounds)."""
        cfg = self.config()
        check_agent(cfg, requester, "requester")
        check_agent(cfg, responder, "responder")
        check_dialogue(requester, responder, topic)
        rounds = clamp_rounds(max_rounds)

        async def run_turn(req: DispatchRequest) -> DispatchResult:
            return await self._run(self.config(), req, use_cache=False, tool="dispatch_dialogue")

        return await run_dialogue(
            run_turn,
            requester=requester,
            responder=responder,
            topic=topic,
            max_rounds=rounds,
            caller=caller,
        )
