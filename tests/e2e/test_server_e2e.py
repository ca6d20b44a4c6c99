"""The real claude CLI against our fake Anthropic API, through our real MCP server.

Each test starts ``agent-dispatch serve`` as a child process, talks MCP to it
over stdio, and lets it run the pinned CLI (``AGENT_DISPATCH_CLAUDE``) in
``project_dir`` against ``fake_api``. Run with ``-s`` to see wall times.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from agent_dispatch.claude.invocation import STATUS_FOOTER
from tests.e2e.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    api_error,
    text,
    tool_round_trip,
    tool_use,
)
from tests.e2e.server_harness import (
    ProgressLog,
    ServerUnderTest,
    assert_no_processes,
    is_alive,
    served,
    stdin_of,
    wait_gone,
)

WAIT_S = 30.0  # a bound on waiting for the CLI to reach the fake


async def test_dispatch_returns_the_reply_session_cost_and_sends_our_sections(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    fake_api.script([text("The answer from the fake.", input_tokens=1000, output_tokens=200)])

    result = await server.call(
        "dispatch",
        agent="worker",
        task="Summarise the repository.",
        caller="the e2e suite",
        goal="Prove the prompt sections reach the API.",
        context="Only the README matters.",
    )

    assert result["success"] is True
    assert result["agent"] == "worker"
    assert result["result"] == "The answer from the fake."
    assert result["num_turns"] == 1
    assert result["cost_usd"] > 0
    assert result["duration_ms"] > 0
    assert "error" not in result
    [request] = fake_api.main_requests
    assert uuid.UUID(result["session_id"])
    assert request.headers["x-claude-code-session-id"] == result["session_id"]
    prompt = request.user_text
    assert "## Goal\nProve the prompt sections reach the API." in prompt
    assert "## Dispatched by\nthe e2e suite" in prompt
    assert "## Context\nOnly the README matters." in prompt
    assert "## Task\nSummarise the repository." in prompt
    assert prompt.index("## Goal") < prompt.index("## Dispatched by") < prompt.index("## Task")

    again = await server.call(
        "dispatch",
        agent="worker",
        task="Summarise the repository.",
        caller="the e2e suite",
        goal="Prove the prompt sections reach the API.",
        context="Only the README matters.",
    )

    assert again["cached"] is True
    assert again["result"] == "The answer from the fake."
    assert len(fake_api.main_requests) == 1


async def test_the_cli_sees_no_stdin_pipe_and_starts_without_the_stdin_wait(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    # A CLI with a stdin pipe waits up to 3 s for data before it calls the API.
    release = trio.Event()
    fake_api.script([text("Quick.", hold=release)])
    results: list[dict[str, Any]] = []

    async def dispatch() -> None:
        results.append(await server.call("dispatch", agent="worker", task="Be quick."))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatch)
        with trio.fail_after(WAIT_S):
            request = await fake_api.wait_for_request()
        # The CLI is alive, waiting for the held reply: look at its stdin.
        pid = server.claude_pid()
        stdin = stdin_of(pid)
        release.set()
    wall = trio.current_time() - start
    to_request = request.received_at - start

    print(f"call to API request: {to_request:.2f} s; whole dispatch: {wall:.2f} s")
    assert stdin == "/dev/null"
    assert to_request < 3.0
    assert wall < 3.0
    [result] = results
    assert result["success"] is True
    assert result["result"] == "Quick."


async def test_a_context_too_long_for_one_argument_reaches_the_api_whole_and_fast(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    # Linux caps one argument at 128 KiB: such a prompt goes to the CLI's stdin.
    fake_api.script([text("Read all of it.")])
    context = "".join(f"line {i}: {'z' * 60}\n" for i in range(4000))  # ~280 KB
    start = trio.current_time()
    result = await server.call("dispatch", agent="worker", task="Count the lines.", context=context)
    wall = trio.current_time() - start

    assert result["success"] is True, result
    assert result["result"] == "Read all of it."
    [request] = fake_api.main_requests
    assert "line 0: " in request.user_text and "line 3999: " in request.user_text
    assert request.user_text.rstrip().endswith(f"## Task\nCount the lines.\n\n{STATUS_FOOTER}")
    assert wall < 3.0  # stdin was closed after the prompt: no 3 s wait for more


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [
        ('{"answer": 42, "files": ["a.py"]}', {"answer": 42, "files": ["a.py"]}),
        ('```json\n{"answer": 42}\n```', {"answer": 42}),
        ("Sorry, I have no JSON for you.", None),
    ],
    ids=["json", "fenced", "prose"],
)
async def test_response_format_json_parses_the_reply(
    server: ServerUnderTest, fake_api: FakeAnthropic, reply: str, parsed: object
) -> None:
    fake_api.script([text(reply)])

    result = await server.call(
        "dispatch", agent="worker", task="Report as JSON.", response_format="json"
    )

    assert result["success"] is True
    assert result["result"] == reply
    assert "parsed_result" in result
    assert result["parsed_result"] == parsed
    [request] = fake_api.main_requests
    assert "## Response format" in request.user_text


async def test_the_status_line_the_agent_ends_with_becomes_its_outcome(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    fake_api.script([text('{"done": 1}\n\nSTATUS: partial two tables left')])

    result = await server.call(
        "dispatch", agent="worker", task="Migrate, report as JSON.", response_format="json"
    )

    assert result["success"] is True, result
    assert (result["result"], result["parsed_result"]) == ('{"done": 1}', {"done": 1})
    assert (result["outcome"], result["outcome_reason"]) == ("partial", "two tables left")
    assert f'session_id="{result["session_id"]}"' in result["hint"]
    [request] = fake_api.main_requests
    assert request.user_text.rstrip().endswith(STATUS_FOOTER)


async def test_dispatch_stream_reports_text_and_tool_calls_in_order(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    fake_api.script(
        tool_round_trip(
            tool_use(
                "Bash", {"command": "echo streamed > streamed.txt"}, preamble="Writing the file."
            ),
            text("The file is written."),
        )
    )
    progress = ProgressLog()

    result = await server.call(
        "dispatch_stream", progress, agent="builder", task="Write streamed.txt."
    )

    assert result["success"] is True
    assert result["result"] == "The file is written."
    assert result["num_turns"] == 2
    with trio.fail_after(WAIT_S):
        messages = await progress.wait_for(3)
    assert messages == ["Writing the file.", "Using tool: Bash", "The file is written."]
    assert (server.project / "streamed.txt").read_text() == "streamed\n"


async def test_dispatch_session_continues_the_conversation(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    fake_api.script([text("The first answer."), text("The second answer.")])

    first = await server.call("dispatch", agent="worker", task="The first question?")
    second = await server.call(
        "dispatch_session",
        agent="worker",
        task="The second question?",
        session_id=first["session_id"],
    )

    assert second["success"] is True
    assert second["result"] == "The second answer."
    assert second["session_id"] == first["session_id"]
    history = fake_api.main_requests[-1].messages
    users = [json.dumps(m["content"]) for m in history if m["role"] == "user"]
    assistants = [json.dumps(m["content"]) for m in history if m["role"] == "assistant"]
    assert any("The first question?" in t for t in users)
    assert any("The first answer." in t for t in assistants)
    assert "The second question?" in users[-1]


async def test_a_denied_write_is_reported_and_allowed_tools_let_it_run(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    fake_api.script(
        tool_round_trip(tool_use("Bash", {"command": "touch created.txt"}), text("Done."))
    )
    created = server.project / "created.txt"

    denied = await server.call("dispatch", agent="worker", task="Create created.txt.")

    assert denied["success"] is True
    assert denied["denied_tools"] == ["Bash"]
    assert 'update_agent(name="worker", allowed_tools="Bash")' in denied["hint"]
    assert "cached" not in denied
    assert not created.exists()
    assert len(fake_api.main_requests) == 2  # the tool call, then its (error) result

    again = await server.call("dispatch", agent="worker", task="Create created.txt.")

    assert "cached" not in again  # a run with denials is never cached
    assert again["denied_tools"] == ["Bash"]
    assert len(fake_api.main_requests) == 4

    update = await server.call("update_agent", name="worker", allowed_tools="Bash")
    allowed = await server.call("dispatch", agent="worker", task="Create created.txt.")

    assert update == {"updated": "worker", "fields": ["allowed_tools"]}
    assert allowed["success"] is True
    assert allowed["result"] == "Done."
    assert "denied_tools" not in allowed
    assert created.exists()


async def test_usage_above_the_budget_is_a_budget_error_with_the_session(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    # 2M input tokens cost dollars; the agent "capped" may spend $0.0001.
    fake_api.script([text("Expensive.", input_tokens=2_000_000, output_tokens=50_000)])

    result = await server.call("dispatch", agent="capped", task="Spend a lot.")

    assert result["success"] is False
    assert result["error_type"] == "budget"
    assert result["budget_exceeded"] is True
    assert "Reached maximum budget ($0.0001)" in result["error"]
    assert result["cost_usd"] > 0.0001
    [request] = fake_api.main_requests
    assert result["session_id"] == request.headers["x-claude-code-session-id"]
    assert 'update_agent(name="capped", max_budget_usd=0.01)' in result["hint"]  # in cents
    assert "dispatch_session" in result["hint"]


@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "Internal server error (fake)"), (401, "Invalid API key (fake)")],
)
async def test_an_api_error_fails_fast_as_a_cli_error(
    server: ServerUnderTest, fake_api: FakeAnthropic, status: int, message: str
) -> None:
    fake_api.script([api_error(status, message)])

    result = await server.call("dispatch", agent="worker", task="Hello?")

    assert result["success"] is False
    assert result["error_type"] == "cli_error"
    assert message in result["error"]
    assert str(status) in result["error"]
    assert server.last_wall_s < 3.0  # CLAUDE_CODE_MAX_RETRIES=0: no retries
    assert len(fake_api.main_requests) == 1


async def test_a_timeout_kills_the_cli_and_leaves_a_resumable_session(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    never = trio.Event()
    fake_api.script([text("Too late.", hold=never), text("Resumed.")])
    results: list[dict[str, Any]] = []

    async def dispatch() -> None:
        # Agent "hasty" has `timeout: 2` in its config.
        results.append(await server.call("dispatch", agent="hasty", task="Take your time."))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatch)
        with trio.fail_after(WAIT_S):
            request = await fake_api.wait_for_request()
        pid = server.claude_pid()
    [result] = results

    assert result["success"] is False
    assert result["error_type"] == "timeout"
    assert result["error"] == "timed out after 2s"
    assert result["session_id"] == request.headers["x-claude-code-session-id"]
    assert "dispatch_session" in result["hint"]
    assert 2.0 <= server.last_wall_s < 5.0  # the deadline, then SIGTERM and a short grace
    assert not is_alive(pid)
    await assert_no_processes(server.project)

    resumed = await server.call(
        "dispatch_session",
        agent="worker",
        task="Go on.",
        session_id=result["session_id"],
    )

    assert resumed["success"] is True
    assert resumed["result"] == "Resumed."
    assert "Take your time." in fake_api.main_requests[-1].user_text


async def test_dispatch_parallel_runs_the_items_at_once(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    # Every reply takes the API 2 s, like a real model's: what fan-out overlaps.
    latency = 2.0
    release = trio.Event()

    def answer(request: RecordedRequest) -> Reply:
        item = re.search(r"Parallel item \d", request.user_text)
        if item is None:
            return text("Single answer.", delay=latency)
        # Held until all four are in flight: only concurrent runs get their answers.
        return text(f"Answer to {item.group()}.", delay=latency, hold=release)

    fake_api.script(answer)
    await server.call("dispatch", agent="worker", task="A single item.")
    single = server.last_wall_s
    items = [{"agent": "worker", "task": f"Parallel item {i}."} for i in range(1, 5)]
    outcome: list[dict[str, Any]] = []

    async def dispatch_parallel() -> None:
        outcome.append(await server.call("dispatch_parallel", dispatches=items))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatch_parallel)
        with trio.fail_after(WAIT_S):
            await fake_api.wait_until(lambda: len(fake_api.main_requests) == 5)
        release.set()
    parallel = server.last_wall_s

    print(f"one dispatch: {single:.2f} s; four in parallel: {parallel:.2f} s")
    [answers] = outcome
    assert [r["result"] for r in answers["results"]] == [
        f"Answer to Parallel item {i}." for i in range(1, 5)
    ]
    assert all(r["success"] for r in answers["results"])
    assert parallel < 2 * single  # four in a row take four times as long


async def test_an_async_job_runs_to_completion(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    fake_api.script([text("Done in the background.")])

    job = await server.call("dispatch_async", agent="worker", task="Work in the background.")
    done = await server.call("dispatch_wait", job_id=job["job_id"], timeout_seconds=30)

    assert job["status"] == "pending"
    assert re.fullmatch(r"[0-9a-f]{32}", job["job_id"])
    assert done["status"] == "done"
    assert done["timed_out_waiting"] is False
    assert done["result"]["success"] is True
    assert done["result"]["result"] == "Done in the background."
    assert "Done in the background." in done["progress"]


async def test_cancelling_a_running_job_kills_its_cli(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    never = trio.Event()
    fake_api.script([text("Never sent.", hold=never)])

    job = await server.call("dispatch_async", agent="worker", task="Work for a long time.")
    with trio.fail_after(WAIT_S):
        await fake_api.wait_for_request()
    pid = server.claude_pid()
    cancelled = await server.call("dispatch_cancel", job_id=job["job_id"])

    assert cancelled == {
        "job_id": job["job_id"],
        "outcome": "cancelled_running",
        "status": "cancelled",
    }
    assert server.last_wall_s < 3.0  # SIGTERM, and at most a 1.5 s grace
    assert not is_alive(pid)
    await assert_no_processes(server.project)
    status = await server.call("dispatch_status", job_id=job["job_id"])
    assert status["status"] == "cancelled"
    assert status["error"] == "cancelled by dispatch_cancel"


# -- beyond the list: the other ways a run must end --------------------------


async def test_a_client_cancelling_its_call_kills_the_cli(
    server: ServerUnderTest, fake_api: FakeAnthropic
) -> None:
    never = trio.Event()
    fake_api.script([text("Never sent.", hold=never), text("Still serving.")])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: server.call("dispatch", agent="worker", task="Abandon me."))
        with trio.fail_after(WAIT_S):
            await fake_api.wait_for_request()
        pid = server.claude_pid()
        nursery.cancel_scope.cancel()  # the client sends notifications/cancelled

    assert await wait_gone([pid], seconds=3.0) == []
    await assert_no_processes(server.project)
    after = await server.call("dispatch", agent="worker", task="Are you there?")
    assert after["result"] == "Still serving."


async def test_server_shutdown_kills_a_running_job_and_records_it(
    claude_bin: Path,
    claude_env: dict[str, str],
    project_dir: Path,
    tmp_path: Path,
    fake_api: FakeAnthropic,
) -> None:
    never = trio.Event()
    fake_api.script([text("Never sent.", hold=never)])
    root = tmp_path / "server"
    root.mkdir()

    async with served(root, project_dir, claude_bin, claude_env) as server:
        job = await server.call("dispatch_async", agent="worker", task="Outlive the server.")
        with trio.fail_after(WAIT_S):
            await fake_api.wait_for_request()
        pid = server.claude_pid()
    # The client closed the server's stdin; `served` checked nothing runs in the project.

    assert not is_alive(pid)
    record = json.loads((root / "jobs" / f"{job['job_id']}.json").read_text())
    assert record["status"] == "cancelled"
    assert record["error"] == "cancelled: the server shut down"
