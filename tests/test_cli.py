"""The CLI's agent and group commands, error handling, `serve` and `--version`.

`Cli` (used by every tests/test_cli_*.py) runs `agent_dispatch.launch.run` in
process on a temporary config, jobs dir and HOME, with a PATH that holds no
`claude` unless a test puts one there.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import yaml

from agent_dispatch import __version__
from agent_dispatch.launch import run
from agent_dispatch.models import AgentPatch, Config
from agent_dispatch.service import registry
from agent_dispatch.storage.config import ConfigStore, load_config
from tests.relay_support import stop_services

# -- the harness shared by the CLI tests ------------------------------------------------


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def fixes(self) -> list[list[str]]:
        """The argv of every `fix: agent-dispatch ...` line printed, `agent-dispatch` dropped."""
        found = []
        for line in self.out.splitlines():
            text = line.strip()
            if text.startswith("fix: agent-dispatch "):
                found.append(shlex.split(text.removeprefix("fix: "))[1:])
        return found


class Cli:
    """`cli("add", "x", dir)` runs one command line in process and captures its output."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
        self.tmp = tmp_path
        self.config = tmp_path / "cfg" / "agents.yaml"
        self.jobs = tmp_path / "jobs"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (tmp_path / "home").mkdir()
        self._capsys = capsys
        monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(self.config))
        monkeypatch.setenv("AGENT_DISPATCH_JOBS_DIR", str(self.jobs))
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("PATH", str(self.bin))  # no claude unless a test adds one
        for var in ("AGENT_DISPATCH_CLAUDE", "AGENT_DISPATCH_DEPTH", "AGENT_DISPATCH_DEBUG"):
            monkeypatch.delenv(var, raising=False)

    def __call__(self, *argv: str) -> Result:
        self._capsys.readouterr()
        rc = run(list(argv))
        out, err = self._capsys.readouterr()
        return Result(rc, out, err)

    def project(self, name: str, claude_md: str | None = "Does {name} things.\n") -> Path:
        directory = self.tmp / "projects" / name
        directory.mkdir(parents=True)
        if claude_md is not None:
            (directory / "CLAUDE.md").write_text(f"# {name}\n\n" + claude_md.format(name=name))
        return directory

    def agent(self, name: str, *options: str) -> Path:
        directory = self.project(name)
        assert self("add", name, str(directory), *options).rc == 0
        return directory

    def load(self) -> Config:
        return load_config(self.config)

    def write_config(self, text: str) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(textwrap.dedent(text))


def assert_error(res: Result, *words: str, quiet: bool = True) -> None:
    """Exit 1, an `error:` line (plus an optional `hint:`), no traceback; with `quiet`,
    nothing on stdout either."""
    assert res.rc == 1, res
    if quiet:
        assert res.out == "", res.out
    lines = res.err.splitlines()
    assert lines and lines[0].startswith("error: "), res.err
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), res.err
    assert "Traceback" not in res.err
    for word in words:
        assert word in res.err, (word, res.err)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


# -- add / update / remove ----------------------------------------------------------------


def test_add_stores_the_agent_with_a_description_from_claude_md(cli):
    directory = cli.project("backend", "The billing backend, in Go.\n")
    res = cli("add", "backend", str(directory), "--timeout", "120", "--model", "sonnet")
    assert res.rc == 0, res
    assert "added agent backend" in res.out
    agent = cli.load().agents["backend"]
    assert agent.directory == str(directory.resolve())
    assert agent.description == "The billing backend, in Go."
    assert (agent.timeout, agent.model) == (120, "sonnet")
    assert agent.allowed_tools is None and agent.disallowed_tools is None


def test_add_takes_every_option(cli):
    directory = cli.project("web")
    res = cli(
        "add", "web", str(directory),
        "--description", "the web app",
        "--max-budget-usd", "0.5",
        "--permission-mode", "acceptEdits",
        "--allowed-tools", "Bash(git log:*, git diff:*),Read",
        "--disallowed-tools", "[]",
        "--capabilities", "react, css",
        "--risky-capabilities", "deploys",
        "--instructions", "Be brief.",
    )  # fmt: skip
    assert res.rc == 0, res
    agent = cli.load().agents["web"]
    assert agent.description == "the web app"
    assert agent.max_budget_usd == 0.5
    assert agent.permission_mode == "acceptEdits"
    assert agent.allowed_tools == ("Bash(git log:*, git diff:*)", "Read")
    assert agent.disallowed_tools == ()
    assert agent.capabilities == ("react", "css")
    assert agent.risky_capabilities == ("deploys",)
    assert agent.instructions == "Be brief."


