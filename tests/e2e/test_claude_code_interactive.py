"""MCP tasks in an interactive Claude Code, end to end: the real CLI under a pty (no
``-p``: only the interactive terminal declares the tasks extension, MCP_TASKS.md 2.3),
our ``serve`` front as its MCP server, the fake Anthropic API as its model.

- A dispatch that outlasts the grace window becomes a task: the model gets Claude
  Code's placeholder at once, with our note naming the agent, and later the agent's
  answer as a ``<task-notification>`` that opens a new turn.
- TaskStop (deferred: the model loads it through ToolSearch first) sends
  ``tasks/cancel``: the job ends cancelled and its child is gone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from agent_dispatch.models import TERMINAL_STATUSES
from agent_dispatch.storage.jobs import Job
from tests.e2e.fake_anthropic import FakeAnthropic, RecordedRequest, Reply, text, tool_use
from tests.e2e.pty_driver import interactive_claude, prepare_home
from tests.e2e.task_sandbox import DISPATCH, DispatchSandbox, dispatch_sandbox
from tests.fake_claude import pid_alive, wait_dead

GRACE_S = 0.5  # the fake children below sleep well past it
LIMIT_S = 45.0  # one wait: the CLI's start (about 3 s) and a few model turns
CALL, SEARCH, STOP = "toolu_dispatch", "toolu_search", "toolu_stop"
NOTIFICATION = re.compile(r"<task-notification>.*?</task-notification>", re.DOTALL)
# Claude Code's placeholder when the server sent a note (MCP_TASKS.md 2.10).
PLACEHOLDER = re.compile(
    r'MCP tool "agent-dispatch/dispatch" started server-side task (?P<task>[!-~]+?),'
    r" running in the background as task (?P<local>\w+)\."
    r".*<mcp-server-note>\n(?P<note>.*)\n</mcp-server-note>"
    r'.*To stop it, use TaskStop with task_id "(?P=local)"',
    re.DOTALL,
)


def result_text(content: Any) -> str:
    """A tool_result's content as text (a string, or text / tool_reference blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict):
            parts.append(str(block.get("text") or block.get("tool_name") or ""))
    return "\n".join(parts)


def results(request: RecordedRequest) -> dict[str, str]:
    """This turn's tool results as text, by tool_use id."""
    return {str(r.get("tool_use_id")): result_text(r.get("content")) for r in request.tool_results}


def answering(call: str) -> Callable[[RecordedRequest], bool]:
    """Matches the request that carries the result of tool call ``call``."""
    return lambda request: call in results(request)


def notified(request: RecordedRequest) -> bool:
    return NOTIFICATION.search(request.user_text) is not None


async def settled_job(sandbox: DispatchSandbox) -> Job:
    """The sandbox's one job once its record is terminal. Callers bound the wait."""
    while True:
        jobs = sandbox.jobs_on_disk()
        if jobs and jobs[0].status in TERMINAL_STATUSES:
            [job] = jobs
            return job
        await trio.sleep(0.05)  # another process writes it: no event to wait on


@pytest.fixture
def home(claude_env: dict[str, str], project_dir: Path) -> Path:
    """The test HOME, primed so the CLI opens straight on its prompt. Tests take it as an
    argument: pytest-trio runs a fixture that depends on an async one (``fake_api``)
    only then; a ``usefixtures`` mark leaves it unrun."""
    path = Path(claude_env["HOME"])
    prepare_home(path, project_dir, claude_env["ANTHROPIC_API_KEY"])
    return path


