"""config.py: parsing and validation, dumping, atomic saves, cheap reloads, locked updates."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import yaml

from agent_dispatch.errors import ConfigError, DispatchError, StorageError
from agent_dispatch.models import (
    AgentConfig,
    CacheSettings,
    Config,
    Group,
    GroupMember,
    Settings,
)
from agent_dispatch.storage.config import (
    ConfigStore,
    agent_directory,
    config_path,
    dump_config,
    load_config,
    parse_config,
    save_config,
)

REPO = Path(__file__).resolve().parent.parent
OLD_NS = 1_600_000_000 * 10**9  # a file time long before any test's clock


def with_agent(cfg: Config, name: str, directory: str = "/srv/x") -> Config:
    agents = {**cfg.agents, name: AgentConfig(directory=directory)}
    return msgspec.structs.replace(cfg, agents=agents)


def yaml_text(text: str) -> bytes:
    return textwrap.dedent(text).encode()


def config_error(data: bytes) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.hint
    return info.value.message


@pytest.fixture
def umask() -> Iterator[None]:
    """A umask that would make files unreadable and dirs unusable if we relied on it."""
    old = os.umask(0o277)
    try:
        yield
    finally:
        os.umask(old)


# -- locating -------------------------------------------------------------------


def test_config_path_defaults_to_the_users_config_dir() -> None:
    assert config_path({"HOME": "/home/u"}) == Path("/home/u/.config/agent-dispatch/agents.yaml")


def test_config_path_env_override_wins_and_expands_home(tmp_path: Path) -> None:
    env = {"HOME": "/home/u", "AGENT_DISPATCH_CONFIG": str(tmp_path / "a.yaml")}
    assert config_path(env) == tmp_path / "a.yaml"
    assert config_path({"AGENT_DISPATCH_CONFIG": "~/x.yaml"}) == Path.home() / "x.yaml"


def test_empty_override_is_ignored() -> None:
    env = {"HOME": "/h", "AGENT_DISPATCH_CONFIG": ""}
    assert config_path(env) == Path("/h/.config/agent-dispatch/agents.yaml")


def test_agent_directory_expands_and_resolves(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert agent_directory(AgentConfig(directory=str(tmp_path / "link"))) == real
    assert agent_directory(AgentConfig(directory="~/p")) == (Path.home() / "p").resolve()
    missing = tmp_path / "missing" / "dir"
    assert agent_directory(AgentConfig(directory=str(missing))) == missing


def test_agent_directory_survives_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert agent_directory(AgentConfig(directory=str(tmp_path / "a"))).is_absolute()


# -- parsing --------------------------------------------------------------------


def test_example_config_is_valid_and_round_trips() -> None:
    cfg = load_config(REPO / "agents.example.yaml")
    assert set(cfg.agents) == {"backend", "frontend"}
    backend = cfg.agents["backend"]
    assert backend.timeout == 600
    assert backend.allowed_tools == ("Read", "Grep", "Glob", "Edit", "Bash(pytest:*)")
    assert backend.disallowed_tools is None
    assert cfg.agents["frontend"].allowed_tools == ()
    assert [m.agent for m in cfg.groups["shop"].members] == ["backend", "frontend"]
    assert cfg.settings == Settings()
    assert parse_config(dump_config(cfg)) == cfg


def test_the_example_config_lists_every_setting() -> None:
    raw = yaml.safe_load((REPO / "agents.example.yaml").read_text())
    assert set(raw["settings"]) == set(Settings.__struct_fields__)
    assert set(raw["settings"]["cache"]) == set(CacheSettings.__struct_fields__)


@pytest.mark.parametrize("data", [b"", b"   \n\n", b"# only a comment\n", b"agents:\n"])
def test_empty_file_is_an_empty_config(data: bytes) -> None:
    assert parse_config(data) == Config()


def test_full_config_parses() -> None:
    cfg = parse_config(
        yaml_text("""
        agents:
          api:
            directory: ~/projects/api
            timeout: 60
            max_budget_usd: 1
            permission_mode: plan
            allowed_tools: [Read, Grep]
            disallowed_tools: []
        groups:
          team: {description: d, members: [{agent: api, use_for: backend}]}
        settings:
          max_concurrency: 2
          cache: {enabled: false, ttl: 0}
        """)
    )
    api = cfg.agents["api"]
    assert (api.timeout, api.max_budget_usd, api.permission_mode) == (60, 1.0, "plan")
    assert (api.allowed_tools, api.disallowed_tools) == (("Read", "Grep"), ())
    assert cfg.groups["team"].members == (GroupMember(agent="api", use_for="backend"),)
    assert cfg.settings.max_concurrency == 2
    assert cfg.settings.cache == CacheSettings(enabled=False, ttl=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "agents: {backend: {directory: /x, timeout: 0}}",
            "agents.backend.timeout: expected int >= 1",
        ),
        (
            f"agents: {{backend: {{directory: /x, timeout: {'9' * 400}}}}}",
            "agents.backend.timeout: expected int <= 604800",
        ),
        (
            "settings: {default_timeout: 700000}",
            "settings.default_timeout: expected int <= 604800",
        ),
        (
            "agents: {backend: {directory: /x, timeout: true}}",
            "agents.backend.timeout: expected int, got bool",
        ),
        (
            "agents: {bad name: {directory: /x}}",
            "agents.bad name: invalid agent name (must match [A-Za-z0-9][A-Za-z0-9_-]*)",
        ),
        ('agents: {"x\\n": {directory: /x}}', "agents.'x\\n': invalid agent name"),
        ("agents: {-x: {directory: /x}}", "agents.-x: invalid agent name"),
        ("agents: {x: {directory: /x, foo: 1}}", 'agents.x: unknown field "foo"'),
        ("agents: {x: {}}", 'agents.x: missing required field "directory"'),
        ("agents: {x: null}", "agents.x: expected mapping, got null"),
        ("agents: {x: {directory: ''}}", "agents.x.directory: must not be empty"),
        ('agents: {x: {directory: "/a\\0b"}}', "agents.x.directory: must not contain a NUL"),
        (
            "agents: {x: {directory: /x, permission_mode: yolo}}",
            "agents.x.permission_mode: invalid value 'yolo' (expected one of acceptEdits,",
        ),
        (
            "agents: {x: {directory: /x, allowed_tools: 'Read,Grep'}}",
            "agents.x.allowed_tools: expected list | null, got str",
        ),
        (
            "agents: {x: {directory: /x, disallowed_tools: [Read, 3]}}",
            "agents.x.disallowed_tools[1]: expected str, got int",
        ),
        (
            "agents: {x: {directory: /x, max_budget_usd: .inf}}",
            "agents.x.max_budget_usd: expected a finite number",
        ),
        (
            "agents: {x: {directory: /x, max_budget_usd: -1}}",
            "agents.x.max_budget_usd: expected float > 0.0",
        ),
        ("agents: {123: {directory: /x}}", "agents: agent name 123 must be a string, not int"),
        ("agents: {on: {directory: /x}}", "agents: agent name True must be a string"),
        ("agents: [a, b]", "agents: expected a mapping of agent names, got list"),
        ("groups: {g: {members: [{agent: a}, {agent: b, x: 1}]}}", "groups.g.members[1]: unknown"),
        ("groups: {g: {members: [{agent: 'a b'}]}}", "groups.g.members[0].agent: invalid agent"),
        ("groups: {'g!': {}}", "groups.g!: invalid group name"),
        ("settings: {cache: {ttl: -1}}", "settings.cache.ttl: expected float >= 0.0"),
        ("settings: {cache: {ttl: .nan}}", "settings.cache.ttl: expected float >= 0.0"),
        ("settings: {cache: {ttl: .inf}}", "settings.cache.ttl: expected a finite number"),
        ("settings: {cache: null}", "settings.cache: expected mapping, got null"),
        ("settings: {max_concurrency: 0}", "settings.max_concurrency: expected int >= 1"),
        ("settings: {max_dispatch_depth: 1.5}", "settings.max_dispatch_depth: expected int"),
        ("settings: {kill_grace_seconds: 61}", "settings.kill_grace_seconds: expected float <= 60"),
        ("settings: {kill_grace_seconds: -1}", "settings.kill_grace_seconds: expected float >= 0"),
        ("settings: {kill_grace_seconds: .nan}", "settings.kill_grace_seconds: expected float"),
        ("settings: {kill_grace_seconds: 2s}", "settings.kill_grace_seconds: expected float, got"),
        ("settings: {nope: 1}", 'settings: unknown field "nope"'),
        ("settings: [1]", "settings: expected mapping, got list"),
        ("agent: {}", 'agents.yaml: unknown top-level field "agent" (expected agents, groups'),
        ("[1, 2]", "agents.yaml: the top level must be a mapping"),
        ("just text", "agents.yaml: the top level must be a mapping"),
    ],
)
def test_invalid_values_name_their_path(text: str, message: str) -> None:
    assert config_error(text.encode()).startswith(message)


def test_yaml_syntax_error_names_file_and_line() -> None:
    message = config_error(b"agents:\n  x: {directory: /x\n")
    assert message.startswith("agents.yaml: invalid YAML at line 3")
    with pytest.raises(ConfigError, match=r"^/etc/a\.yaml: invalid YAML at line 2, column 1: "):
        parse_config(b"agents:\n\tx: 1\n", source="/etc/a.yaml")


def test_duplicate_keys_are_an_error() -> None:
    data = yaml_text("""
    agents:
      x: {directory: /a}
      x: {directory: /b}
    """)
    assert "found duplicate key 'x'" in config_error(data)


def test_non_utf8_config_is_a_clear_error() -> None:
    message = config_error(b"agents:\n  x:\n    directory: caf\xe9\n")
    assert message == "agents.yaml: not valid UTF-8 (byte 0xe9 on line 3)"


@pytest.mark.parametrize("data", [b"a: \x07\n", b"[" * 5000, b"&a [*a]"])
def test_odd_inputs_are_config_errors_not_tracebacks(data: bytes) -> None:
    config_error(data)


# -- dumping --------------------------------------------------------------------


def test_tri_state_tool_lists_survive_a_round_trip() -> None:
    cfg = Config(
        agents={
            "inherit": AgentConfig(directory="/a"),
            "none": AgentConfig(directory="/b", allowed_tools=(), disallowed_tools=()),
            "exact": AgentConfig(
                directory="/c", allowed_tools=("Read", "Bash(git log:*)"), disallowed_tools=("X",)
            ),
        },
    )
    back = parse_config(dump_config(cfg))
    assert back == cfg
    assert back.agents["inherit"].allowed_tools is None
    assert back.agents["none"].allowed_tools == ()
    assert back.agents["exact"].allowed_tools == ("Read", "Bash(git log:*)")


def test_dump_is_readable_yaml_in_schema_order() -> None:
    cfg = Config(
        agents={
            "zeta": AgentConfig(
                directory="/z", timeout=20, allowed_tools=(), instructions="one\ntwo\n"
            ),
            "alpha": AgentConfig(directory="/a"),
        },
        groups={"g": Group(members=(GroupMember(agent="zeta"),))},
        settings=Settings(max_concurrency=2),
    )
    text = dump_config(cfg).decode()
    assert text.splitlines()[1:] == [
        "agents:",
        "  zeta:",
        "    directory: /z",
        "    timeout: 20",
        "    allowed_tools: []",
        "    instructions: |",
        "      one",
        "      two",
        "  alpha:",
        "    directory: /a",
        "groups:",
        "  g:",
        "    members:",
        "    - agent: zeta",
        "settings:",
        "  max_concurrency: 2",
    ]
    assert dump_config(Config()).decode().splitlines()[1:] == ["agents: {}"]


@pytest.mark.parametrize(
    "value",
    [
        "yes",
        "123",
        "null",
        "~",
        "a: b",
        "- x",
        "#x",
        " padded ",
        "line\n  indented\n",
        "trailing space \nx",
        "tab\there",
        "unicode ✓",
        "x\udcff",
        "",
    ],
)
def test_strings_round_trip_exactly(value: str) -> None:
    cfg = Config(
        agents={
            "on": AgentConfig(directory=f"/d{value}", description=value, instructions=value),
            "123": AgentConfig(directory="/x", allowed_tools=(value,)),
        },
    )
    assert parse_config(dump_config(cfg)) == cfg


# -- loading and saving ---------------------------------------------------------


def test_load_config_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.yaml") == Config()


def test_load_config_uses_the_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agents.yaml"
    save_config(path, with_agent(Config(), "a"))
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(path))
    assert set(load_config().agents) == {"a"}


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents: [")
    with pytest.raises(ConfigError, match=f"^{path}: invalid YAML"):
        load_config(path)


def test_a_directory_as_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)


def test_save_creates_private_dirs_and_file(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "a" / "b" / "agents.yaml"
    cfg = with_agent(Config(), "x")
    save_config(path, cfg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert load_config(path) == cfg
    assert os.listdir(path.parent) == ["agents.yaml"]  # no temp file left behind


def test_save_tightens_an_existing_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents: {}\n")
    path.chmod(0o644)
    save_config(path, with_agent(Config(), "x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_through_a_symlink_keeps_the_symlink(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "agents.yaml"
    target.write_bytes(b"agents: {}\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    link = conf / "agents.yaml"
    link.symlink_to(target)

    save_config(link, with_agent(Config(), "x"))

    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert set(load_config(target).agents) == {"x"}
    assert os.listdir(conf) == ["agents.yaml"]
    assert os.listdir(dotfiles) == ["agents.yaml"]


def test_save_into_an_unusable_directory_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(StorageError, match="cannot create config directory"):
        save_config(blocker / "sub" / "agents.yaml", Config())


def test_failed_replace_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.mkdir()  # os.replace of a file over a directory fails
    with pytest.raises(StorageError, match=f"cannot write config {path}"):
        save_config(path, Config())
    assert os.listdir(tmp_path) == ["agents.yaml"]


def test_save_refuses_a_config_that_would_not_load(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    bad = Config(agents={"x": AgentConfig(directory="/x", timeout=0)})
    with pytest.raises(ConfigError, match=r"agents\.x\.timeout: expected int >= 1"):
        save_config(path, bad)
    assert not path.exists()


# -- ConfigStore.load -----------------------------------------------------------


def test_store_load_of_a_missing_file_is_a_stable_empty_config(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "agents.yaml")
    first = store.load()
    assert first == Config()
    assert store.load() is first
    assert store.path == tmp_path / "agents.yaml"


def test_store_load_returns_the_same_object_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    save_config(path, with_agent(Config(), "a"))
    store = ConfigStore(path)
    first = store.load()
    assert store.load() is first

    save_config(path, with_agent(first, "b"))
    second = store.load()
    assert set(second.agents) == {"a", "b"}
    assert store.load() is second


def test_unchanged_stat_data_skips_reading_the_file(tmp_path: Path) -> None:
    # The same inode, size and (old) mtime: load() trusts stat and does not read.
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents: {aa: {directory: /a}}\n")
    os.utime(path, ns=(OLD_NS, OLD_NS))
    store = ConfigStore(path)
    first = store.load()

    with path.open("r+b") as f:  # same size, same inode
        f.write(b"agents: {bb: {directory: /b}}\n")
    os.utime(path, ns=(OLD_NS, OLD_NS))

    assert store.load() is first
    assert set(first.agents) == {"aa"}


def test_a_recently_modified_file_is_rechecked_by_content(tmp_path: Path) -> None:
    # mtime just before "now": a same-size rewrite could keep the stat data, so
    # the store compares bytes instead of trusting it.
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents: {aa: {directory: /a}}\n")
    os.utime(path, ns=(OLD_NS, OLD_NS))
    store = ConfigStore(path, clock=lambda: OLD_NS + 1)
    first = store.load()
    assert store.load() is first  # same bytes: same object, no parse

    with path.open("r+b") as f:
        f.write(b"agents: {bb: {directory: /b}}\n")
    os.utime(path, ns=(OLD_NS, OLD_NS))

    assert set(store.load().agents) == {"bb"}


def test_touching_the_file_keeps_the_parsed_object(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    save_config(path, with_agent(Config(), "a"))
    store = ConfigStore(path)
    first = store.load()
    os.utime(path, ns=(OLD_NS, OLD_NS))
    assert store.load() is first


def test_a_broken_file_raises_every_time_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    save_config(path, with_agent(Config(), "a"))
    store = ConfigStore(path)
    store.load()

    path.write_bytes(b"agents: {x: {directory: /x, timeout: 0}}\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"agents\.x\.timeout"):
            store.load()

    save_config(path, with_agent(Config(), "fixed"))
    assert set(store.load().agents) == {"fixed"}


def test_a_deleted_file_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    save_config(path, with_agent(Config(), "a"))
    store = ConfigStore(path)
    assert store.load().agents
    path.unlink()
    assert store.load() == Config()


# -- ConfigStore.update ---------------------------------------------------------


def test_update_saves_and_refreshes_the_cache(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "cfg" / "agents.yaml"
    store = ConfigStore(path)
    new = store.update(lambda cfg: with_agent(cfg, "a"))
    assert set(new.agents) == {"a"}
    assert store.load() is new
    assert load_config(path) == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lock = path.parent / ".agents.yaml.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == [".agents.yaml.lock", "agents.yaml"]


def test_update_reads_the_file_not_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    store = ConfigStore(path)
    store.update(lambda cfg: with_agent(cfg, "mine"))
    save_config(path, with_agent(load_config(path), "theirs"))  # another writer
    os.utime(path, ns=(OLD_NS, OLD_NS))

    new = store.update(lambda cfg: with_agent(cfg, "mine2"))
    assert set(new.agents) == {"mine", "theirs", "mine2"}


def test_a_failing_update_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    store = ConfigStore(path)
    store.update(lambda cfg: with_agent(cfg, "a"))
    before = path.read_bytes()

    def refuse(cfg: Config) -> Config:
        raise DispatchError("agent 'a' already exists")

    with pytest.raises(DispatchError, match="already exists"):
        store.update(refuse)
    with pytest.raises(ConfigError, match=r"agents\.b\.timeout"):
        store.update(with_invalid_agent)
    assert path.read_bytes() == before
    assert set(store.load().agents) == {"a"}


def with_invalid_agent(cfg: Config) -> Config:
    agents = {**cfg.agents, "b": AgentConfig(directory="/b", timeout=0)}
    return msgspec.structs.replace(cfg, agents=agents)


def test_update_of_a_broken_file_raises_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        ConfigStore(path).update(lambda cfg: with_agent(cfg, "a"))
    assert path.read_bytes() == b"agents: [\n"


def test_update_through_a_symlink_keeps_the_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real" / "agents.yaml"
    target.parent.mkdir()
    link = tmp_path / "agents.yaml"
    link.symlink_to(target)  # dangling until the first write
    store = ConfigStore(link)
    store.update(lambda cfg: with_agent(cfg, "a"))
    assert link.is_symlink()
    assert set(load_config(target).agents) == {"a"}
    assert store.load() is store.load()


_WRITER = """
import sys
from pathlib import Path

