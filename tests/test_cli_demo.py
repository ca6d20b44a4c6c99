"""`agent-dispatch demo`: the real server and client, simulated or with a claude CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_dispatch.claude.invocation import STATUS_FOOTER, build_prompt
from agent_dispatch.cli import demo_agent
from agent_dispatch.cli.demo import _logged_in
from tests.fake_claude import BIN_DIR, CLAUDE_BIN

SECTIONS = (
    "list_agents",
    'dispatch(agent="billing-api"',
    "dispatch_parallel",
    "merged by billing-api",
    "dispatch_async",
    "dispatch_wait",
    "job done",
    "from the usage journal",
    "billing-api  3 runs, 100% succeeded",  # dispatch, a parallel item, the aggregation
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_DISPATCH_", "ANTHROPIC_", "CLAUDE", "FAKE_CLAUDE"))
    }
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(PATH=str(empty), HOME=str(home))
    env.update(extra)
    return env


# The demo runs the tests below check, by name: (demo arguments, environment).
DEMO_RUNS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "simulated": ((), {}),
    "logged in": (
        (),
        {"ANTHROPIC_API_KEY": "sk-test", "FAKE_CLAUDE_PYTHON": sys.executable, "PATH": BIN_DIR},
    ),
    "--simulated": (
        ("--simulated", "--keep"),
        {"ANTHROPIC_API_KEY": "sk-test", "AGENT_DISPATCH_CLAUDE": CLAUDE_BIN},
    ),
    "failing agents": (
        (),
        {
            "ANTHROPIC_API_KEY": "sk-test",
            "FAKE_CLAUDE_PYTHON": sys.executable,
            "FAKE_CLAUDE_DEFAULTS": "@fake api_error=401",
            "PATH": BIN_DIR,
        },
    ),
}


class _Demo:
    def __init__(self, tmp_path: Path, *args: str, **extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent_dispatch", "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path, **extra),
        )

    def result(self) -> subprocess.CompletedProcess[str]:
        out, err = self.proc.communicate(timeout=120)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, _Demo]]:
    """Every demo run of this module, started together: each is two Pythons importing
    the mcp SDK (seconds of CPU), so they overlap instead of queueing."""
    runs = {
        name: _Demo(tmp_path_factory.mktemp("demo"), *args, **extra)
        for name, (args, extra) in DEMO_RUNS.items()
    }
    try:
        yield runs
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
            run.proc.communicate()


def test_demo_runs_simulated_without_claude_and_labels_every_line(demos):
    proc = demos["simulated"].result()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) > 20
    assert all(line.startswith("[simulated]") for line in lines), proc.stdout
    for section in SECTIONS:
        assert section in proc.stdout, section
    assert "no logged-in claude CLI found" in proc.stdout
    assert "POST /invoices creates an invoice" in proc.stdout  # answered from CLAUDE.md
    assert "Using tool: Read" in proc.stdout  # the async job's recorded progress
    assert "outcome done" in proc.stdout and "STATUS" not in proc.stdout  # read, not shown
    assert "FAILED" not in proc.stdout
    assert "Traceback" not in proc.stderr
    workspace = next(ln for ln in lines if "throw-away" in ln).split(" in ")[-1]
    assert not os.path.exists(workspace)  # cleaned up


def test_demo_uses_a_logged_in_claude_for_real(demos):
    """With a claude on PATH and credentials, the agents run it (here: the test fake)."""
    proc = demos["logged in"].result()
    assert proc.returncode == 0, proc.stderr
    assert "[simulated]" not in proc.stdout
    assert "agents run your claude CLI" in proc.stdout
    assert "fake reply to: Which endpoint creates an invoice?" in proc.stdout
    for section in SECTIONS:
        assert section in proc.stdout, section


def test_demo_simulated_flag_wins_over_a_logged_in_claude(demos):
    proc = demos["--simulated"].result()
    assert proc.returncode == 0, proc.stderr
    assert "forced by --simulated" in proc.stdout
    assert all(line.startswith("[simulated]") for line in proc.stdout.splitlines())


def test_demo_keep_leaves_its_setup_and_the_commands_to_look_at_it(demos, tmp_path):
    proc = demos["--simulated"].result()
    assert proc.returncode == 0, proc.stderr
    lines = [line.removeprefix("[simulated]").strip() for line in proc.stdout.splitlines()]
    kept = next(line for line in lines if line.startswith("kept "))
    workspace = kept.split()[1].rstrip(";")
    try:
        assert os.path.isdir(workspace)
        stats_line = next(line for line in lines if line.endswith("agent-dispatch stats"))
        env = dict(_env(tmp_path))
        for assignment in stats_line.split()[:-2]:
            name, _, value = assignment.partition("=")
            env[name] = value
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
        stats = subprocess.run(
            [sys.executable, "-m", "agent_dispatch", "stats", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        report = json.loads(stats.stdout)
        assert report["records"] == 5 and report["skipped_lines"] == 0  # the tour's dispatches
        assert {a["agent"] for a in report["agents"]} == {"billing-api", "web-app"}
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def test_demo_fails_when_the_agents_fail(demos):
    """A claude that looks logged in but cannot answer: the demo says so and exits 1."""
    proc = demos["failing agents"].result()
    assert proc.returncode == 1
    assert "FAILED (cli_error)" in proc.stdout
    assert proc.stderr.startswith("error: demo: ")
    assert "agent-dispatch demo --simulated" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_logged_in_guess(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert not _logged_in({"HOME": str(home)})
    assert _logged_in({"HOME": str(home), "ANTHROPIC_API_KEY": "k"})
    assert _logged_in({"HOME": str(home), "CLAUDE_CODE_OAUTH_TOKEN": "t"})
    (home / ".claude.json").write_text('{"numStartups": 3}')
    assert not _logged_in({"HOME": str(home)})
    (home / ".claude.json").write_text('{"oauthAccount": {"emailAddress": "x"}}')
    assert _logged_in({"HOME": str(home)})
    (home / ".claude.json").unlink()
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text("{}")
    assert _logged_in({"HOME": str(home)})


# -- the simulated agent ---------------------------------------------------------------


def test_demo_agent_parses_the_dispatcher_argv():
    flags, prompt = demo_agent.parse(
        ["-p", "--output-format", "json", "--session-id", "s-1", "--allowedTools=Bash,Read",
         "--max-budget-usd", "0.5", "--", "What", "now?"]
    )  # fmt: skip
    assert flags["--session-id"] == "s-1" and flags["--allowedTools"] == "Bash,Read"
    assert prompt == "What now?"


def test_demo_agent_answers_from_claude_md(tmp_path):
    (tmp_path / "CLAUDE.md").write_text(
        "# X\n\nX sells apples. Oranges are stored in the cellar.\n"
    )
    answer = demo_agent.answer("Where are the oranges stored?", str(tmp_path))
    assert answer.endswith("Oranges are stored in the cellar.")
    assert answer.startswith("[simulated ")
    merged = demo_agent.answer(
        "Combine.\n\n### Result 1: agent a\nTask: t\n\n[simulated a] One.\n\n"
        "### Result 2: agent b\nTask: t\n\nTwo.",
        str(tmp_path),
    )
    assert "a: One." in merged and "b: Two." in merged


def test_demo_agent_answers_the_task_not_the_status_request(tmp_path):
    (tmp_path / "CLAUDE.md").write_text("# X\n\nX sells apples. The last line is blue.\n")
    prompt = build_prompt("What does X sell?")
    assert STATUS_FOOTER.startswith(demo_agent.STATUS_ASK.lstrip())  # the two stay in step
    assert demo_agent.answer(prompt, str(tmp_path)).endswith("X sells apples.")
    merged = demo_agent.answer(
        build_prompt("Combine.\n\n### Result 1: agent a (partial: more)\nTask: t\n\nOne."),
        str(tmp_path),
    )
    assert merged.endswith("a: One.")


def test_demo_agent_without_claude_md(tmp_path):
    assert "no CLAUDE.md" in demo_agent.answer("hi", str(tmp_path))


def test_demo_agent_prints_a_result_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-S", demo_agent.__file__, "-p", "--output-format", "json",
         "--session-id", "abc", "--", "hello"],
        capture_output=True, text=True, cwd=tmp_path, timeout=30, check=True,
    )  # fmt: skip
    import json

    result = json.loads(proc.stdout)
    assert result["type"] == "result" and result["session_id"] == "abc"
    assert result["is_error"] is False
