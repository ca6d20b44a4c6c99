"""What the CLI prints at its edges: errors as JSON under --json, untrusted text defused."""

from __future__ import annotations

import json
import re
import sys

import msgspec
import pytest

from agent_dispatch.models import DispatchResult
from agent_dispatch.storage.jobs import JobStore
from tests.fake_claude import CLAUDE_BIN
from tests.test_cli import Cli, assert_error
from tests.test_cli_jobs import make_job


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys) -> Cli:
    return Cli(tmp_path, monkeypatch, capsys)


# -- errors under --json --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["list", "--json"], "invalid YAML"),
        (["describe", "nobody", "--json"], "unknown agent 'nobody'"),
        (["describe", "a", "--json", "--preview-lines", "x"], "preview-lines"),
        (["group", "list", "--json"], "invalid YAML"),
        (["group", "inspect", "nope", "--json"], "unknown group"),
        (["jobs", "--json", "--bogus"], "--bogus"),
        (["job", "not-an-id", "--json"], "not-an-id"),
        (["job", "0" * 32, "--json"], "0" * 32),
    ],
)
def test_an_error_under_json_is_also_json_on_stdout(cli, argv, words):
    if argv[0] in ("list", "group") and argv[1] in ("--json", "list"):
        cli.write_config("agents: [unclosed\n")
    else:
        cli.agent("a")
        if argv[0] == "group":
            assert cli("group", "add", "g", "--members", "a").rc == 0
    res = cli(*argv)
    assert_error(res, words, quiet=False)  # stderr keeps its error:/hint: lines
    answer = json.loads(res.out)
    assert set(answer) == {"error", "hint"}
    assert words in answer["error"]
    assert res.err.splitlines()[0] == f"error: {answer['error']}"
    if answer["hint"]:
        assert f"hint: {answer['hint']}" in res.err


def test_without_json_an_error_leaves_stdout_empty(cli):
    assert_error(cli("describe", "nobody"), "unknown agent")


def test_json_for_a_command_without_the_flag_is_a_plain_error(cli):
    res = cli("remove", "nobody", "--json")
    assert_error(res, "--json")  # quiet: remove has no --json, so nothing on stdout


def test_json_after_the_end_of_options_is_a_value_not_the_flag(cli):
    assert_error(cli("describe", "--", "--json"), "invalid name")


# -- untrusted text on the terminal ---------------------------------------------------------

# Colours, a window title, a hyperlink, an 8-bit CSI that clears the screen, a bidi
# override, a carriage return that overwrites the line: as an agent or a file may hold them.
HOSTILE = (
    "\x1b[31mRED\x1b[0m \x1b]0;pwned\x07title \x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ "
    "\x9b2Jcsi \u202eevil\u202c \rend\x7f"
)
SHOWN = ["RED", "title", "link", "csi", "evil", "end"]
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_safe(text: str, *, shown: bool = True) -> None:
    assert FORBIDDEN.search(text) is None, repr(text)
    if shown:
        for word in SHOWN:
            assert word in text, (word, text)


@pytest.fixture
def hostile_agent(cli: Cli) -> Cli:
    directory = cli.project("a", claude_md=f"{HOSTILE}\n")
    assert (
        cli("add", "a", str(directory), "--description", HOSTILE, "--instructions", HOSTILE).rc == 0
    )
    return cli


def test_describe_and_list_show_hostile_agent_text_defused(hostile_agent):
    for argv in (["describe", "a"], ["list"]):
        res = hostile_agent(*argv)
        assert res.rc == 0, res
        assert_safe(res.out)


def test_json_output_keeps_hostile_text_whole_and_escaped(hostile_agent):
    res = hostile_agent("describe", "a", "--json")
    assert_safe(res.out, shown=False)
    info = json.loads(res.out)
    assert info["description"] == HOSTILE and info["config"]["instructions"] == HOSTILE


def test_group_list_and_inspect_show_hostile_group_text_defused(hostile_agent):
    cli = hostile_agent
    argv = ["--description", HOSTILE, "--shared-context", HOSTILE, "--members", f"a:{HOSTILE}"]
    res = cli("group", "add", "g", *argv)
    assert res.rc == 0, res
    assert_safe(res.out)
    for argv in (["group", "inspect", "g"], ["group", "list"]):
        res = cli(*argv)
        assert res.rc == 0, res
        assert_safe(res.out)


def test_jobs_and_job_show_hostile_tasks_results_and_progress_defused(cli):
    store = JobStore(cli.jobs)
    done = make_job(store, "done", task=HOSTILE, progress=[HOSTILE])
    store.save(
        msgspec.structs.replace(
            done, result=DispatchResult(agent="a", success=True, result=HOSTILE, hint=HOSTILE)
        )
    )
    failed = make_job(store, "failed", error=HOSTILE)
    for argv in (["jobs"], ["job", done.id], ["job", failed.id]):
        res = cli(*argv)
        assert res.rc == 0, res
        assert_safe(res.out, shown=argv != ["jobs"])  # the table cuts long cells
        assert "RED" in res.out


@pytest.mark.parametrize("stream", [False, True])
def test_test_shows_a_hostile_answer_defused(cli, monkeypatch, stream):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", CLAUDE_BIN)
    monkeypatch.setenv("FAKE_CLAUDE_PYTHON", sys.executable)
    cli.agent("a")
    reply = HOSTILE.replace("\r", "")  # the fake reads its directives line by line
    res = cli("test", "a", f"hi\n@fake reply={reply}", *(["--stream"] if stream else []))
    assert res.rc == 0, res
    assert_safe(res.out)


def test_doctor_shows_a_hostile_directory_name_defused(cli):
    directory = cli.tmp / "proj\x1b]0;pwned\x07\x1b[2Jx\u202e"
    directory.mkdir()
    assert cli("add", "a", str(directory), "--description", "d").rc == 0
    res = cli("doctor")
    assert "agent a" in res.out
    assert_safe(res.out + res.err, shown=False)
    res = cli("doctor", "--json")
    assert_safe(res.out, shown=False)
    assert any(str(directory) in c["message"] for c in json.loads(res.out)["checks"])


def test_an_error_quoting_a_hostile_path_is_defused(cli, monkeypatch):
    config = cli.tmp / "cfg\x1b]0;pwned\x07\x1b[2J" / "agents.yaml"
    config.mkdir(parents=True)  # a directory where the config file should be
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(config))
    res = cli("list")
    assert res.rc == 1
    assert_safe(res.err, shown=False)
    assert "cfg" in res.err
