"""`agent-dispatch test NAME [TASK]` against the fake claude, and its diagnoses."""

from __future__ import annotations

import re
import shlex
import sys
from typing import Any

import pytest

from agent_dispatch.claude import classify as claude_classify
from agent_dispatch.claude.invocation import STATUS_FOOTER
from agent_dispatch.cli.test_cmd import DEFAULT_TASK, diagnose
from agent_dispatch.models import AgentConfig, DispatchResult, ErrorType, Settings
from tests.fake_claude import CLAUDE_BIN, read_runs
from tests.test_cli import Cli, assert_error


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    harness = Cli(tmp_path, monkeypatch, capsys)
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", CLAUDE_BIN)
    monkeypatch.setenv("FAKE_CLAUDE_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    return harness


def runs(cli: Cli) -> list[dict[str, Any]]:
    return read_runs(cli.tmp / "runs")


def test_test_runs_one_dispatch_in_the_agents_directory(cli):
    directory = cli.agent("a")
    res = cli("test", "a")
    assert res.rc == 0, res
    assert res.out.splitlines()[1].startswith("ok    a answered")
    assert f"fake reply to: {DEFAULT_TASK}" in res.out
    [run] = runs(cli)
    assert run["cwd"] == str(directory.resolve())
    assert run["prompt"] == f"{DEFAULT_TASK}\n\n{STATUS_FOOTER}"
    assert "--session-id" in run["argv"]


def test_test_shows_the_outcome_the_agent_reported(cli):
    cli.agent("a")
    res = cli("test", "a")
    assert res.rc == 0, res
    assert "  outcome: unknown (the agent wrote no STATUS line)" in res.out  # the fake's default
    done = cli("test", "a", "Fix it\n@fake reply=Fixed.\\nSTATUS: done")
    assert "  outcome: done\n---\nFixed.\n---" in done.out
    assert "warn" not in done.out


def test_test_says_how_to_continue_a_partial_or_blocked_run(cli):
    directory = cli.agent("a")
    res = cli("test", "a", "Migrate\n@fake reply=Half of it.\\nSTATUS: partial orders left")
    assert res.rc == 0, res  # the run worked; the agent says what is left
    lines = res.out.splitlines()
    sid = lines[2].removeprefix("  session: ")
    assert lines[3:7] == ["  outcome: partial (orders left)", "---", "Half of it.", "---"]
    assert lines[7] == "warn  the agent says it did not finish; continue the same conversation:"
    assert lines[8] == f"  fix: cd {shlex.quote(str(directory))} && claude --resume {sid}"
    blocked = cli("test", "a", "Deploy\n@fake reply=Cannot.\\nSTATUS: blocked (no key)")
    assert "  outcome: blocked (no key)" in blocked.out
    assert "warn  the agent says it is blocked; continue the same conversation:" in blocked.out


def test_test_with_a_task_and_timeout(cli):
    cli.agent("a")
    res = cli("test", "a", "List the routes", "--timeout", "30")
    assert res.rc == 0, res
    assert "(timeout 30s)" in res.out
    assert "fake reply to: List the routes" in res.out


def test_test_stream_shows_live_progress(cli):
    cli.agent("a")
    res = cli("test", "a", "Look around\n@fake tool_use=Bash\n@fake retry", "--stream")
    assert res.rc == 0, res
    assert "  * Using tool: Bash" in res.out
    assert "  ! API retry" in res.out
    assert "  | fake reply to: Look around" in res.out
    [run] = runs(cli)
    assert "stream-json" in run["argv"]


def test_a_denied_tool_prints_a_fix_that_the_cli_accepts(cli):
    cli.agent("a", "--allowed-tools", "Read")
    res = cli("test", "a", "Run the tests\n@fake deny=Bash")
    assert res.rc == 0, res
    assert "warn  the agent was denied: Bash" in res.out
    [fix] = res.fixes()
    assert fix == ["update", "a", "--allowed-tools", "Read,Bash"]  # keeps what it had
    assert cli(*fix).rc == 0
    assert cli.load().agents["a"].allowed_tools == ("Read", "Bash")
    assert cli("test", "a").rc == 0
    assert "--allowedTools=Read,Bash" in runs(cli)[-1]["argv"]


def test_a_budget_stop_suggests_commands_that_work_when_pasted(cli):
    cli.agent("a")
    res = cli("test", "a", "Big job\n@fake budget_stop")
    assert res.rc == 1
    assert "FAIL  a: budget:" in res.out
    [fix] = res.fixes()
    assert fix == ["update", "a", "--max-budget-usd", "1"]
    # the adapter's own hint names a command with a value, as pasteable as the fix
    [hinted] = re.findall(r"`(agent-dispatch update [^`]*)`", res.out)
    assert shlex.split(hinted) == ["agent-dispatch", *fix]
    assert cli(*fix).rc == 0
    assert cli.load().agents["a"].max_budget_usd == 1.0


def test_a_missing_directory_is_diagnosed(cli):
    directory = cli.agent("a")
    (directory / "CLAUDE.md").unlink()
    directory.rmdir()
    res = cli("test", "a")
    assert res.rc == 1
    assert "FAIL  a: not_found" in res.out
    fixes = res.fixes()
    assert ["remove", "a"] in fixes
    assert ["update", "a", "--directory", "DIR"] in fixes
    assert runs(cli) == []
    assert cli("remove", "a").rc == 0


def test_a_missing_claude_is_diagnosed(cli, monkeypatch):
    monkeypatch.delenv("AGENT_DISPATCH_CLAUDE")
    cli.agent("a")
    res = cli("test", "a")
    assert res.rc == 1
    assert "not_found: claude executable not found" in res.out
    assert "fix: npm install -g @anthropic-ai/claude-code" in res.out
    assert ["doctor"] in res.fixes()


def test_a_cli_error_is_diagnosed(cli):
    cli.agent("a")
    res = cli("test", "a", "x\n@fake api_error=500")
    assert res.rc == 1
    assert "FAIL  a: cli_error: API Error: 500" in res.out
    assert ["doctor"] in res.fixes()


def test_a_nested_shell_is_refused_and_explained(cli, monkeypatch):
    cli.agent("a")
    monkeypatch.setenv("AGENT_DISPATCH_DEPTH", "3")
    res = cli("test", "a")
    assert res.rc == 1
    assert "FAIL  a: recursion" in res.out
    assert "fix: env -u AGENT_DISPATCH_DEPTH agent-dispatch test a" in res.out
    assert runs(cli) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["test", "ghost"], ["unknown agent 'ghost'"]),
        (["test", "a", "--timeout", "-1"], ["timeout_seconds"]),
        (["test", "a", "--timeout", "nan"], ["timeout_seconds"]),
        (["test", "a", "   "], ["task: must not be empty"]),
        (["test"], ["requires an argument"]),
    ],
)
def test_test_rejects_bad_input(cli, argv, words):
    cli.agent("a")
    assert_error(cli(*argv), *words)
    assert runs(cli) == []


