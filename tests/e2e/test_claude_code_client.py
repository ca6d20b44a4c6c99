"""Claude Code as our client: the real CLI loads `agent-dispatch serve` from --mcp-config.

This is how users run the server. The CLI connects at start-up, lists our tools
(answered early, while the SDK still imports: see agent_dispatch/server/early.py),
offers them to the model, and calls one when the (fake) model asks; the call
is served by the SDK, which must have taken the early handshake as its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from agent_dispatch.server.early import load_handshake
from tests.e2e.conftest import ClaudeRunner
from tests.e2e.fake_anthropic import FakeAnthropic, text, tool_round_trip, tool_use

TOOL = "mcp__agent-dispatch__list_agents"


async def test_the_real_cli_lists_our_tools_and_calls_one(
    claude: ClaudeRunner, fake_api: FakeAnthropic, project_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "agents.yaml"
    agents = {"agents": {"alpha": {"directory": str(project_dir), "description": "e2e billing"}}}
    config.write_text(yaml.safe_dump(agents))
    server = {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "agent_dispatch", "serve"],
        "env": {
            "AGENT_DISPATCH_CONFIG": str(config),
            "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "jobs"),
        },
    }
    mcp_config = json.dumps({"mcpServers": {"agent-dispatch": server}})
    fake_api.script(tool_round_trip(tool_use(TOOL, {}), text("Alpha is there.")))

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

    assert run.returncode == 0, run.stderr
    init = run.lines()[0]
    assert init["subtype"] == "init"
    assert {"name": "agent-dispatch", "status": "connected"}.items() <= init["mcp_servers"][
        0
    ].items()
    ours = {name for name in init["tools"] if name.startswith("mcp__agent-dispatch__")}
    assert ours == {f"mcp__agent-dispatch__{name}" for name in our_tool_names()}
    _, second = fake_api.main_requests  # the model asked for the tool, then answered
    [result] = second.tool_results
    content = json.dumps(result["content"])
    assert "alpha" in content and "e2e billing" in content, content
    assert not result.get("is_error"), content
    assert run.result()["result"] == "Alpha is there."


def our_tool_names() -> set[str]:
    handshake = load_handshake()
    assert handshake is not None
    return {tool["name"] for tool in handshake.answer(handshake.latest, "tools/list")["tools"]}
