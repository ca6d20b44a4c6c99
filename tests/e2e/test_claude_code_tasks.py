"""MCP tasks and the real CLI: headless `claude -p` never declares the tasks extension
(MCP_TASKS.md section 3), so a dispatch longer than the grace window stays an inline
result; a task there would reach the model as "Unsupported result type 'task'".
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from tests.e2e.conftest import ClaudeRunner
from tests.e2e.fake_anthropic import FakeAnthropic, text, tool_round_trip, tool_use
from tests.fake_claude import BIN_DIR
from tests.relay_support import stop_services

TOOL = "mcp__agent-dispatch__dispatch"


async def test_claude_p_gets_a_slow_dispatch_inline_not_as_a_task(
    claude: ClaudeRunner, fake_api: FakeAnthropic, project_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "agents.yaml"
    jobs = tmp_path / "jobs"
    runtime = Path(tempfile.mkdtemp(prefix="adrt-", dir="/tmp"))  # short: a socket path
    config.write_text(
        yaml.safe_dump(
            {
                "agents": {"alpha": {"directory": str(project_dir)}},
                # the child is the fake claude; it outlasts the grace window tenfold
                "settings": {"claude_path": f"{BIN_DIR}/claude", "task_grace_seconds": 0.1},
            }
        )
    )
    server = {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "agent_dispatch", "serve"],
        "env": {
            "AGENT_DISPATCH_CONFIG": str(config),
            "AGENT_DISPATCH_JOBS_DIR": str(jobs),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "FAKE_CLAUDE_PYTHON": sys.executable,
        },
    }
    mcp_config = json.dumps({"mcpServers": {"agent-dispatch": server}})
    task = "@fake sleep=1\n@fake reply=slow but inline"
    fake_api.script(
        tool_round_trip(tool_use(TOOL, {"agent": "alpha", "task": task}), text("Done."))
    )
    try:
        run = await claude.run(
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            f"--mcp-config={mcp_config}",
            "--strict-mcp-config",
            f"--allowedTools={TOOL}",
            "--",
            "Ask alpha.",
        )
    finally:
        stop_services(runtime)
        shutil.rmtree(runtime, ignore_errors=True)

    assert run.returncode == 0, run.stderr
    _, second = fake_api.main_requests
    [result] = second.tool_results
    content = json.dumps(result["content"])
    assert "slow but inline" in content, content
    assert not result.get("is_error"), content
    assert not list(jobs.glob("*.json"))  # no task was made: every task is a job record
