"""The real claude CLI, run directly, against our fake Anthropic API.

These prove the fake and the isolated environment before the MCP server is put
in between (that tier builds on the same fixtures). Run with ``-s`` to see the
measured wall time of each CLI run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import h11
import pytest
import trio

from tests.e2e.conftest import ClaudeRunner
from tests.e2e.fake_anthropic import (
    Drop,
    FakeAnthropic,
    api_error,
    text,
    tool_round_trip,
    tool_use,
)

JSON = ("-p", "--output-format", "json")
STREAM = ("-p", "--output-format", "stream-json", "--verbose")
# With CLAUDE_CODE_MAX_RETRIES=0 an API error ends the run at once.
FAST_FAILURE_S = 3.0


async def test_json_run_returns_the_fake_reply_session_and_cost(
    claude: ClaudeRunner, fake_api: FakeAnthropic
) -> None:
    fake_api.script([text("Hello from the fake.", input_tokens=1000, output_tokens=200)])
    session_id = str(uuid.uuid4())

    run = await claude.run(
        *JSON,
        "--session-id",
        session_id,
        "--append-system-prompt=Answer as a pirate.",
        "--",
        "hello there",
    )

    assert run.returncode == 0, run.stderr
    result = run.result()
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"] == "Hello from the fake."
    assert result["session_id"] == session_id
    assert result["num_turns"] == 1
    assert result["total_cost_usd"] > 0
    [request] = fake_api.main_requests
    assert request.streaming
    assert "hello there" in request.user_text
    assert request.model == result["modelUsage"].popitem()[0]
    assert request.headers["x-claude-code-session-id"] == session_id
    assert "Bash" in request.tool_names
    assert "Answer as a pirate." in request.system_text


async def test_allowed_bash_tool_runs_in_cwd_and_its_result_goes_back(
    claude: ClaudeRunner, fake_api: FakeAnthropic, project_dir: Path
) -> None:
    fake_api.script(
        tool_round_trip(
            tool_use("Bash", {"command": "touch created.txt && echo made"}, preamble="On it."),
            text("The file is there."),
        )
    )

    run = await claude.run(*STREAM, "--allowedTools=Bash", "--", "create the file")

    assert run.returncode == 0, run.stderr
    assert (project_dir / "created.txt").exists()
    first, second = fake_api.main_requests
    assert not first.has_tool_result
    [tool_result] = second.tool_results
    assert tool_result["tool_use_id"] == "toolu_fake_1"
    assert "made" in json.dumps(tool_result["content"])
    lines = run.lines()
    assert lines[0]["type"] == "system"
    assert lines[0]["subtype"] == "init"
    blocks = [b for o in lines if o["type"] == "assistant" for b in o["message"]["content"]]
    assert [b["type"] for b in blocks] == ["text", "tool_use", "text"]
    assert blocks[1]["name"] == "Bash"
    assert blocks[1]["input"] == {"command": "touch created.txt && echo made"}
    result = run.result()
    assert result["result"] == "The file is there."
    assert result["num_turns"] == 2
    assert result["permission_denials"] == []


async def test_default_mode_denies_a_write_and_still_succeeds(
    claude: ClaudeRunner, fake_api: FakeAnthropic, project_dir: Path
) -> None:
    fake_api.script(
        tool_round_trip(
            tool_use("Bash", {"command": "touch created.txt"}),
            text("Could not write."),
        )
    )

    run = await claude.run(*JSON, "--", "create the file")

    assert run.returncode == 0, run.stderr
    assert not (project_dir / "created.txt").exists()
    result = run.result()
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    [denial] = result["permission_denials"]
    assert denial["tool_name"] == "Bash"
    assert denial["tool_input"]["command"] == "touch created.txt"
    [tool_result] = fake_api.main_requests[-1].tool_results
    assert tool_result["is_error"] is True


@pytest.mark.parametrize("with_tool", [False, True], ids=["text-turn", "tool-turn"])
async def test_usage_above_the_budget_stops_the_run(
    claude: ClaudeRunner, fake_api: FakeAnthropic, with_tool: bool
) -> None:
    # 2M input tokens cost dollars: far above the budget after the first turn.
    big_in, big_out = 2_000_000, 50_000
    first = (
        tool_use("Bash", {"command": "echo hi"}, input_tokens=big_in, output_tokens=big_out)
        if with_tool
        else text("x", input_tokens=big_in, output_tokens=big_out)
    )
    fake_api.script(tool_round_trip(first, text("never reached")))

    run = await claude.run(*JSON, "--max-budget-usd", "0.0001", "--", "spend")

    assert run.returncode == 1
    result = run.result()
    assert result["subtype"] == "error_max_budget_usd"
    assert result["is_error"] is True
    assert "result" not in result  # even when the turn itself finished
    assert result["total_cost_usd"] > 0.0001
    assert result["errors"] == ["Reached maximum budget ($0.0001)"]
    assert len(fake_api.main_requests) == 1


@pytest.mark.parametrize(
    ("status", "error_type"), [(500, "api_error"), (401, "authentication_error")]
)
async def test_api_error_ends_the_run_fast_as_an_error(
    claude: ClaudeRunner, fake_api: FakeAnthropic, status: int, error_type: str
) -> None:
    fake_api.script([api_error(status, "Internal server error (fake)")])

    run = await claude.run(*JSON, "--", "hello")

    assert run.returncode == 1
    assert run.wall_s < FAST_FAILURE_S
    result = run.result()
    assert result["is_error"] is True
    assert result["subtype"] == "success"
    assert result["api_error_status"] == status
    assert result["api_error_type"] == error_type
    assert "Internal server error (fake)" in result["result"]
    assert len(fake_api.main_requests) == 1


async def test_dropped_connection_ends_the_run_as_an_error(
    claude: ClaudeRunner, fake_api: FakeAnthropic
) -> None:
    fake_api.script([Drop()])

    run = await claude.run(*JSON, "--", "hello")

    assert run.returncode == 1
    assert run.wall_s < FAST_FAILURE_S
    result = run.result()
    assert result["is_error"] is True
    assert result["api_error_status"] is None
    assert len(fake_api.main_requests) == 1


async def test_stream_dropped_mid_way_falls_back_to_a_plain_request(
    claude: ClaudeRunner, fake_api: FakeAnthropic
) -> None:
    # Even with CLAUDE_CODE_MAX_RETRIES=0 the CLI repeats a broken stream once
    # as a non-streaming request: the fake's plain JSON format.
    fake_api.script([Drop(mid_stream=True), text("Answered without streaming.")])

    run = await claude.run(*JSON, "--", "hello")

    assert run.returncode == 0, run.stderr
    assert run.result()["result"] == "Answered without streaming."
    first, second = fake_api.main_requests
    assert first.streaming
    assert not second.streaming
    assert second.messages == first.messages


async def test_a_delayed_reply_is_waited_for(claude: ClaudeRunner, fake_api: FakeAnthropic) -> None:
    fake_api.script([text("late but fine", delay=1.0)])

    run = await claude.run(*JSON, "--", "hello")

    assert run.returncode == 0, run.stderr
    assert run.result()["result"] == "late but fine"
    assert run.wall_s >= 1.0


async def test_resume_sends_the_earlier_turn_as_history(
    claude: ClaudeRunner, fake_api: FakeAnthropic
) -> None:
    fake_api.script([text("The first answer."), text("The second answer.")])
    session_id = str(uuid.uuid4())

    first = await claude.run(*JSON, "--session-id", session_id, "--", "first question")
    second = await claude.run(*JSON, "--resume", session_id, "--", "second question")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert second.result()["result"] == "The second answer."
    assert second.result()["session_id"] == session_id
    request = fake_api.main_requests[-1]
    roles_and_text = [(m["role"], json.dumps(m["content"])) for m in request.messages]
    users = [t for role, t in roles_and_text if role == "user"]
    assistants = [t for role, t in roles_and_text if role == "assistant"]
    assert any("first question" in t for t in users)
    assert any("The first answer." in t for t in assistants)
    assert "second question" in users[-1]


async def test_unknown_session_on_resume_fails_with_a_clear_message(
    claude: ClaudeRunner, fake_api: FakeAnthropic
) -> None:
    missing = str(uuid.uuid4())

    run = await claude.run(*JSON, "--resume", missing, "--", "hello")

    assert run.returncode == 1
    assert f"No conversation found with session ID: {missing}" in run.stderr
    assert fake_api.main_requests == []


# ------------------------------------------------- the fake on its own (no CLI)


async def _http(
    base_url: str, method: str, target: str, body: object | None = None
) -> tuple[int, bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    payload = b"" if body is None else json.dumps(body).encode()
    conn = h11.Connection(h11.CLIENT)
    headers = [("host", host), ("content-length", str(len(payload)))]
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            request = h11.Request(method=method, target=target, headers=headers)
            await stream.send_all(conn.send(request) or b"")
            await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            status, data = 0, bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, bytes(data)


async def test_fake_answers_plain_json_and_probes(fake_api: FakeAnthropic) -> None:
    fake_api.script([tool_use("Read", {"file_path": "/x"})])
    tools = [{"name": "Read"}]
    body = {"model": "m", "max_tokens": 10, "messages": [], "tools": tools}

    status, raw = await _http(fake_api.base_url, "POST", "/v1/messages?beta=true", body)
    assert status == 200
    message = json.loads(raw)
    assert message["stop_reason"] == "tool_use"
    assert message["content"][0]["name"] == "Read"
    assert message["usage"]["input_tokens"] == 10

    status, _ = await _http(fake_api.base_url, "HEAD", "/")
    assert status == 200
    status, raw = await _http(fake_api.base_url, "GET", "/v1/odd")
    assert status == 404
    assert json.loads(raw)["type"] == "error"
    status, raw = await _http(fake_api.base_url, "POST", "/v1/messages/count_tokens", body)
    assert json.loads(raw) == {"input_tokens": 100}
    assert [r.method for r in fake_api.requests] == ["POST", "HEAD", "GET", "POST"]
    assert fake_api.requests[0].query == "beta=true"


async def test_fake_keeps_the_script_for_main_requests(fake_api: FakeAnthropic) -> None:
    fake_api.script([text("scripted")])
    aux = {"model": "m", "max_tokens": 1, "messages": []}

    _, raw = await _http(fake_api.base_url, "POST", "/v1/messages", aux)
    assert json.loads(raw)["content"] == [{"type": "text", "text": "OK."}]
    _, raw = await _http(fake_api.base_url, "POST", "/v1/messages", {**aux, "tools": [{}]})
    assert json.loads(raw)["content"] == [{"type": "text", "text": "scripted"}]
    with trio.fail_after(1):
        main = await fake_api.wait_for_request()
    assert main is fake_api.main_requests[0]
    assert len(fake_api.messages_requests) == 2
