"""What the CLI prints at its edges: errors as JSON under --json."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import Cli, assert_error


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