def test_config_is_created_private(cli):
    cli.agent("a")
    assert oct(cli.config.stat().st_mode & 0o777) == "0o600"
    assert oct(cli.config.parent.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["add", "dup", "{dir}"], ["already exists", "agent-dispatch update dup"]),
        (["add", "x", "{missing}"], ["does not exist"]),
        (["add", "x", "~nosuchuser-zz/x"], ["not usable"]),
        (["add", "bad name", "{dir}"], ["invalid name"]),
        (["add", "x", "{dir}", "--timeout", "-5"], ["timeout"]),
        (["add", "x", "{dir}", "--max-budget-usd", "nan"], ["max_budget_usd"]),
        (["add", "x", "{dir}", "--permission-mode", "yolo"], ["permission_mode"]),
        (["add", "x", "{dir}", "--allowed-tools=-x"], ["allowed_tools"]),
        (["add", "x", "{dir}", "--allowed-tools", "-x"], ["--allowed-tools"]),
        (["add", "x", "{dir}", "--model", "--x"], []),  # cyclopts: --x is an unknown option
        (["add", "x"], ["requires an argument"]),
        (["add", "x", "{dir}", "extra"], ["unexpected argument", "extra"]),
        (["add", "x", "{dir}", "--timeout", "soon"], ["--timeout"]),
    ],
)
def test_add_rejects_bad_input_with_one_error_line(cli, argv, words):
    cli.agent("dup")
    directory = cli.project("x")
    fill = {"dir": str(directory), "missing": str(cli.tmp / "missing")}
    res = cli(*[arg.format(**fill) for arg in argv])
    assert_error(res, *words)
    assert set(cli.load().agents) == {"dup"}


def test_update_changes_fields_and_none_clears_them(cli):
    cli.agent("a", "--model", "opus", "--max-budget-usd", "2", "--allowed-tools", "Read")
    res = cli("update", "a", "--timeout", "600", "--allowed-tools", "Bash,Read", "--model", "none")
    assert res.rc == 0, res
    assert "allowed_tools, model, timeout" in res.out
    agent = cli.load().agents["a"]
    assert (agent.timeout, agent.model, agent.allowed_tools) == (600, None, ("Bash", "Read"))

    assert cli("update", "a", "--timeout", "none", "--max-budget-usd", "none").rc == 0
    agent = cli.load().agents["a"]
    assert (agent.timeout, agent.max_budget_usd) == (300, None)

    assert cli("update", "a", "--allowed-tools", "[]", "--disallowed-tools", "Write").rc == 0
    agent = cli.load().agents["a"]
    assert (agent.allowed_tools, agent.disallowed_tools) == ((), ("Write",))
    assert cli("update", "a", "--allowed-tools", "none").rc == 0
    assert cli.load().agents["a"].allowed_tools is None


def test_update_zero_means_the_default_like_add(cli):
    cli.agent("a", "--timeout", "50", "--max-budget-usd", "1")
    assert cli("update", "a", "--timeout", "0", "--max-budget-usd", "0").rc == 0
    agent = cli.load().agents["a"]
    assert (agent.timeout, agent.max_budget_usd) == (300, None)


def test_update_moves_the_directory(cli):
    cli.agent("a")
    other = cli.project("other")
    assert cli("update", "a", "--directory", str(other)).rc == 0
    assert cli.load().agents["a"].directory == str(other.resolve())


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["update", "ghost", "--timeout", "5"], ["unknown agent 'ghost'", "agent-dispatch list"]),
        (["update", "a"], ["nothing to change", "--timeout 600"]),
        (["update", "a", "--timeout", "-1"], ["--timeout"]),
        (["update", "a", "--timeout", "inf"], ["--timeout"]),
        (["update", "a", "--max-budget-usd", "lots"], ["--max-budget-usd"]),
        (["update", "a", "--directory", "/nonexistent/dir"], ["does not exist"]),
        (["update", "a", "--permission-mode", "root"], ["permission_mode"]),
        (["update", "a", "--bogus", "1"], ["--bogus"]),
    ],
)
def test_update_rejects_bad_input(cli, argv, words):
    cli.agent("a", "--timeout", "77")
    assert_error(cli(*argv), *words)
    assert cli.load().agents["a"].timeout == 77


