"""The rendezvous: a setup's service paths and the one-line handshake (issue #16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch import handshake, rendezvous
from agent_dispatch.handshake import (
    Hello,
    Refusal,
    Status,
    UnsupportedProtocol,
    Welcome,
)
from agent_dispatch.storage.config import config_path
from agent_dispatch.storage.jobs import jobs_dir

# -- paths ----------------------------------------------------------------------


def test_storage_paths_follow_the_rendezvous_rule(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert config_path(env) == rendezvous.config_file(env)
    assert config_path(env) == tmp_path / ".config" / "agent-dispatch" / "agents.yaml"
    assert jobs_dir(env) == tmp_path / ".config" / "agent-dispatch" / "jobs"
    env = {"HOME": str(tmp_path), "AGENT_DISPATCH_CONFIG": "x.yaml", "AGENT_DISPATCH_JOBS_DIR": "j"}
    assert config_path(env) == Path("x.yaml").absolute()
    assert jobs_dir(env) == rendezvous.jobs_directory(env) == Path("j").absolute()


def test_separate_setups_get_separate_keys_and_one_setup_one_key(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    env = service_env
    key = rendezvous.service_key(env)
    assert len(key) == 16
    assert all(c in "0123456789abcdef" for c in key)
    assert rendezvous.service_key(dict(env)) == key
    other_config = {**env, "AGENT_DISPATCH_CONFIG": str(tmp_path / "b.yaml")}
    other_jobs = {**env, "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "jobs2")}
    assert len({key, rendezvous.service_key(other_config), rendezvous.service_key(other_jobs)}) == 3
    # one absolute spelling: a relative or dotted path names the same setup
    dotted = {**env, "AGENT_DISPATCH_JOBS_DIR": str(tmp_path / "x" / ".." / "jobs")}
    assert rendezvous.service_key(dotted) == key


_path_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), min_size=1)


def _pathlib_absolute(value: str) -> Path:
    try:
        return Path(value).expanduser().absolute()
    except RuntimeError:  # "~nosuchuser/x": pathlib gives up; a literal path is kept
        return Path(value).absolute()


@given(config=_path_text, jobs=_path_text)
def test_the_setup_paths_are_what_pathlib_would_make_of_the_variables(
    config: str, jobs: str
) -> None:
    # computed as strings (the front imports no pathlib); the same paths as before,
    # and a `~user` that names no user is a literal path, not a crash
    env = {"HOME": "/home/me", "AGENT_DISPATCH_CONFIG": config, "AGENT_DISPATCH_JOBS_DIR": jobs}
    assert rendezvous.config_file(env) == _pathlib_absolute(config)
    assert rendezvous.jobs_directory(env) == _pathlib_absolute(jobs)
    assert len(rendezvous.service_key(env)) == 16


def test_service_paths_are_the_path_functions_as_strings_with_the_start_lock_beside(
    service_env: dict[str, str],
) -> None:
    paths = rendezvous.ServicePaths(service_env)
    assert paths.key == rendezvous.service_key(service_env)
    assert Path(paths.runtime) == rendezvous.runtime_dir(service_env)
    assert Path(paths.socket) == rendezvous.socket_path(service_env)
    assert Path(paths.lock) == rendezvous.lock_path(service_env)
    assert Path(paths.log) == rendezvous.log_path(service_env)
    assert Path(paths.start_lock) == Path(paths.socket).with_suffix(".start")


def test_the_wire_records_are_values_equal_by_fields_and_immutable() -> None:
    hello = Hello(version="1.0", pid=7, cwd="/p", env={"A": "1"})
    assert hello == Hello("1.0", 7, "/p", {"A": "1"}, status=False)
    assert hello != Hello("1.0", 7, "/p", {"A": "2"})
    assert hello != Welcome("1.0", 7)
    # env is left out of the hash (a dict), as the dataclass had it
    assert hash(hello) == hash(Hello("1.0", 7, "/p", {"B": "2"}))
    assert hash(Refusal("outdated", "x")) == hash(Refusal("outdated", "x"))
    assert repr(Welcome("1.0", 7)) == "Welcome(pid=7, protocol=1, version='1.0')"
    with pytest.raises(AttributeError, match="immutable"):
        hello.pid = 8
    with pytest.raises(AttributeError, match="immutable"):
        del hello.cwd


def test_socket_and_lock_live_in_a_private_directory_under_xdg_runtime_dir(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    env = service_env
    run = Path(env["XDG_RUNTIME_DIR"])
    key = rendezvous.service_key(env)
    sock, lock = rendezvous.socket_path(env), rendezvous.lock_path(env)
    assert sock == run / "agent-dispatch" / f"{key}.sock"
    assert lock == sock.with_suffix(".lock")
    info = os.lstat(sock.parent)
    assert info.st_mode & 0o777 == 0o700
    assert rendezvous.log_path(env) == tmp_path / "cache" / "agent-dispatch" / f"service-{key}.log"


def test_without_a_runtime_dir_the_sockets_go_to_a_per_uid_tmp_dir(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    env = {**service_env, "XDG_RUNTIME_DIR": str(tmp_path / "missing")}
    assert rendezvous.runtime_dir(env) == Path(f"/tmp/agent-dispatch-{os.getuid()}")


def test_a_socket_path_too_long_for_sun_path_falls_back_to_tmp(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    env = {**service_env, "XDG_RUNTIME_DIR": str(deep)}
    sock = rendezvous.socket_path(env)
    assert sock.parent == Path(f"/tmp/agent-dispatch-{os.getuid()}")
    assert len(os.fsencode(sock)) <= 100


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_runtime_dir_others_can_enter_is_refused_with_the_fix(
    service_env: dict[str, str], mode: int
) -> None:
    env = service_env
    run = Path(env["XDG_RUNTIME_DIR"])
    directory = run / "agent-dispatch"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(PermissionError, match="must be 0700") as info:
        rendezvous.socket_path(env)
    assert "rm -r" in str(info.value)


def test_a_symlinked_runtime_dir_is_refused(tmp_path: Path, service_env: dict[str, str]) -> None:
    env = service_env
    run = Path(env["XDG_RUNTIME_DIR"])
    target = run / "elsewhere"
    target.mkdir(mode=0o700)
    (run / "agent-dispatch").symlink_to(target)
    with pytest.raises(PermissionError, match="not a directory"):
        rendezvous.runtime_dir(env)


# -- the wire -------------------------------------------------------------------


def test_a_hello_round_trips_with_the_whole_environment() -> None:
    env = {"PATH": "/bin", "KEY": "sk-ünï", "ODD": "\udcff bytes"}
    line = handshake.encode_hello("0.1.0", 42, "/work", env)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert handshake.parse_hello(line) == Hello(version="0.1.0", pid=42, cwd="/work", env=env)


def test_the_status_request_is_a_hello_with_status_true() -> None:
    line = handshake.encode_status_request("0.1.0", 7)
    assert json.loads(line) == {
        "hello": "agent-dispatch",
        "protocol": 1,
        "version": "0.1.0",
        "pid": 7,
        "cwd": "",
        "env": {},
        "status": True,
    }
    assert handshake.parse_hello(line).status


def test_replies_round_trip() -> None:
    assert handshake.parse_reply(handshake.encode_welcome("0.2.0", 9)) == Welcome("0.2.0", 9)
    refusal = handshake.parse_reply(handshake.encode_refusal("outdated", "newer front"))
    assert refusal == Refusal(code="outdated", reason="newer front")
    status = Status("0.1.0", 9, 3.5, sessions=2, running=1, queued=0, draining=False)
    assert handshake.parse_status(handshake.encode_status(status)) == status
    assert handshake.parse_status(handshake.encode_refusal("protocol", "no")) == Refusal(
        "protocol", "no"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"", "not JSON"),
        (b"[1]\n", "not one JSON object"),
        (b'{"hello": "other"}\n', "not an agent-dispatch hello"),
        (b'{"hello": "agent-dispatch", "protocol": "1"}\n', "'protocol' must be an integer"),
        (b'{"hello":"agent-dispatch","protocol":1,"version":"1","pid":1,"cwd":"/"}', "'env'"),
        (
            b'{"hello":"agent-dispatch","protocol":1,"version":"1","pid":true,"cwd":"/","env":{}}',
            "'pid'",
        ),
        (
            b'{"hello":"agent-dispatch","protocol":1,"version":"1","pid":1,"cwd":"/",'
            b'"env":{"A":"x\\u0000y"}}',
            "NUL",
        ),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply|not JSON"),
        (b"{}\n{}\n", "more than one line"),
    ],
)
def test_a_bad_hello_is_a_value_error_naming_the_problem(line: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        handshake.parse_hello(line)


def test_a_hello_over_the_limit_is_refused_unread() -> None:
    line = b"{" + b" " * handshake.MAX_HELLO_BYTES + b"}"
    with pytest.raises(ValueError, match="over the 1048576-byte limit"):
        handshake.parse_hello(line)
    with pytest.raises(ValueError, match="too large"):
        handshake.encode_hello("1", 1, "/", {"BIG": "x" * handshake.MAX_HELLO_BYTES})


def test_a_hello_in_another_protocol_is_its_own_value_error() -> None:
    line = b'{"hello": "agent-dispatch", "protocol": 2, "anything": "new"}\n'
    with pytest.raises(UnsupportedProtocol, match="protocol 2 is not supported"):
        handshake.parse_hello(line)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0.2.0", "0.1.0", True),
        ("0.1.0", "0.2.0", False),
        ("0.1.0", "0.1.0", False),
        ("0.10.0", "0.9.0", True),
        ("1.0", "0.9.9", True),
        ("0.1.0.1", "0.1.0", True),
        ("0.2.0.dev1", "0.1.0", True),  # does not parse: unequal, so newer
        ("0.1.0", "weird", True),
        ("weird", "weird", False),
    ],
)
def test_newer_compares_versions_as_tuples_of_ints(a: str, b: str, expected: bool) -> None:
    assert handshake.newer(a, b) is expected


# -- properties -----------------------------------------------------------------

_text = st.text(max_size=20)
_env_names = st.text(min_size=1, max_size=10).filter(lambda s: "\0" not in s and "=" not in s)
_envs = st.dictionaries(_env_names, _text.filter(lambda s: "\0" not in s), max_size=5)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_parsers_take_any_bytes_to_a_value_or_a_value_error(line: bytes) -> None:
    for parse in (handshake.parse_hello, handshake.parse_reply, handshake.parse_status):
        try:
            parse(line)
        except ValueError:
            pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "hello": st.sampled_from(["agent-dispatch", "x"]) | _json,
            "welcome": st.sampled_from(["agent-dispatch"]) | _json,
            "status": st.sampled_from(["agent-dispatch", True]) | _json,
            "refused": _json,
            "code": _json,
            "protocol": st.sampled_from([1, 2]) | _json,
            "version": _json,
            "pid": st.integers() | _json,
            "cwd": _json,
            "env": _envs | _json,
            "uptime": _json,
            "sessions": _json,
            "running": _json,
            "queued": _json,
            "draining": _json,
        },
    )
)
def test_parsers_take_any_json_object_to_a_value_or_a_value_error(obj: dict[str, object]) -> None:
    line = json.dumps(obj).encode() + b"\n"
    for parse in (handshake.parse_hello, handshake.parse_reply, handshake.parse_status):
        try:
            parse(line)
        except ValueError:
            pass


@settings(max_examples=200)
@given(version=_text, pid=st.integers(min_value=1), cwd=_text, env=_envs, status=st.booleans())
def test_any_encodable_hello_parses_back_to_itself(
    version: str, pid: int, cwd: str, env: dict[str, str], status: bool
) -> None:
    try:
        line = handshake.encode_hello(version, pid, cwd, env, status=status)
    except ValueError:
        assert "\0" in version or "\0" in cwd
        return
    assert handshake.parse_hello(line) == Hello(version, pid, cwd, env, status)


@settings(max_examples=200)
@given(_text, _text)
def test_newer_is_never_true_both_ways(a: str, b: str) -> None:
    assert not (handshake.newer(a, b) and handshake.newer(b, a)) or (
        handshake._release(a) is None or handshake._release(b) is None
    )
    assert not handshake.newer(a, a)
