"""ScriptedRunner: the Runner fake, shipped for tests and for applications that embed
agent-dispatch (run a Dispatcher without the claude CLI, a network or a bill).

    runner = ScriptedRunner()
    runner.on(Script(reply="42"), agent="calc")                  # every run of agent calc
    runner.on(Script(release=gate), prompt="slow", once=True)    # the next matching run waits
    async with Dispatcher.open(cfg, runner=runner) as d:
        ...
    runner.calls[0].spec.invocation.prompt                       # what the service asked for
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import trio

from agent_dispatch.models import ProgressEvent
from agent_dispatch.runtime.runner import EventCallback, RunOutcome, RunSpec, StartFailed

__all__ = ["Script", "ScriptedCall", "ScriptedRunner", "result_line"]


class Script(msgspec.Struct, frozen=True, kw_only=True):
    """What one scripted run does: emit `events`, wait (`release`, then `delay`), answer.

    By default the answer is a successful claude result whose text is `reply`
    (or `scripted reply to: <first prompt line>`), with `fields` merged into the
    result object (e.g. `{"is_error": True}`, `{"permission_denials": [...]}`).
    `stdout` replaces the whole answer with raw bytes. A wait longer than the
    spec's timeout ends as a timed-out run without a result, as a killed child
    would. `fail` makes the run fail to start (nothing runs).
    """

    reply: str | None = None
    fields: Mapping[str, Any] = msgspec.field(default_factory=dict)
    cost: float = 0.00014
    stdout: bytes | None = None
    stderr: bytes = b""
    returncode: int = 0
    stopped_after_result: bool = False
    events: Sequence[ProgressEvent] = ()
    release: trio.Event | None = None  # block until it is set
    delay: float = 0.0  # then sleep this long (trio's clock: autojump_clock skips it)
    fail: StartFailed | None = None


class ScriptedCall:
    """One run the fake was asked for: the spec, the script it got, and how it ended."""

    def __init__(self, spec: RunSpec, script: Script) -> None:
        self.spec = spec
        self.script = script
        self.done = trio.Event()  # set when the run ended in any way
        self.cancelled = False
        self.timed_out = False

    @property
    def prompt(self) -> str:
        return self.spec.invocation.prompt


class _Rule:
    def __init__(
        self,
        script: Script | Callable[[RunSpec], Script],
        agent: str | None,
        prompt: str | None,
        once: bool,
    ) -> None:
        self.script = script
        self.agent = agent
        self.prompt = prompt
        self.once = once

    def matches(self, spec: RunSpec) -> bool:
        if self.agent is not None and spec.agent != self.agent:
            return False
        return self.prompt is None or self.prompt in spec.invocation.prompt


class ScriptedRunner:
    """A Runner that answers from scripts instead of running claude: the fake for
    tests and embedders.

    Each run takes the first rule (`on`) that matches its agent and prompt, else
    `default` (a Script, or a function of the RunSpec). A run records itself in
    `calls` before it starts, emits its script's events to `on_event`, waits for
    its `release` Event and its `delay` (on trio's clock, so `autojump_clock`
    makes long delays instant), then returns the scripted outcome. Like a real
    child it honours cancellation (its call is marked `cancelled` and
    trio.Cancelled propagates) and the spec's timeout (a timed-out outcome).
    `task_status.started(None)`: nothing local runs, so there is no process group.
    """

    def __init__(self, default: Script | Callable[[RunSpec], Script] | None = None) -> None:
        self.default: Script | Callable[[RunSpec], Script] = default or Script()
        self.calls: list[ScriptedCall] = []
        self.running = 0
        self.peak = 0  # the most runs at once
        self._rules: list[_Rule] = []
        self._changed = trio.Event()

    def on(
        self,
        script: Script | Callable[[RunSpec], Script],
        *,
        agent: str | None = None,
        prompt: str | None = None,
        once: bool = False,
    ) -> None:
        """Answer runs of `agent` whose prompt contains `prompt` (None: any) with `script`;
        with `once`, only the next such run. Earlier rules win."""
        self._rules.append(_Rule(script, agent, prompt, once))

    def _script_for(self, spec: RunSpec) -> Script:
        for rule in self._rules:
            if rule.matches(spec):
                if rule.once:
                    self._rules.remove(rule)
                return rule.script(spec) if callable(rule.script) else rule.script
        return self.default(spec) if callable(self.default) else self.default

    async def wait_calls(self, count: int) -> list[ScriptedCall]:
        """Until `count` runs have started; returns them. Bound it with `trio.fail_after`."""
        while len(self.calls) < count:
            await self._changed.wait()
        return self.calls[:count]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(
        self,
        spec: RunSpec,
        *,
        on_event: EventCallback | None = None,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> RunOutcome:
        script = self._script_for(spec)
        call = ScriptedCall(spec, script)
        self.calls.append(call)
        self._notify()
        if script.fail is not None:
            call.done.set()
            raise script.fail
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            task_status.started(None)
            if on_event is not None:
                for event in script.events:
                    on_event(event)
            with trio.move_on_after(spec.timeout) as deadline:
                if script.release is not None:
                    await script.release.wait()
                await trio.sleep(script.delay)
        except trio.Cancelled:
            call.cancelled = True
            raise
        finally:
            self.running -= 1
            call.done.set()
        if deadline.cancelled_caught:
            call.timed_out = True
            return RunOutcome(returncode=-15, stdout=b"", stderr=script.stderr, timed_out=True)
        return RunOutcome(
            returncode=script.returncode,
            stdout=_stdout(script, spec),
            stderr=script.stderr,
            stopped_after_result=script.stopped_after_result,
        )


def _stdout(script: Script, spec: RunSpec) -> bytes:
    if script.stdout is not None:
        return script.stdout
    reply = script.reply
    if reply is None:
        first = spec.invocation.prompt.strip().splitlines()
        reply = f"scripted reply to: {first[0][:80] if first else ''}"
    return result_line(
        reply, session_id=spec.invocation.session_id, cost=script.cost, **script.fields
    )


def result_line(reply: str, *, session_id: str, cost: float = 0.00014, **fields: Any) -> bytes:
    """One `claude -p --output-format json` result line (what the classifier reads)."""
    result: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 12,
        "num_turns": 1,
        "result": reply,
        "session_id": session_id,
        "total_cost_usd": cost,
        "permission_denials": [],
    }
    result.update(fields)
    return json.dumps(result).encode() + b"\n"