async def test_a_dispatch_outlasting_the_grace_window_answers_as_a_task_notification(
    claude_bin: Path,
    claude_env: dict[str, str],
    home: Path,
    fake_api: FakeAnthropic,
    project_dir: Path,
    tmp_path: Path,
) -> None:
    task = "@fake sleep=3\n@fake reply=alpha's slow answer"
    children_then: list[list[dict[str, Any]]] = []  # as the placeholder reached the model

    def model(request: RecordedRequest) -> Reply:
        if notified(request):
            return text("Alpha answered.")
        if request.has_tool_result:
            children_then.append(sandbox.children())
            return text("Waiting for alpha.")
        return tool_use(DISPATCH, {"agent": "alpha", "task": task}, tool_use_id=CALL)

    fake_api.script(model)
    async with (
        dispatch_sandbox(tmp_path, project_dir, grace_seconds=GRACE_S) as sandbox,
        interactive_claude(
            claude_bin, claude_env, project_dir, args=sandbox.cli_args(DISPATCH), prompt="Ask."
        ) as cli,
    ):
        with cli.expecting("the dispatch's placeholder result", LIMIT_S):
            placeholder = await fake_api.wait_for_request(answering(CALL))
        body = results(placeholder)[CALL]
        started = PLACEHOLDER.search(body)
        assert started is not None, f"not a task's placeholder: {body}"
        with cli.expecting("the task notification", LIMIT_S):
            notification = await fake_api.wait_for_request(notified)

    [job] = sandbox.jobs_on_disk()
    assert fake_api.main_requests.index(placeholder) == 1  # the call's very next turn
    [[child]] = children_then
    assert child["end"] is None  # the task went to the background at once, not at its end
    [result] = placeholder.tool_results
    assert not result.get("is_error"), body
    assert started["task"] == job.id  # the task id is the job id
    assert started["note"] == (  # our modelImmediateResponse, as the model reads it
        f"Agent 'alpha' is working on this as job {job.id}. Its answer arrives as a task"
        " notification when it is done: do not dispatch it again."
    )
    found = NOTIFICATION.search(notification.user_text)
    assert found is not None
    note = found.group()
    assert f"<task-id>{started['local']}</task-id>" in note, note
    assert "<status>completed</status>" in note, note
    assert "alpha's slow answer" in note, note
    assert job.status == "done"
    assert job.result is not None and job.result.result == "alpha's slow answer"


async def test_taskstop_cancels_the_task_on_the_server_and_ends_its_child(
    claude_bin: Path,
    claude_env: dict[str, str],
    home: Path,
    fake_api: FakeAnthropic,
    project_dir: Path,
    tmp_path: Path,
) -> None:
    task = "@fake sleep=120\n@fake reply=never sent"
    local: list[str] = []  # the CLI's own id for the task, read from the placeholder

    def model(request: RecordedRequest) -> Reply:
        done = results(request)
        if STOP in done:
            return text("Stopped.")
        if SEARCH in done:  # TaskStop's schema is loaded now
            return tool_use("TaskStop", {"task_id": local[0]}, tool_use_id=STOP)
        if CALL in done:
            if started := PLACEHOLDER.search(done[CALL]):
                local.append(started["local"])
                search = {"query": "select:TaskStop", "max_results": 1}
                return tool_use("ToolSearch", search, tool_use_id=SEARCH)
            return text("No task to stop.")
        return tool_use(DISPATCH, {"agent": "alpha", "task": task}, tool_use_id=CALL)

    fake_api.script(model)
    allowed = (DISPATCH, "ToolSearch", "TaskStop")
    async with (
        dispatch_sandbox(tmp_path, project_dir, grace_seconds=GRACE_S) as sandbox,
        interactive_claude(
            claude_bin, claude_env, project_dir, args=sandbox.cli_args(*allowed), prompt="Ask."
        ) as cli,
    ):
        with cli.expecting("TaskStop's result", LIMIT_S):
            stopped = await fake_api.wait_for_request(answering(STOP))
        assert local, results(await fake_api.wait_for_request(answering(CALL)))
        with cli.expecting("the job's record ending", LIMIT_S):
            job = await settled_job(sandbox)
        [child] = sandbox.children()
        with cli.expecting("the child's end", LIMIT_S):
            await wait_dead(child["pid"])

    stop = results(stopped)[STOP]
    assert f"Task {local[0]} " in stop and '"task_type":"mcp_task"' in stop, stop
    assert job.status == "cancelled"
    assert job.error == "cancelled by the client (tasks/cancel)"  # tasks/cancel reached us
    assert child["pgid"] == job.child_pgid
    assert not pid_alive(child["pid"])
    with pytest.raises(ProcessLookupError):  # nothing is left of its process group
        os.killpg(child["pgid"], 0)