def test_hints_from_the_claude_adapter_work_when_pasted(cli):
    """claude_classify's hints name `agent-dispatch update X --timeout 600` etc."""
    cli.agent("my-agent")
    for pasted in (
        "agent-dispatch update my-agent --timeout 900",
        "agent-dispatch update my-agent --max-budget-usd 2.5",
        "agent-dispatch update my-agent --allowed-tools 'Bash,Write'",
        "agent-dispatch update my-agent --directory {dir}",
    ):
        argv = shlex.split(pasted.format(dir=cli.tmp))[1:]
        assert cli(*argv).rc == 0, pasted
    agent = cli.load().agents["my-agent"]
    assert (agent.timeout, agent.max_budget_usd) == (900, 2.5)
    assert agent.allowed_tools == ("Bash", "Write")


def test_remove_deletes_the_agent_and_points_at_groups_left_dangling(cli):
    directory = cli.agent("a")
    cli.agent("b")
    assert cli("group", "add", "g", "--members", "a:reviews,b").rc == 0
    res = cli("remove", "a")
    assert res.rc == 0, res
    assert "a" not in cli.load().agents
    assert directory.is_dir()  # the project is untouched
    assert "group g still lists a" in res.out
    [fix] = res.fixes()
    assert fix == ["group", "update", "g", "--members", "b"]
    assert cli(*fix).rc == 0
    assert [m.agent for m in cli.load().groups["g"].members] == ["b"]
    assert_error(cli("remove", "a"), "unknown agent")


# -- list / describe -------------------------------------------------------------------


def test_list_shows_health_permissions_and_tri_state_tool_lists(cli):
    cli.agent("inherits")
    cli.agent("nothing", "--allowed-tools", "[]", "--permission-mode", "plan")
    cli.agent("exact", "--allowed-tools", "Bash,Read", "--max-budget-usd", "0.25")
    gone = cli.agent("gone")
    gone.joinpath("CLAUDE.md").unlink()
    gone.rmdir()
    res = cli("list")
    assert res.rc == 0, res
    rows = {line.split()[0]: line for line in res.out.splitlines()[1:] if line.strip()}
    assert res.out.splitlines()[0].split() == [
        "NAME", "HEALTH", "PERMISSIONS", "ALLOWED", "DISALLOWED", "DESCRIPTION",
    ]  # fmt: skip
    assert rows["inherits"].split()[1:5] == ["ok", "-", "inherit", "inherit"]
    assert rows["nothing"].split()[1:5] == ["ok", "plan", "none", "inherit"]
    assert rows["exact"].split()[1:6] == ["ok", "max", "$0.25", "Bash,Read", "inherit"]
    assert rows["gone"].split()[1] == "MISSING"
    assert "gone: directory" in res.out and "does not exist" in res.out


def test_list_shows_inherited_defaults(cli):
    cli.write_config(
        """
        agents:
          a: {directory: /tmp}
        settings:
          default_allowed_tools: [Read, Grep]
        """
    )
    res = cli("list")
    assert "inherit (Read,Grep)" in res.out


def test_list_json_matches_the_list_agents_tool(cli):
    cli.agent("a", "--allowed-tools", "[]")
    cli.agent("b", "--allowed-tools", "Bash")
    res = cli("list", "--json")
    assert res.rc == 0
    data = msgspec.json.decode(res.out)
    assert data == {"agents": msgspec.to_builtins(registry.list_agents(cli.load()))}
    by_name = {a["name"]: a for a in data["agents"]}
    assert by_name["a"]["allowed_tools"] == []
    assert by_name["b"]["allowed_tools"] == ["Bash"]
    assert by_name["a"]["healthy"] is True


def test_list_on_an_empty_config_says_how_to_add(cli):
    res = cli("list")
    assert res.rc == 0
    assert "no agents" in res.out and "agent-dispatch add NAME DIR" in res.out