def test_test_on_a_broken_config(cli):
    cli.write_config("agents:\n  a: {directory: /tmp, timeout: -1}\n")
    assert_error(cli("test", "a"), "agents.a.timeout")


# -- diagnoses as data ------------------------------------------------------------------


def _failed(error_type: ErrorType, error: str = "boom", **extra: Any) -> DispatchResult:
    return DispatchResult(agent="a", success=False, error=error, error_type=error_type, **extra)


def _timed_out(seconds: float, agent_timeout: float = 300) -> DispatchResult:
    """A run of agent `a` that hit its deadline, as the classifier reports it (advice included)."""
    return claude_classify.classify(
        agent="a", returncode=-15, stdout=b"", stderr=b"", timed_out=True, session_id=None,
        timeout_seconds=seconds, agent_timeout=agent_timeout,
    )  # fmt: skip


def _over_budget(cap: float) -> DispatchResult:
    """A run of agent `a` stopped at its cost cap, as the classifier reports it."""
    line = b'{"type":"result","subtype":"error_max_budget_usd","is_error":true,"total_cost_usd":1}'
    return claude_classify.classify(
        agent="a", returncode=1, stdout=line, stderr=b"", timed_out=False, session_id=None,
        max_budget_usd=cap,
    )  # fmt: skip


def test_timeout_diagnosis_doubles_the_time():
    agent = AgentConfig(directory="/tmp", timeout=300)
    why, fixes = diagnose("a", DEFAULT_TASK, agent, Settings(), _timed_out(300), 300)
    assert "300s" in why
    assert fixes == ["agent-dispatch update a --timeout 600", "agent-dispatch test a --timeout 600"]
    _, fixes = diagnose("a", "Do it", agent, Settings(), _timed_out(5000), 5000)
    assert fixes[1] == "agent-dispatch test a 'Do it' --timeout 7200"
    _, fixes = diagnose("a", DEFAULT_TASK, agent, Settings(), _timed_out(10), 10)
    assert fixes == ["agent-dispatch test a --timeout 60"]  # never lowers the agent's 300 s


def test_permission_diagnosis_merges_with_inherited_defaults():
    agent = AgentConfig(directory="/tmp")
    settings = Settings(default_allowed_tools=("Read",))
    result = _failed("permission", denied_tools=["Write", "Read"])
    _, fixes = diagnose("a", DEFAULT_TASK, agent, settings, result, 300)
    assert fixes == [
        "agent-dispatch update a --allowed-tools Read,Write",
        "agent-dispatch update a --permission-mode acceptEdits",
    ]
    _, fixes = diagnose("a", DEFAULT_TASK, agent, settings, _failed("permission"), 300)
    assert fixes == ["agent-dispatch update a --permission-mode acceptEdits"]


def test_budget_diagnosis_doubles_the_cap():
    agent = AgentConfig(directory="/tmp", max_budget_usd=0.25)
    why, fixes = diagnose("a", DEFAULT_TASK, agent, Settings(), _over_budget(0.25), 300)
    assert "$0.25" in why
    assert fixes == ["agent-dispatch update a --max-budget-usd 0.5"]


def test_usage_limit_diagnosis_has_no_command_to_run():
    agent = AgentConfig(directory="/tmp")
    why, fixes = diagnose("a", DEFAULT_TASK, agent, Settings(), _failed("usage_limit"), 300)
    assert "limit" in why and fixes == []


@pytest.mark.parametrize("fix_index", [0, 1])
def test_timeout_fixes_are_accepted_when_fed_back(tmp_path, monkeypatch, capsys, fix_index):
    cli = Cli(tmp_path, monkeypatch, capsys)
    cli.agent("a")
    agent = cli.load().agents["a"]
    _, fixes = diagnose("a", DEFAULT_TASK, agent, Settings(), _timed_out(300), 300)
    argv = shlex.split(fixes[fix_index])[1:]
    if argv[0] == "test":  # a real run: give it the fake claude
        monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", CLAUDE_BIN)
        monkeypatch.setenv("FAKE_CLAUDE_PYTHON", sys.executable)
    assert cli(*argv).rc == 0


def test_the_hint_on_the_terminal_names_commands_not_tool_calls(cli):
    cli.agent("a")
    res = cli("test", "a", "Big job\n@fake budget_stop")
    assert res.rc == 1
    assert "  hint: Raise the cap with `agent-dispatch update a --max-budget-usd 1`." in res.out
    assert "update_agent(" not in res.out
