"""`init` and `doctor`, with a tiny fake `claude` on PATH that records how it was called."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.test_cli import Cli, assert_error

# Records argv as one JSON line per call; answers --version and `mcp list` / `mcp add-json`
# from files beside it so each test can set the scene.
_FAKE = """#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
def scene(name, default=b""):
    try:
        with open(os.path.join(here, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return default
args = sys.argv[1:]
if args == ["--version"]:
    sys.stdout.write("2.1.197 (Claude Code)\\n")
elif args[:2] == ["mcp", "list"]:
    sys.stdout.buffer.write(scene("mcp-list"))
elif args[:2] == ["mcp", "add-json"]:
    err = scene("add-error")
    if err:
        sys.stderr.buffer.write(err)
        sys.exit(1)
    sys.stdout.write("Added stdio MCP server agent-dispatch to user config\\n")
else:
    sys.exit(3)
"""


class FakeClaude:
    def __init__(self, bin_dir: Path) -> None:
        self.dir = bin_dir
        self.path = bin_dir / "claude"
        self.path.write_text(_FAKE.format(python=sys.executable))
        self.path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def scene(self, name: str, data: bytes) -> None:
        (self.dir / name).write_bytes(data)

    def registered(self, command: str) -> None:
        line = f"agent-dispatch: {command} serve - \x1b[32m\u2713 Connected\x1b[0m\n"
        self.scene("mcp-list", b"Checking MCP server health\xff\xfe...\n\n" + line.encode())


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


@pytest.fixture
def claude(cli) -> FakeClaude:
    return FakeClaude(cli.bin)


# -- init ---------------------------------------------------------------------------------


def test_init_creates_the_config_and_registers_with_the_exact_add_json_call(cli, claude):
    res = cli("init")
    assert res.rc == 0, res
    assert f"created {cli.config}" in res.out
    assert oct(cli.config.stat().st_mode & 0o777) == "0o600"
    assert oct(cli.config.parent.stat().st_mode & 0o777) == "0o700"
    assert cli.load().agents == {}
    [call] = claude.calls()
    assert call[:3] == ["mcp", "add-json", "agent-dispatch"]
    assert call[4:] == ["--scope", "user"]
    spec = json.loads(call[3])
    assert list(spec) == ["type", "command", "args"]
    assert spec["type"] == "stdio"
    assert os.path.isabs(spec["command"]) and os.access(spec["command"], os.X_OK)
    assert spec["args"][-1] == "serve"
    assert call[3] == json.dumps(spec, separators=(",", ":"))  # compact, as documented
    assert "registered with Claude Code" in res.out


def test_init_leaves_an_existing_config_alone(cli, claude):
    cli.write_config("# mine\nagents: {}\n")
    before = cli.config.read_bytes()
    res = cli("init")
    assert res.rc == 0, res
    assert "left unchanged" in res.out
    assert cli.config.read_bytes() == before
    assert len(claude.calls()) == 1


def test_init_reports_a_broken_existing_config_but_still_registers(cli, claude):
    cli.write_config("agents: [\n")
    res = cli("init")
    assert res.rc == 1
    assert "invalid" in res.err
    assert len(claude.calls()) == 1


def test_init_without_claude_prints_the_command_to_run_later(cli):
    res = cli("init")
    assert res.rc == 0, res
    assert cli.config.exists()
    assert "not found" in res.out
    [line] = [ln for ln in res.out.splitlines() if "claude mcp add-json" in ln]
    argv = shlex.split(line.split(":", 1)[1])
    assert argv[:3] == ["claude", "mcp", "add-json"]
    assert argv[3:5] == ["agent-dispatch", argv[4]]
    assert json.loads(argv[4])["args"][-1] == "serve"
    assert argv[5:] == ["--scope", "user"]


def test_init_when_already_registered_says_how_to_re_register(cli, claude):
    claude.scene("add-error", b"MCP server agent-dispatch already exists in user config\n")
    res = cli("init")
    assert res.rc == 0, res
    assert "already has an MCP server named agent-dispatch" in res.out
    assert "claude mcp remove agent-dispatch --scope user" in res.out


def test_init_when_registration_fails_is_one_error_with_the_manual_command(cli, claude):
    claude.scene("add-error", b"\x1b[31mError: \xffsomething broke\x1b[0m\n")
    res = cli("init")
    assert_error(
        res, "registering with Claude Code failed", "something broke", "claude mcp", quiet=False
    )
    assert "created" in res.out  # the config part did happen
    assert "\x1b" not in res.err


# -- doctor ---------------------------------------------------------------------------------


def _healthy(cli: Cli, claude: FakeClaude) -> None:
    cli.agent("a")
    cli.agent("b")
    assert cli("group", "add", "g", "--members", "a,b").rc == 0
    claude.registered(str(cli.bin / "claude"))  # any existing absolute path


def test_doctor_json_on_a_healthy_setup(cli, claude):
    _healthy(cli, claude)
    res = cli("doctor", "--json")
    assert res.rc == 0, res
    report = msgspec.json.decode(res.out)
    assert report["ok"] is True and report["problems"] == 0 and report["warnings"] == 0
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["claude"]["status"] == "ok"
    assert "2.1.197" in by_name["claude"]["message"]
    assert by_name["mcp registration"]["status"] == "ok"
    assert "\x1b" not in by_name["mcp registration"]["message"]
    assert {"config", "agent a", "agent b", "jobs"} <= set(by_name)
    assert all(c["status"] == "ok" for c in report["checks"])
    assert ["--version"] in claude.calls() and ["mcp", "list"] in claude.calls()
    assert cli("doctor", "--strict").rc == 0


def test_doctor_human_output_on_a_healthy_setup(cli, claude):
    _healthy(cli, claude)
    res = cli("doctor")
    assert res.rc == 0
    assert res.out.splitlines()[-1].startswith("all good")


def test_doctor_json_on_a_broken_setup_names_every_fix(cli, claude):
    gone = cli.agent("gone")
    cli.agent("fine")
    (gone / "CLAUDE.md").unlink()
    gone.rmdir()
    cli.write_config(
        cli.config.read_text()
        + "groups:\n"
        + "  g:\n    members: [{agent: fine, use_for: does things}, {agent: ghost}]\n"
        + "  solo:\n    members: [{agent: ghost}]\n"
    )
    claude.scene("mcp-list", b"other-server: /usr/bin/other - \xe2\x9c\x93 Connected\n")
    res = cli("doctor", "--json")
    assert res.rc == 1
    report = msgspec.json.decode(res.out)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["agent gone"]["status"] == "fail"
    assert by_name["group g"]["status"] == "fail"
    assert by_name["group solo"]["status"] == "fail"
    assert by_name["mcp registration"] == {
        "name": "mcp registration",
        "status": "fail",
        "message": "agent-dispatch is not registered with Claude Code",
        "fix": "agent-dispatch init",
    }
    assert report["problems"] == 4
    assert all(c["fix"] for c in report["checks"] if c["status"] in ("fail", "warn"))
    assert by_name["group g"]["fix"] == "agent-dispatch group update g --members 'fine:does things'"
    assert by_name["group solo"]["fix"] == "agent-dispatch group remove solo"


def test_doctor_fixes_are_accepted_when_fed_back(cli, claude):
    cli.agent("a")
    claude.registered(str(cli.bin / "claude"))
    cli.write_config(
        cli.config.read_text() + "groups:\n  g:\n    members: [{agent: a}, {agent: ghost}]\n"
    )
    report = msgspec.json.decode(cli("doctor", "--json").out)
    [group] = [c for c in report["checks"] if c["name"] == "group g"]
    argv = shlex.split(group["fix"])
    assert argv[0] == "agent-dispatch"
    assert cli(*argv[1:]).rc == 0
    assert cli("doctor").rc == 0


def test_doctor_warns_when_claude_code_cannot_connect(cli, claude):
    cli.agent("a")
    line = f"agent-dispatch: {cli.bin / 'claude'} serve - \u2717 Failed to connect\n"
    claude.scene("mcp-list", line.encode())
    res = cli("doctor", "--json")
    assert res.rc == 0
    [reg] = [c for c in msgspec.json.decode(res.out)["checks"] if c["name"] == "mcp registration"]
    assert reg["status"] == "warn" and "could not connect" in reg["message"]
    assert cli("doctor", "--strict").rc == 1


def test_doctor_flags_a_registration_whose_command_is_gone(cli, claude):
    cli.agent("a")
    claude.registered("/nonexistent/bin/agent-dispatch")
    report = msgspec.json.decode(cli("doctor", "--json").out)
    [reg] = [c for c in report["checks"] if c["name"] == "mcp registration"]
    assert reg["status"] == "fail"
    assert "claude mcp remove agent-dispatch --scope user" in reg["fix"]


def test_doctor_without_claude(cli):
    cli.agent("a")
    res = cli("doctor", "--json")
    assert res.rc == 1
    by_name = {c["name"]: c for c in msgspec.json.decode(res.out)["checks"]}
    assert by_name["claude"]["status"] == "fail"
    assert "npm install -g @anthropic-ai/claude-code" in by_name["claude"]["fix"]
    assert by_name["mcp registration"]["status"] == "skip"


def test_doctor_on_a_non_utf8_config(cli, claude):
    claude.registered(str(cli.bin / "claude"))
    cli.config.parent.mkdir(parents=True)
    cli.config.write_bytes(b"agents:\n  x: {directory: /caf\xe9}\n")
    res = cli("doctor")
    assert res.rc == 1
    assert "FAIL  config" in res.out and "not valid UTF-8" in res.out
    assert "fix: edit" in res.out
    assert "Traceback" not in res.err


def test_doctor_does_not_send_you_to_doctor(cli, claude):
    claude.registered(str(cli.bin / "claude"))
    cli.config.mkdir(parents=True)  # a directory where the file should be
    res = cli("doctor")
    assert res.rc == 1 and "FAIL  config" in res.out
    assert "fix: edit" in res.out and "agents.example.yaml" in res.out
    assert "agent-dispatch doctor" not in res.out


def test_doctor_strict_fails_on_warnings_only(cli, claude):
    claude.registered(str(cli.bin / "claude"))
    directory = cli.project("bare", claude_md=None)
    assert cli("add", "bare", str(directory), "--description", "x").rc == 0
    res = cli("doctor", "--json")
    assert res.rc == 0
    report = msgspec.json.decode(res.out)
    assert (report["problems"], report["warnings"]) == (0, 1)
    strict = cli("doctor", "--json", "--strict")
    assert strict.rc == 1
    assert msgspec.json.decode(strict.out)["ok"] is False


def test_doctor_warns_about_a_config_others_can_read(cli, claude):
    claude.registered(str(cli.bin / "claude"))
    cli.agent("a")
    cli.config.chmod(0o644)
    report = msgspec.json.decode(cli("doctor", "--json").out)
    [mode] = [c for c in report["checks"] if c["status"] == "warn"]
    assert mode["fix"] == f"chmod 600 {cli.config}"


def test_doctor_reports_unusable_job_storage(cli, claude):
    claude.registered(str(cli.bin / "claude"))
    cli.agent("a")
    cli.jobs.write_text("not a directory")
    res = cli("doctor", "--json")
    assert res.rc == 1
    by_name = {c["name"]: c for c in msgspec.json.decode(res.out)["checks"]}
    assert by_name["jobs"]["status"] == "fail"
    assert "AGENT_DISPATCH_JOBS_DIR" in by_name["jobs"]["fix"]


def test_doctor_tolerates_a_claude_that_prints_garbage_and_fails(cli, claude):
    cli.agent("a")
    garbage = "import sys\nsys.stdout.buffer.write(b'\\xff\\x00\\x1b[2J')\nsys.exit(7)\n"
    claude.path.write_text(f"#!{sys.executable}\n{garbage}")
    res = cli("doctor", "--json")
    assert res.rc == 1
    by_name = {c["name"]: c for c in msgspec.json.decode(res.out)["checks"]}
    assert by_name["claude"]["status"] == "fail"
    assert by_name["mcp registration"]["status"] == "warn"


def test_doctor_fails_a_config_others_can_write_and_gives_the_chmod(cli, claude):
    cli.agent("a")
    claude.registered(str(cli.bin / "claude"))
    os.chmod(cli.config, 0o664)
    res = cli("doctor", "--json")
    assert res.rc == 1
    [config] = [c for c in msgspec.json.decode(res.out)["checks"] if c["name"] == "config"]
    assert config["status"] == "fail"
    assert "writable by its group" in config["message"]
    assert config["fix"] == f"chmod go-w {cli.config}"
    assert_error(cli("list"), "writable by its group", f"chmod go-w {cli.config}")
    chmod, *args = shlex.split(config["fix"])  # the fix, as given (PATH here is only a fake)
    subprocess.run([shutil.which(chmod, path=os.defpath) or chmod, *args], check=True)
    assert cli("doctor").rc == 0
