"""The fake claude CLI behaves as its docstring says (and like the real CLI's output)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fake_claude import (
    CLAUDE_BIN,
    NO_INPUT,
    STREAM_NEEDS_VERBOSE,
    fake_env,
    pid_alive,
    read_run,
    read_runs,
    wait_started,
)

SESSION = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


def fake(
    log_dir: Path | None,
    *flags: str,
    prompt: str | None = "hello",
    stdin: Any = subprocess.DEVNULL,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    argv = [CLAUDE_BIN, "-p", *flags]
    if prompt is not None:
        argv += ["--", prompt]
    return subprocess.run(
        argv,
        env=fake_env(log_dir) | env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_json_prints_one_result_line_with_the_default_reply(log_dir: Path) -> None:
    proc = fake(log_dir, "--output-format", "json", "--session-id", SESSION)
    assert proc.returncode == 0
    (result,) = lines(proc)
    assert result["type"] == "result"
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"] == "fake reply to: hello"
    assert result["session_id"] == SESSION
    assert result["permission_denials"] == []


def test_default_reply_skips_directives_and_truncates(log_dir: Path) -> None:
    prompt = "@fake cost=0.5\n" + "x" * 200 + "\nmore"
    (result,) = lines(fake(log_dir, "--output-format", "json", prompt=prompt))
    assert result["result"] == "fake reply to: " + "x" * 80
    assert result["total_cost_usd"] == 0.5


def test_stream_json_requires_verbose_like_the_real_cli(log_dir: Path) -> None:
    proc = fake(log_dir, "--output-format", "stream-json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == STREAM_NEEDS_VERBOSE


def test_stream_json_prints_init_blocks_tool_results_and_result(log_dir: Path) -> None:
    prompt = "go\n@fake tool_use=Bash\n@fake deny=Write\n@fake retry=2\n@fake reply=done"
    proc = fake(
        log_dir, "--output-format", "stream-json", "--verbose", "--resume", "any-id", prompt=prompt
    )
    assert proc.returncode == 0
    out = lines(proc)
    assert [(m["type"], m.get("subtype")) for m in out[:3]] == [
        ("system", "init"),
        ("system", "api_retry"),
        ("system", "api_retry"),
    ]
    blocks = [m["message"]["content"] for m in out if m["type"] in ("assistant", "user")]
    assert all(len(content) == 1 for content in blocks)
    kinds = [content[0]["type"] for content in blocks]
    assert kinds == ["text", "tool_use", "tool_result"] * 2 + ["text"]
    result = out[-1]
    assert result["type"] == "result"
    assert result["result"] == "done"
    assert result["session_id"] == "any-id"
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Write"]
    assert all(m["session_id"] == "any-id" for m in out)


def test_json_verbose_prints_an_array(log_dir: Path) -> None:
    proc = fake(log_dir, "--output-format", "json", "--verbose")
    messages: list[dict[str, Any]] = json.loads(proc.stdout)
    assert [m["type"] for m in messages] == ["system", "assistant", "result"]


def test_text_format_prints_the_result_text(log_dir: Path) -> None:
    proc = fake(log_dir, prompt="hi\n@fake reply=line one\\nline two")
    assert proc.stdout == "line one\nline two\n"


@pytest.mark.parametrize(
    ("directive", "rc", "check"),
    [
        ("api_error=500", 1, {"subtype": "success", "is_error": True, "api_error_status": 500}),
        (
            "budget_stop",
            1,
            {
                "subtype": "error_max_budget_usd",
                "errors": ["Reached maximum budget ($0.25)"],
                "terminal_reason": "budget_exhausted",
            },
        ),
        ("max_turns", 1, {"subtype": "error_max_turns", "is_error": True}),
        ("exit=7", 7, {"subtype": "success"}),
        ('structured={"a": 1}', 0, {"structured_output": {"a": 1}, "result": '{"a": 1}'}),
    ],
)
def test_outcome_directives(log_dir: Path, directive: str, rc: int, check: dict[str, Any]) -> None:
    proc = fake(
        log_dir,
        "--output-format",
        "json",
        "--max-budget-usd",
        "0.25",
        prompt=f"x\n@fake {directive}",
    )
    assert proc.returncode == rc
    (result,) = lines(proc)
    assert {k: result.get(k) for k in check} == check
    if result["subtype"].startswith("error_"):
        assert "result" not in result


def test_raw_no_result_and_stderr(log_dir: Path) -> None:
    raw = fake(log_dir, "--output-format", "json", prompt="x\n@fake raw=not json\n@fake raw={}")
    assert raw.stdout == "not json\n{}\n"
    quiet = fake(log_dir, "--output-format", "json", prompt="x\n@fake no_result\n@fake stderr=oops")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "oops\n")


def test_no_session_mimics_an_unknown_resume_id(log_dir: Path) -> None:
    proc = fake(log_dir, "--output-format", "json", "-r", "abc", prompt="x\n@fake no_session")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "No conversation found with session ID: abc"


@pytest.mark.parametrize(
    ("flags", "prompt", "message"),
    [
        (["--bogus"], "x", "error: unknown option '--bogus'"),
        (["--output-format", "xml"], "x", "argument 'xml' is invalid"),
        (["--session-id", "nope"], "x", "Invalid session ID"),
        (["--max-budget-usd", "0"], "x", "--max-budget-usd"),
        (["--permission-mode", "yolo"], "x", "argument 'yolo' is invalid"),
        ([], None, NO_INPUT),
    ],
)
def test_bad_command_lines_fail_like_the_real_cli(
    log_dir: Path, flags: list[str], prompt: str | None, message: str
) -> None:
    proc = fake(log_dir, *flags, prompt=prompt)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_variadic_tools_swallow_a_prompt_not_behind_double_dash(log_dir: Path) -> None:
    argv = [CLAUDE_BIN, "-p", "--allowedTools", "Bash", "Read", "the prompt"]
    proc = subprocess.run(
        argv, env=fake_env(log_dir), stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    assert proc.returncode == 1
    assert NO_INPUT in proc.stderr.decode()
    ok = fake(log_dir, "--allowedTools=Bash", "--output-format", "json")
    assert ok.returncode == 0
    assert read_runs(log_dir)[-1]["allowed_tools"] == ["Bash"]


def test_bad_directive_exits_2(log_dir: Path) -> None:
    proc = fake(log_dir, prompt="x\n@fake sleep=soon")
    assert proc.returncode == 2
    assert "bad directive" in proc.stderr


def test_defaults_from_the_environment_lose_to_the_prompt(log_dir: Path) -> None:
    proc = fake(
        log_dir,
        "--output-format",
        "json",
        prompt="x\n@fake cost=2",
        FAKE_CLAUDE_DEFAULTS="@fake cost=1\n@fake reply=from env",
    )
    (result,) = lines(proc)
    assert (result["total_cost_usd"], result["result"]) == (2, "from env")


def test_record_has_the_documented_fields(log_dir: Path, tmp_path: Path) -> None:
    proc = fake(
        log_dir,
        "--output-format",
        "json",
        "--model",
        "m1",
        AGENT_DISPATCH_DEPTH="2",
        CLAUDECODE="1",
    )
    (run,) = read_runs(log_dir)
    assert proc.returncode == 0
    assert run["argv"] == ["-p", "--output-format", "json", "--model", "m1", "--", "hello"]
    assert run["pgid"] == os.getpgid(0)  # subprocess.run: no new session
    assert run["prompt"] == "hello"
    assert run["depth"] == "2"
    assert run["env"]["CLAUDECODE"] == "1"
    assert run["stdin"] == "devnull"
    assert run["model"] == "m1"
    assert run["end"]["rc"] == 0
    assert (log_dir / f"{run['pid']}.started").exists()
    assert not [p for p in os.listdir(log_dir) if p.endswith(".tmp")]


def test_a_piped_stdin_is_recorded_and_read_into_the_prompt(log_dir: Path) -> None:
    piped = subprocess.run(
        [CLAUDE_BIN, "-p", "--output-format", "json", "--", "a"],
        env=fake_env(log_dir),
        input=b"more",
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert piped.returncode == 0
    run = read_runs(log_dir)[-1]
    assert run["stdin"] == "pipe"
    assert run["prompt"] == "a\nmore"


def test_sigterm_exits_143_and_records_it(log_dir: Path) -> None:
    proc = subprocess.Popen(
        [CLAUDE_BIN, "-p", "--", "x\n@fake sleep=30"],
        env=fake_env(log_dir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (log_dir / f"{proc.pid}.started").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.terminate()
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            pytest.fail(f"fake ignored SIGTERM: {read_run(log_dir, proc.pid)}\n{status}")
        assert rc == 143
    finally:
        proc.kill()
        proc.wait()
    assert read_run(log_dir, proc.pid)["end"]["signal"] == "SIGTERM"


async def test_grandchildren_are_recorded_and_wait_started_sees_the_run(
    log_dir: Path, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: trio.run_process(
                [
                    CLAUDE_BIN,
                    "-p",
                    "--",
                    "x\n@fake grandchild=30\n@fake wait_file=" + str(tmp_path / "go"),
                ],
                env=fake_env(log_dir),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
            )
        )
        with trio.fail_after(10):
            (run,) = await wait_started(log_dir)
        (grandchild,) = run["grandchildren"]
        assert pid_alive(grandchild)
        assert run["end"] is None
        (tmp_path / "go").touch()
    os.kill(grandchild, signal.SIGKILL)  # trio.run_process does not kill the group


def test_pid_alive_treats_zombies_as_dead() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen(["/bin/sh", "-c", "exit 0"])
    try:
        deadline = time.monotonic() + 10
        while pid_alive(child.pid):  # exits, stays a zombie until we reap it
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{child.pid}")
    finally:
        child.wait()
    assert not pid_alive(child.pid)
