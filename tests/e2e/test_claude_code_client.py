"""Claude Code as our client: the real CLI loads `agent-dispatch serve` from --mcp-config.

This is how users run the server: the front, relaying to the setup's service (started
by the front, in this test's own runtime dir, stopped at the end). The CLI connects at
start-up (Claude Code 2.1.332 opens with `server/discover`), lists our tools, offers
them to the model, and calls one when the (fake) model asks.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from agent_dispatch.server.app import build_server
from agent_dispatch.service.dispatcher import Dispatcher
from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.storage.jobs import JobStore
from tests.e2e.conftest import ClaudeRunner
from tests.e2e.fake_anthropic import FakeAnthropic, text, tool_round_trip, tool_use
from tests.relay_support import stop_services

TOOL = "mcp__agent-dispatch__list_agents"


async def test_the_real_cli_lists_our_tools_and_calls_one(
    claude: ClaudeRunner, fake_api: FakeAnthropic, project_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "agents.yaml"
    runtime = Path(tempfile.mkdtemp(prefix="adrt-", dir="/tmp"))  # short: a socket path
    agents = {"agents": {"alpha": {"directory": str(project_dir), "description": "e2e billing"}}}
    config.write_text(yaml.safe_dump(agents))
    server = {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "agent_dispatch", "serve"],
        "env": {
            "AGENT_DISPATCH_CONFIG": str(config),
            "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "jobs"),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        },
    }
    mcp_config = json.dumps({"mcpServers": {"agent-dispatch": server}})
    fake_api.script(tool_round_trip(tool_use(TOOL, {}), text("Alpha is there.")))

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
            "Which agents can I dispatch to?",
        )
    finally:
        stop_services(runtime)
        shutil.rmtree(runtime, ignore_errors=True)

    assert run.returncode == 0, run.stderr
    init = run.lines()[0]
    assert init["subtype"] == "init"
    assert {"name": "agent-dispatch", "status": "connected"}.items() <= init["mcp_servers"][
        0
    ].items()
    ours = {name for name in init["tools"] if name.startswith("mcp__agent-dispatch__")}
    listed = await our_tool_names(config, tmp_path)
    assert ours == {f"mcp__agent-dispatch__{name}" for name in listed}
    _, second = fake_api.main_requests  # the model asked for the tool, then answered
    [result] = second.tool_results
    content = json.dumps(result["content"])
    assert "alpha" in content and "e2e billing" in content, content
    assert not result.get("is_error"), content
    assert run.result()["result"] == "Alpha is there."


async def our_tool_names(config: Path, tmp_path: Path) -> set[str]:
    """What the SDK lists for this config, asked in-process."""
    store = ConfigStore(config)
    async with Dispatcher.open(store, env={}, jobs=JobStore(tmp_path / "jobs")) as dispatcher:
        return {tool.name for tool in await build_server(dispatcher, store).list_tools()}