import msgspec

from agent_dispatch.storage.config import ConfigStore
from agent_dispatch.models import AgentConfig

store = ConfigStore(Path(sys.argv[1]))
prefix = sys.argv[2]


def add(name):
    def change(cfg):
        agents = {**cfg.agents, name: AgentConfig(directory="/srv/" + name)}
        return msgspec.structs.replace(cfg, agents=agents)
    return change


print("ready", flush=True)
sys.stdin.readline()  # start together
for i in range(50):
    store.update(add(f"{prefix}{i}"))
print("done", flush=True)
"""


def test_concurrent_writers_in_two_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for prefix in ("left", "right")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert (proc.returncode, out) == (0, "done\n")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    names = set(load_config(path).agents)
    expected = {f"{p}{i}" for p in ("left", "right") for i in range(50)}
    assert names == expected


# -- who may write it ----------------------------------------------------------------------


def _private_config(tmp_path: Path) -> Path:
    directory = tmp_path / "cfg"
    directory.mkdir(mode=0o700)
    path = directory / "agents.yaml"
    save_config(path, with_agent(Config(), "a"))
    return path


@pytest.mark.parametrize(
    ("mode", "who"), [(0o620, "its group"), (0o602, "everyone")], ids=["group", "others"]
)
def test_a_config_others_can_write_is_refused_with_the_chmod_fix(
    tmp_path: Path, mode: int, who: str
) -> None:
    path = _private_config(tmp_path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match=f"writable by {who}") as info:
        load_config(path)
    assert info.value.hint == f"Run: chmod go-w {path}"
    with pytest.raises(ConfigError, match=f"writable by {who}"):
        ConfigStore(path).load()
    os.chmod(path, 0o600)
    assert set(load_config(path).agents) == {"a"}  # the fix works


def test_a_config_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    path = _private_config(tmp_path)
    os.chmod(path.parent, 0o770)  # noqa: S103 - the insecure mode under test
    with pytest.raises(ConfigError, match=f"config directory {path.parent} is writable") as info:
        load_config(path)
    assert info.value.hint == f"Run: chmod go-w {path.parent}"


def test_a_sticky_shared_directory_does_not_count_as_writable(tmp_path: Path) -> None:
    path = _private_config(tmp_path)
    os.chmod(path.parent, 0o1777)  # noqa: S103 - like /tmp: others cannot replace our file
    assert set(load_config(path).agents) == {"a"}


def test_a_symlinked_config_is_judged_by_its_target_and_both_directories(tmp_path: Path) -> None:
    real = _private_config(tmp_path)
    links = tmp_path / "links"
    links.mkdir(mode=0o700)
    link = links / "agents.yaml"
    link.symlink_to(real)
    assert set(load_config(link).agents) == {"a"}
    os.chmod(real, 0o660)
    with pytest.raises(ConfigError, match=f"config {real} is writable by its group"):
        load_config(link)
    os.chmod(real, 0o600)
    os.chmod(real.parent, 0o777)  # noqa: S103 - the target's directory
    with pytest.raises(ConfigError, match=f"config directory {real.parent} is writable"):
        load_config(link)
    os.chmod(real.parent, 0o700)
    os.chmod(links, 0o775)  # noqa: S103 - the link's directory
    with pytest.raises(ConfigError, match=f"config directory {links} is writable"):
        load_config(link)


def test_a_cached_config_is_refused_once_it_becomes_writable_by_others(tmp_path: Path) -> None:
    path = _private_config(tmp_path)
    os.utime(path, ns=(OLD_NS, OLD_NS))  # old enough for the stat key alone to be trusted
    store = ConfigStore(path)
    assert set(store.load().agents) == {"a"}
    os.chmod(path, 0o666)  # noqa: S103 - a chmod changes neither mtime, size nor inode
    with pytest.raises(ConfigError, match="writable by its group and everyone"):
        store.load()
    os.chmod(path, 0o600)
    os.chmod(path.parent, 0o777)  # noqa: S103
    with pytest.raises(ConfigError, match="config directory"):
        store.load()


def test_an_update_refuses_a_config_others_can_write(tmp_path: Path) -> None:
    path = _private_config(tmp_path)
    os.chmod(path, 0o664)
    with pytest.raises(ConfigError, match="writable by its group") as info:
        ConfigStore(path).update(lambda cfg: with_agent(cfg, "b"))
    assert info.value.hint == f"Run: chmod go-w {path}"
    os.chmod(path, 0o600)
    assert set(load_config(path).agents) == {"a"}  # nothing was written


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_config_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = _private_config(tmp_path)
    os.chown(path, 65534, -1)
    with pytest.raises(ConfigError, match="owned by uid 65534, not by you") as info:
        load_config(path)
    assert "chown" in info.value.hint