def test_describe_shows_config_facts_and_previews(cli):
    directory = cli.agent("a", "--instructions", "Line one\nLine two", "--allowed-tools", "[]")
    (directory / "pyproject.toml").write_text("[project]\nname='x'\n")
    (directory / "README.md").write_text("# A\n\nThe readme.\n")
    assert cli("group", "add", "g", "--members", "a").rc == 0
    res = cli("describe", "a")
    assert res.rc == 0, res
    for text in ("allowed_tools     none", "python", "groups", "Line two", "--- CLAUDE.md ---"):
        assert text in res.out, text
    assert "The readme." in res.out
    data = msgspec.json.decode(cli("describe", "a", "--json", "--preview-lines", "1").out)
    assert data["config"]["allowed_tools"] == []
    assert data["groups"] == ["g"]
    assert data["claude_md_preview"] == "# a\n"


def test_describe_unknown_agent_is_an_error(cli):
    assert_error(cli("describe", "ghost"), "unknown agent 'ghost'")
    assert_error(cli("describe", "bad\nname"), "invalid name")


# -- groups --------------------------------------------------------------------------------


def test_group_lifecycle(cli):
    cli.agent("a")
    cli.agent("b")
    res = cli("group", "add", "team", "--members", "a:writes the API, b", "--description", "All")
    assert res.rc == 0, res
    group = cli.load().groups["team"]
    assert [(m.agent, m.use_for) for m in group.members] == [("a", "writes the API"), ("b", "")]
    assert "team" in cli("group", "list").out
    listed = msgspec.json.decode(cli("group", "list", "--json").out)
    assert listed["groups"][0]["name"] == "team"
    inspected = msgspec.json.decode(cli("group", "inspect", "team", "--json").out)
    assert inspected["description"] == "All"
    assert "a: writes the API" in cli("group", "inspect", "team").out

    assert cli("group", "update", "team", "--shared-context", "Monorepo.", "--members", "b").rc == 0
    group = cli.load().groups["team"]
    assert group.shared_context == "Monorepo." and [m.agent for m in group.members] == ["b"]
    assert cli("group", "update", "team", "--description", "none").rc == 0
    assert cli.load().groups["team"].description == ""

    assert cli("group", "remove", "team").rc == 0
    assert cli.load().groups == {}
    assert "no groups" in cli("group", "list").out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["group", "add", "g", "--members", "ghost"], ["unknown agent", "ghost"]),
        (["group", "add", "dup"], ["already exists", "group update dup"]),
        (["group", "add", "g", "--members", "a,a:twice"], ["'a' is listed twice"]),
        (["group", "update", "nope", "--description", "x"], ["unknown group 'nope'"]),
        (["group", "update", "dup"], ["nothing to change"]),
        (["group", "inspect", "nope"], ["unknown group", "group list"]),
        (["group", "remove", "nope"], ["unknown group"]),
        (["group", "frobnicate"], []),
    ],
)
def test_group_errors(cli, argv, words):
    cli.agent("a")
    assert cli("group", "add", "dup", "--members", "a").rc == 0
    assert_error(cli(*argv), *words)


def test_the_cli_grants_bypass_even_when_mcp_edits_are_off(cli):
    cli.config.parent.mkdir(parents=True)
    cli.config.write_text("settings:\n  mcp_agent_edits: false\n")
    directory = cli.project("a")
    assert cli("add", "a", str(directory), "--permission-mode", "bypassPermissions").rc == 0
    assert cli("update", "a", "--instructions", "Be brief.").rc == 0
    agent = cli.load().agents["a"]
    assert agent.permission_mode == "bypassPermissions" and agent.instructions == "Be brief."
    assert cli.load().settings.mcp_agent_edits is False


LONG_NAME = "n" * 65


@pytest.mark.parametrize(
    "argv",
    [
        ["add", LONG_NAME, "{dir}"],
        ["update", LONG_NAME, "--timeout", "60"],
        ["describe", LONG_NAME],
        ["remove", LONG_NAME],
        ["test", LONG_NAME],
        ["group", "add", LONG_NAME, "--members", "a"],
        ["group", "add", "g", "--members", f"a,{LONG_NAME}"],
        ["group", "inspect", LONG_NAME],
    ],
)
def test_a_name_over_64_characters_is_refused_with_the_limit(cli, argv):
    directory = cli.agent("a")
    before = cli.config.read_bytes()
    res = cli(*[arg.format(dir=directory) for arg in argv])
    assert_error(res, "65 characters long, at most 64", "at most 64 characters")
    assert LONG_NAME not in res.err  # quoted cut to the limit
    assert cli.config.read_bytes() == before


