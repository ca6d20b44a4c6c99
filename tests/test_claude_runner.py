"""ClaudeRunner under the Dispatcher: the real wiring, with the fake claude as the child.

What only a real child shows (its cwd, stdin, environment and argv, a command line
the OS refuses, a process group killed at a deadline or on cancel, the executable
lookup) is tested here; the service's own logic runs on the ScriptedRunner in
test_dispatcher.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from agent_dispatch.claude.invocation import STATUS_FOOTER, Invocation, new_session_id
from agent_dispatch.models import DispatchRequest, ProgressEvent
from agent_dispatch.runtime.claude_runner import CLAUDE_ENV_VAR, ClaudeRunner, find_claude
from agent_dispatch.runtime.runner import RunOutcome, RunSpec
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.jobs import JobStore
from tests.dispatcher_config import make_config
from tests.fake_claude import (
    fake_env,
    pid_alive,
    read_run,
    read_runs,
    wait_dead,
    wait_started,
)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    path.mkdir()
    return path


@pytest.fixture
async def dispatcher(tmp_path: Path, log_dir: Path) -> AsyncIterator[Dispatcher]:
    async with Dispatcher.open(
        make_config(tmp_path), env=fake_env(log_dir), jobs=JobStore(tmp_path / "jobs")
    ) as d:
        yield d


def req(task: str, agent: str = "backend", **kw: Any) -> DispatchRequest:
    return DispatchRequest(agent=agent, task=task, **kw)


async def test_dispatch_returns_the_answer_and_runs_in_the_agent_directory(
    dispatcher: Dispatcher, log_dir: Path, tmp_path: Path
) -> None:
    result = await dispatcher.dispatch(req("hello there", caller="infra", goal="greet"))
    assert result.success and result.result == "fake reply to: ## Goal"
    (run,) = read_runs(log_dir)
    assert run["cwd"] == str(tmp_path / "backend")
    assert run["stdin"] == "devnull"
    assert run["depth"] == "1"
    assert "## Dispatched by\ninfra" in run["prompt"] and "## Task\nhello there" in run["prompt"]
    assert result.session_id == run["argv"][run["argv"].index("--session-id") + 1]


async def test_a_task_too_long_for_one_argument_goes_to_the_child_on_stdin(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    task = "@fake reply=got it all\n" + "y" * 200_000 + "\nTHE END"  # Linux: 128 KiB per arg
    result = await dispatcher.dispatch(req(task))
    assert result.success and result.result == "got it all", result
    (run,) = read_runs(log_dir)
    assert run["stdin"] == "pipe" and run["stdin_bytes"] > 200_000
    assert "--" not in run["argv"] and run["prompt"].endswith("THE END\n\n" + STATUS_FOOTER)
    streamed = await dispatcher.dispatch_stream(req(task + " again"), _ignore)
    assert streamed.success and streamed.result == "got it all"


async def _ignore(event: ProgressEvent) -> None:
    pass


async def test_a_command_line_the_os_refuses_is_named_not_blamed_on_claude(
    tmp_path: Path, log_dir: Path
) -> None:
    long_instructions = "i" * 200_000  # these stay an argument (--append-system-prompt)
    cfg = make_config(
        tmp_path,
        agents=f"  big: {{directory: {tmp_path / 'web'}, instructions: {long_instructions}}}",
    )
    async with Dispatcher.open(cfg, env=fake_env(log_dir), jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("hello", agent="big"))
    assert result.success is False and result.error_type == "cli_error"
    assert "too long for the OS: one argument is 200023 bytes" in (result.error or "")
    assert result.hint is not None and "instructions" in result.hint
    assert read_runs(log_dir) == []


async def test_child_gets_depth_plus_one(tmp_path: Path, log_dir: Path) -> None:
    parent = {"CLAUDECODE": "1", "CLAUDE_CODE_ENTRYPOINT": "cli", "CLAUDE_CODE_SSE_PORT": "41234"}
    env = fake_env(log_dir, base={**os.environ, **parent}, AGENT_DISPATCH_DEPTH="1")
    async with Dispatcher.open(make_config(tmp_path), env=env, jobs=JobStore(tmp_path / "j")) as d:
        assert (await d.dispatch(req("nested"))).success
    (run,) = read_runs(log_dir)
    assert run["depth"] == "2"
    assert {name: run["env"][name] for name in parent} == dict.fromkeys(parent)


async def test_agent_timeout_kills_the_group_and_returns_a_resumable_session(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    with trio.fail_after(10):
        result = await dispatcher.dispatch(req("@fake grandchild=30\n@fake sleep=30\nslow"))
    assert result.error_type == "timeout" and not result.success
    (run,) = read_runs(log_dir)
    assert result.session_id == run["argv"][run["argv"].index("--session-id") + 1]
    assert "dispatch_session" in (result.hint or "")
    with trio.fail_after(5):
        await wait_dead(run["pid"], *run["grandchildren"])


async def test_a_result_followed_by_a_hang_until_the_deadline_is_a_success_not_a_timeout(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    # backend's own timeout is 2 s, shorter than the grace a finished leader gets to exit
    with trio.fail_after(10):
        result = await dispatcher.dispatch(req("@fake reply=all done\n@fake hang_after_result"))
    assert result.success is True and result.result == "all done"
    assert result.hint == (
        "The result was complete before the deadline (2s); claude did not exit after "
        "printing it, so the finished process was stopped."
    )
    (run,) = read_runs(log_dir)
    with trio.fail_after(5):
        await wait_dead(run["pid"])


async def test_cancelling_the_caller_kills_the_child_and_frees_the_slot(
    dispatcher: Dispatcher, log_dir: Path
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dispatcher.dispatch, req("@fake grandchild=30\n@fake sleep=30\nx"))
            (run,) = await wait_started(log_dir)
            nursery.cancel_scope.cancel()
        assert not pid_alive(run["pid"])
        await wait_dead(*run["grandchildren"])
    assert dispatcher.limiter.borrowed_tokens == 0


async def test_missing_directory_and_missing_claude_are_not_found(
    tmp_path: Path, log_dir: Path
) -> None:
    cfg = make_config(tmp_path)
    env = fake_env(log_dir, PATH="/nonexistent")
    async with Dispatcher.open(cfg, env=env, jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("t"))
        assert result.error_type == "not_found" and "claude" in (result.error or "")
    (tmp_path / "web").rmdir()
    async with Dispatcher.open(cfg, env=fake_env(log_dir), jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("t", agent="web"))
        assert result.error_type == "not_found" and "directory" in (result.error or "")
    assert read_runs(log_dir) == []


async def test_a_missing_claude_names_the_setting_that_named_it(
    tmp_path: Path, log_dir: Path
) -> None:
    missing = str(tmp_path / "nowhere" / "claude")
    env = fake_env(log_dir, AGENT_DISPATCH_CLAUDE=missing)
    async with Dispatcher.open(make_config(tmp_path), env=env, jobs=JobStore(tmp_path / "j")) as d:
        result = await d.dispatch(req("hello"))
    assert result.error_type == "not_found"
    assert result.error == f"claude executable not found (AGENT_DISPATCH_CLAUDE={missing!r})"
    assert result.hint is not None and "AGENT_DISPATCH_CLAUDE" in result.hint
    assert "npm install" not in result.hint


# -- ClaudeRunner on its own -------------------------------------------------------------


def run_spec(directory: Path, env: dict[str, str], prompt: str, **kw: Any) -> RunSpec:
    return RunSpec(
        agent="backend",
        directory=str(directory),
        invocation=Invocation(prompt=prompt, session_id=new_session_id(), **kw),
        env=env,
        timeout=10,
    )


async def test_a_run_is_startable_and_started_with_the_childs_process_group(
    tmp_path: Path, log_dir: Path
) -> None:
    spec = run_spec(tmp_path, fake_env(log_dir), "@fake reply=started\nhi")
    outcome: list[RunOutcome] = []

    async def run(task_status: trio.TaskStatus[int | None]) -> None:
        outcome.append(await ClaudeRunner().run(spec, task_status=task_status))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            pgid = await nursery.start(run)
    (recorded,) = read_runs(log_dir)
    assert pgid == recorded["pid"] == recorded["pgid"]
    assert outcome[0].returncode == 0 and b'"result":"started"' in outcome[0].stdout


async def test_a_streaming_run_hands_its_decoded_events_to_on_event(
    tmp_path: Path, log_dir: Path
) -> None:
    spec = run_spec(
        tmp_path, fake_env(log_dir), "@fake tool_use=Bash\n@fake reply=done\nx", stream=True
    )
    events: list[ProgressEvent] = []
    with trio.fail_after(10):
        await ClaudeRunner().run(spec, on_event=events.append)
    assert [e.kind for e in events] == ["text", "tool_use", "text"]
    assert events[-1].message == "done"


@pytest.mark.parametrize("grace", [0.1, 2.0])  # on each side of the 1.5 s default
async def test_a_child_ignoring_sigterm_gets_the_specs_grace_before_sigkill(
    tmp_path: Path, log_dir: Path, grace: float
) -> None:
    prompt = "@fake ignore_sigterm\n@fake sleep=30\nstubborn"
    spec = msgspec.structs.replace(run_spec(tmp_path, fake_env(log_dir), prompt), grace=grace)
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: ClaudeRunner().run(spec))
                (run,) = await wait_started(log_dir)
                cancelled_at = trio.current_time()
                scope.cancel()
        elapsed = trio.current_time() - cancelled_at
    assert grace <= elapsed < grace + 1
    assert read_run(log_dir, run["pid"])["end"] is None  # SIGKILLed: no end recorded
    assert not pid_alive(run["pid"])


def test_the_executable_is_the_env_override_then_the_setting_then_path(tmp_path: Path) -> None:
    for name in ("override", "configured", "claude"):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    env = {"PATH": str(tmp_path), CLAUDE_ENV_VAR: str(tmp_path / "override")}
    assert find_claude(env, str(tmp_path / "configured")) == str(tmp_path / "override")
    del env[CLAUDE_ENV_VAR]
    assert find_claude(env, str(tmp_path / "configured")) == str(tmp_path / "configured")
    assert find_claude(env) == str(tmp_path / "claude")
    assert find_claude(env, str(tmp_path / "missing")) is None  # a named path is not searched
    (tmp_path / "claude").chmod(0o644)
    assert find_claude(env) is None  # not executable
