"""The service: one Dispatcher owns the limiter, the cache, the job nursery and the runner.

Every path that runs a `claude` invocation (dispatch, session, stream, parallel,
aggregation, dialogue, async jobs) goes through `_run`, which decides the run
(a RunSpec) and hands it to the Runner under one token of the single
`trio.CapacityLimiter`, held for the run's whole life (service/runs.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from agent_dispatch.claude import invocation as claude
from agent_dispatch.errors import ConfigError, InvalidArgument
from agent_dispatch.models import Config, DispatchRequest, DispatchResult
from agent_dispatch.runtime.claude_runner import ClaudeRunner, find_claude
from agent_dispatch.runtime.runner import Runner, RunSpec
from agent_dispatch.service.async_jobs import AsyncJobs
from agent_dispatch.service.cache import ResultCache, cache_key
from agent_dispatch.service.dialogue import DialogueResult, clamp_rounds, run_dialogue
from agent_dispatch.service.resolve import (
    aggregation_task,
    check_agent,
    effective_agent,
    fold_group_context,
    resolve_timeout,
    validate_request,
)
from agent_dispatch.service.runs import ProgressCallback, run_once
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import Job, JobStore, jobs_dir

ItemCallback = Callable[[int, DispatchResult], Awaitable[None]]


class ParallelResult(msgspec.Struct, kw_only=True):
    results: list[DispatchResult]
    aggregated: DispatchResult | None = None


class Dispatcher:
    """Delegates tasks to agents. Create with `async with Dispatcher.open(cfg) as d:`."""

    def __init__(
        self,
        config: Config | ConfigStore,
        nursery: trio.Nursery,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        jobs: JobStore | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.runner: Runner = runner or ClaudeRunner()
        self._store = config if isinstance(config, ConfigStore) else None
        self._static = config if isinstance(config, Config) else None
        self._env = dict(os.environ if env is None else env)
        self._depth = claude.current_depth(self._env)
        try:
            first = self._load()
        except ConfigError:
            first = Config()  # keep serving: every call reports the broken config
        s = first.settings
        self.limiter = trio.CapacityLimiter(s.max_concurrency)
        cache_opts: dict[str, Any] = {"ttl": s.cache.ttl, "max_size": s.cache.max_size}
        if clock is not None:
            cache_opts["clock"] = clock
        self.cache = ResultCache(**cache_opts)
        self._applied = first
        self.jobs = AsyncJobs(jobs or JobStore(jobs_dir(self._env)), nursery, self._job_run)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: Config | ConfigStore,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        jobs: JobStore | None = None,
        runner: Runner | None = None,
    ) -> AsyncIterator[Dispatcher]:
        """Run a Dispatcher; leaving the block cancels its jobs (their children die).

        Every run goes through `runner`: by default a ClaudeRunner (a local `claude -p`
        child); a ScriptedRunner (agent_dispatch.runtime.scripted) answers without one.
        """
        async with trio.open_nursery() as nursery:
            dispatcher = cls(config, nursery, env=env, clock=clock, jobs=jobs, runner=runner)
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
        if self.limiter.total_tokens != s.max_concurrency:
            self.limiter.total_tokens = s.max_concurrency  # borrowed slots are kept
        self.cache.configure(ttl=s.cache.ttl, max_size=s.cache.max_size)
        for name in set(old.agents) | set(cfg.agents):
            if old.agents.get(name) != cfg.agents.get(name) or old.settings != s:
                self.cache.invalidate_agent(name)
        self._applied = cfg

    def claude_executable(self, cfg: Config | None = None) -> str | None:
        """The claude executable a local run would use (None: there is no runnable one)."""
        cfg = cfg or self.config()
        return find_claude(self._env, cfg.settings.claude_path)

    # -- validation ------------------------------------------------------------

    def validate(self, req: DispatchRequest, cfg: Config | None = None, field: str = "") -> None:
        """Raise a DispatchError for a request that must not spawn anything; `field`
        (an item such as `dispatches[2]`) is put in front of the field it names."""
        validate_request(cfg or self.config(), req, field)

    # -- single dispatch -------------------------------------------------------

    async def dispatch(self, req: DispatchRequest) -> DispatchResult:
        """One-shot dispatch; clean successes are cached."""
        return await self._dispatch(req, use_cache=True)

    async def dispatch_session(self, req: DispatchRequest) -> DispatchResult:
        """A dispatch that starts (or, with `session_id`, resumes) a session; never cached."""
        return await self._dispatch(req, use_cache=False)

    async def dispatch_stream(
        self, req: DispatchRequest, on_progress: ProgressCallback | None = None
    ) -> DispatchResult:
        """A dispatch whose assistant text, tool calls and retries reach `on_progress` live."""
        return await self._dispatch(req, use_cache=False, on_progress=on_progress)

    async def _dispatch(
        self,
        req: DispatchRequest,
        *,
        use_cache: bool,
        on_progress: ProgressCallback | None = None,
    ) -> DispatchResult:
        cfg = self.config()
        self.validate(req, cfg)
        return await self._run(cfg, req, use_cache=use_cache, on_progress=on_progress)

    def _refusal(self, cfg: Config, agent: str) -> DispatchResult | None:
        limit = cfg.settings.max_dispatch_depth
        if self._depth >= limit:
            return DispatchResult(
                agent=agent,
                success=False,
                error=f"dispatch depth {self._depth} reached max_dispatch_depth {limit}",
                error_type="recursion",
                hint="This dispatch was itself dispatched; do the work here instead, "
                "or raise settings.max_dispatch_depth in agents.yaml.",
            )
        return None

    async def _run(
        self,
        cfg: Config,
        req: DispatchRequest,
        *,
        use_cache: bool,
        on_progress: ProgressCallback | None = None,
        on_spawn: Callable[[int | None], None] | None = None,
    ) -> DispatchResult:
        """Resolve, consult the cache, run through the runner under the limiter, cache."""
        refusal = self._refusal(cfg, req.agent)
        if refusal is not None:
            return refusal
        eff = effective_agent(cfg, req.agent)
        timeout = resolve_timeout(req.timeout_seconds, eff.timeout)
        context = req.context
        if req.group:
            context = fold_group_context(cfg, req.group, req.agent, context)
        key = ""
        caching = use_cache and cfg.settings.cache.enabled and not req.session_id
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
                return hit
        invocation = claude.Invocation(
            prompt=claude.build_prompt(
                req.task,
                context=context,
                caller=req.caller,
                goal=req.goal,
                response_format=req.response_format,
            ),
            session_id=req.session_id or claude.new_session_id(),
            resume=bool(req.session_id),
            stream=on_progress is not None,
            model=eff.model,
            permission_mode=eff.permission_mode,
            allowed_tools=eff.allowed_tools,
            disallowed_tools=eff.disallowed_tools,
            max_budget_usd=eff.max_budget_usd,
            append_system_prompt=eff.instructions,
        )
        spec = RunSpec(
            agent=req.agent,
            directory=eff.directory,
            invocation=invocation,
            env=claude.child_env(self._env, self._depth),
            timeout=timeout,
            claude_path=cfg.settings.claude_path,
        )
        result = await run_once(
            self.runner,
            self.limiter,
            spec,
            agent_timeout=eff.timeout,
            max_budget_usd=eff.max_budget_usd,
            response_format=req.response_format,
            on_progress=on_progress,
            on_spawn=on_spawn,
        )
        if caching:
            self.cache.put(key, req.agent, result)
        return result

    # -- fan-out -----------------------------------------------------------------

    def max_parallel_items(self, cfg: Config | None = None) -> int:
        cfg = cfg or self.config()
        return max(100, 20 * cfg.settings.max_concurrency)

    async def dispatch_parallel(
        self,
        requests: Sequence[DispatchRequest],
        *,
        aggregate: str | None = None,
        on_item_done: ItemCallback | None = None,
    ) -> ParallelResult:
        """Run every request concurrently (bounded by the limiter); results in input order.

        The whole batch is validated before anything is spawned.
        """
        cfg = self.config()
        if not requests:
            raise InvalidArgument("dispatches: must hold at least one item")
        limit = self.max_parallel_items(cfg)
        if len(requests) > limit:
            raise InvalidArgument(
                f"dispatches: {len(requests)} items is more than the limit of {limit}",
                "Split the batch, or use dispatch_async for long queues.",
            )
        for i, req in enumerate(requests):
            self.validate(req, cfg, field=f"dispatches[{i}]")
        if aggregate:
            check_agent(cfg, aggregate, "aggregate")
        results: list[DispatchResult | None] = [None] * len(requests)

        async def one(i: int, req: DispatchRequest) -> None:
            results[i] = await self._run(cfg, req, use_cache=True)
            if on_item_done is not None:
                await on_item_done(i, results[i])  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            for i, req in enumerate(requests):
                nursery.start_soon(one, i, req)
        done = [r for r in results if r is not None]
        aggregated = None
        if aggregate:
            aggregated = await self._run(
                cfg,
                DispatchRequest(agent=aggregate, task=aggregation_task(requests, done)),
                use_cache=False,
            )
        return ParallelResult(results=done, aggregated=aggregated)

    # -- async jobs ----------------------------------------------------------------

    async def dispatch_async(self, req: DispatchRequest) -> Job:
        """Queue a dispatch as a job and return its pending record at once."""
        self.validate(req)
        return await self.jobs.submit(req)

    async def _job_run(
        self,
        req: DispatchRequest,
        *,
        on_spawn: Callable[[int | None], None],
        on_progress: ProgressCallback,
    ) -> DispatchResult:
        return await self._run(
            self.config(), req, use_cache=False, on_progress=on_progress, on_spawn=on_spawn
        )

    def store_ref(self, req: DispatchRequest, result: DispatchResult) -> Job:
        """Keep a finished result as a job record so it can be fetched by reference."""
        return self.jobs.record_finished(req, result)

    def start_recovery(self) -> None:
        """At server start, in the background: settle the records a dead server left
        (JobStore.recover_stale) and apply job_retention_days. Returns at once, so the
        handshake never waits for it; the job tools wait until it is done."""
        try:
            days = self.config().settings.job_retention_days
        except ConfigError:
            days = 0  # a broken config keeps every record; tools report the config
        self.jobs.start_recovery(days)

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
        if requester == responder:
            raise InvalidArgument(
                f"responder: {responder!r} is also the requester",
                "A dialogue needs two different agents; to ask one agent, use dispatch.",
            )
        if not topic.strip():
            raise InvalidArgument("topic: must not be empty", "Say what the agents should settle.")
        rounds = clamp_rounds(max_rounds)

        async def run_turn(req: DispatchRequest) -> DispatchResult:
            return await self._run(self.config(), req, use_cache=False)

        return await run_dialogue(
            run_turn,
            requester=requester,
            responder=responder,
            topic=topic,
            max_rounds=rounds,
            caller=caller,
        )