# -- errors at the edges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"agents: [unclosed", ["invalid YAML"]),
        (b"agents:\n  a: {directory: /tmp, timeout: 0}\n", ["agents.a.timeout"]),
        (b"agents:\n  a: {directory: /tmp, colour: red}\n", ['unknown field "colour"']),
        (b"agents:\n  caf\xe9: {directory: /tmp}\n", ["not valid UTF-8"]),
    ],
)
@pytest.mark.parametrize(
    "argv", [["list"], ["describe", "a"], ["group", "list"], ["add", "b", "/"]]
)
def test_a_broken_config_is_one_error_line(cli, content, words, argv):
    cli.config.parent.mkdir(parents=True)
    cli.config.write_bytes(content)
    assert_error(cli(*argv), *words)
    assert cli.config.read_bytes() == content  # never "repaired" behind the user's back


def test_an_unusable_config_directory_is_one_error_line(cli, monkeypatch):
    blocker = cli.tmp / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(blocker / "sub" / "agents.yaml"))
    assert_error(cli("add", "a", str(cli.project("a"))), "cannot create config directory")


def test_a_config_path_that_is_a_directory_is_one_error_line(cli, monkeypatch):
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(cli.tmp))
    assert_error(cli("list"), "not a regular file")


def test_unknown_command_and_option_are_one_error_line(cli):
    assert_error(cli("frobnicate"), "frobnicate")
    assert_error(cli("list", "--colour"), "--colour")


def test_version(cli):
    res = cli("--version")
    assert res.rc == 0 and res.out.strip() == __version__


def test_help_lists_every_command(cli):
    res = cli("--help")
    assert res.rc == 0
    for name in (
        "init", "add", "update", "remove", "list", "describe", "group", "test", "doctor",
        "jobs", "job", "cancel", "gc", "serve", "demo",
    ):  # fmt: skip
        assert f" {name} " in res.out, name


def _child_env(cli: Cli) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AGENT_DISPATCH_CONFIG=str(cli.config),
        AGENT_DISPATCH_JOBS_DIR=str(cli.jobs),
        PATH=str(cli.bin),
        HOME=str(cli.tmp / "home"),
    )
    return env


@pytest.mark.parametrize("argv", [["serve", "--standalone"], ["serve"]])
def test_serve_prints_nothing_and_exits_at_eof(cli, argv):
    cli.agent("a")
    env = _child_env(cli)
    runtime = tempfile.mkdtemp(prefix="adrt-", dir="/tmp")  # the front's service: sandboxed
    env["XDG_RUNTIME_DIR"] = runtime
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "agent_dispatch", *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        stop_services(runtime)
        shutil.rmtree(runtime, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""


def test_the_console_entry_point_exits_with_the_status(cli):
    proc = subprocess.run(
        [sys.executable, "-m", "agent_dispatch", "describe", "ghost"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_child_env(cli),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert proc.stderr.decode().startswith("error: unknown agent 'ghost'")


# -- concurrency -------------------------------------------------------------------------------

_ADDER = """
import sys
from agent_dispatch.launch import run
directory, count = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
failures = sum(run(["add", f"cli{i}", directory]) != 0 for i in range(count))
sys.exit(failures)
"""


def test_concurrent_cli_adds_and_server_updates_lose_nothing(cli):
    """A CLI process adds agents while this process (as the server would) edits the config."""
    shared = cli.project("shared")
    cli.agent("base")
    count = 25
    store = ConfigStore(cli.config)
    with subprocess.Popen(
        [sys.executable, "-c", _ADDER, str(shared), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(cli),
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("go\n")
        child.stdin.flush()
        for i in range(count):
            registry.update_agent(store, "base", AgentPatch(description=f"edit {i}"))
            registry.add_agent(store, f"srv{i}", AgentPatch(directory=str(shared)))
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
    cfg = cli.load()
    assert {f"cli{i}" for i in range(count)} <= set(cfg.agents)
    assert {f"srv{i}" for i in range(count)} <= set(cfg.agents)
    assert cfg.agents["base"].description == f"edit {count - 1}"
    assert len(cfg.agents) == 2 * count + 1
    yaml.safe_load(cli.config.read_text())  # still one valid document
