"""The config file: locate, parse and validate, dump, save atomically, reload cheaply.

Parsing is pure (`parse_config` / `dump_config`); the file work is small and
synchronous. `ConfigStore` is the one per-process handle the composition root
creates: `load()` skips the parse while the file is unchanged, `update()` is a
read-modify-write under a cross-process lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from agent_dispatch.errors import ConfigError, StorageError
from agent_dispatch.files import atomic_write, env_path, state_home
from agent_dispatch.models import (
    NAME_PATTERN,
    PERMISSION_MODES,
    AgentConfig,
    Config,
    Group,
    Settings,
    is_valid_name,
)

__all__ = [
    "ConfigStore",
    "agent_directory",
    "config_path",
    "dump_config",
    "load_config",
    "parse_config",
    "save_config",
]

ENV_VAR = "AGENT_DISPATCH_CONFIG"
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# A file modified less than this long before we read it may change again without
# its (mtime, size, inode) changing (coarse timestamps); such a cache entry is
# confirmed by comparing bytes on the next load instead of being trusted.
_RACY_WINDOW_NS = 2_000_000_000
_TOP_LEVEL = ("agents", "groups", "settings")
_HEADER = b"# agent-dispatch config. Every field is described in agents.example.yaml.\n"

_StatKey = tuple[int, int, int]
_T = TypeVar("_T")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$AGENT_DISPATCH_CONFIG`, else `~/.config/agent-dispatch/agents.yaml`."""
    return env_path(env, ENV_VAR) or state_home(env) / "agents.yaml"


def agent_directory(agent: AgentConfig) -> Path:
    """The agent's directory with `~` expanded and symlinks resolved (it need not exist)."""
    path = Path(agent.directory)
    with contextlib.suppress(RuntimeError):  # no home directory to expand into
        path = path.expanduser()
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte, ...
        return Path(os.path.abspath(path))


# -- parsing --------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # unhashable: the base class reports it
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(data: bytes, source: str = "agents.yaml") -> Config:
    """Parse and validate config bytes. Errors name the dotted path of the bad value."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}: not valid UTF-8 (byte 0x{data[exc.start]:02x} on line {line})",
            f"Save {source} as UTF-8 text.",
        ) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "syntax error"
        message = f"{source}: invalid YAML{_where(exc)}: {problem}"
        raise ConfigError(message, _YAML_HINT) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        char = _char(exc.character)
        message = f"{source}: invalid YAML on line {line}: character {char} is not allowed"
        raise ConfigError(message, _YAML_HINT) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{source}: invalid YAML: {' '.join(str(exc).split())}", _YAML_HINT
        ) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply", _YAML_HINT) from None
    if raw is None:  # an empty or comment-only file
        return Config()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping with agents, groups and settings,"
            f" got {_type_name(raw)}"
        )
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(
                f"{source}: unknown top-level field {_show(key)} (expected {', '.join(_TOP_LEVEL)})"
            )
    agents = {
        name: _convert(value, AgentConfig, f"agents.{name}")
        for name, value in _named_section(raw, "agents", "agent").items()
    }
    for name, agent in agents.items():
        if "\0" in agent.directory:
            raise ConfigError(f"agents.{name}.directory: must not contain a NUL character")
    groups = {
        name: _convert(value, Group, f"groups.{name}")
        for name, value in _named_section(raw, "groups", "group").items()
    }
    for name, group in groups.items():
        for i, member in enumerate(group.members):
            if not is_valid_name(member.agent):
                raise ConfigError(
                    f"groups.{name}.members[{i}].agent: invalid agent name {member.agent!r}"
                    f" (must match {NAME_PATTERN})"
                )
    settings_raw = raw.get("settings")
    settings = Settings() if settings_raw is None else _convert(settings_raw, Settings, "settings")
    return Config(agents=agents, groups=groups, settings=settings)


_YAML_HINT = "Check the indentation and quoting near that spot; see agents.example.yaml."


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _named_section(raw: dict[Any, Any], section: str, kind: str) -> dict[str, Any]:
    value = raw.get(section)
    if value is None:  # `agents:` with every entry commented out
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{section}: expected a mapping of {kind} names, got {_type_name(value)}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(
                f"{section}: {kind} name {name!r} must be a string, not {_type_name(name)}",
                'Quote names that YAML reads as numbers or booleans, e.g. "123" or "on".',
            )
        if not is_valid_name(name):
            raise ConfigError(
                f"{section}.{_show_name(name)}: invalid {kind} name (must match {NAME_PATTERN})",
                "Rename it: letters, digits, '_' and '-', starting with a letter or digit.",
            )
    return value


def _convert(value: Any, type_: type[_T], path: str) -> _T:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise ConfigError(_translate(str(exc), path)) from None


_AT_RE = re.compile(r"(?s)(.*) - at `\$(.*)`")
_FIELD_MSG_RE = re.compile(r"(?s)([a-z_]+): (.*)")  # raised by a model's __post_init__
_TYPE_WORDS = {"array": "list", "object": "mapping"}


def _translate(message: str, prefix: str) -> str:
    """msgspec's `Expected `int` >= 1 - at `$.x`` -> `prefix.x: expected int >= 1`."""
    body, at = message, ""
    if m := _AT_RE.fullmatch(message):
        body, at = m.group(1), m.group(2)
    path = prefix + at
    if m := _FIELD_MSG_RE.fullmatch(body):
        path, body = f"{path}.{m.group(1)}", m.group(2)
    elif m := re.fullmatch(r"Object contains unknown field `(.*)`", body):
        body = f'unknown field "{m.group(1)}"'
    elif m := re.fullmatch(r"Object missing required field `(.*)`", body):
        body = f'missing required field "{m.group(1)}"'
    elif m := re.fullmatch(r"Invalid enum value (.*)", body):
        body = f"invalid value {m.group(1)}"
        if path.endswith("permission_mode"):
            body += f" (expected one of {', '.join(PERMISSION_MODES)})"
    else:
        body = re.sub(r"`([^`]*)`", lambda t: _type_words(t.group(1)), body)
        body = body[:1].lower() + body[1:]
    return f"{path}: {body}"


def _type_words(spec: str) -> str:
    return " | ".join(_TYPE_WORDS.get(part, part) for part in spec.split(" | "))


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {"dict": "mapping", "tuple": "list"}.get(type(value).__name__, type(value).__name__)


def _char(char: object) -> str:
    return f"U+{char:04X}" if isinstance(char, int) else repr(char)


def _show_name(name: str) -> str:
    return name if name.isprintable() else repr(name)


def _show(key: object) -> str:
    return f'"{key}"' if isinstance(key, str) else repr(key)


# -- dumping --------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text (instructions) reads best as a literal block; the emitter
    # falls back to a quoted style whenever a block could not round-trip.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_config(cfg: Config) -> bytes:
    """YAML for `cfg`, fields in schema order, defaults omitted; `parse_config` inverts it.

    Tri-state tool lists survive: None is omitted (read back as None), () is `[]`.
    """
    data: dict[str, Any] = _plain(cfg)
    out: dict[str, Any] = {"agents": data.get("agents", {})}
    out.update((k, v) for k, v in data.items() if k != "agents")
    text = yaml.dump(
        out,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return _HEADER + text.encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for field in msgspec.structs.fields(value):
            item = getattr(value, field.name)
            if field.default is not msgspec.NODEFAULT:
                default = field.default
            elif field.default_factory is not msgspec.NODEFAULT:
                default = field.default_factory()
            else:
                out[field.encode_name] = _plain(item)
                continue
            if item is default or (type(item) is type(default) and item == default):
                continue
            numbers = (int, float)
            if type(item) in numbers and type(default) in numbers and item == default:
                continue  # 300 vs 300.0
            out[field.encode_name] = _plain(item)
        return out
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- files ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    key: _StatKey | None  # None: the file does not exist
    data: bytes
    config: Config
    verified: bool  # the stat key alone proves the file unchanged


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_file(path: Path, clock: Callable[[], int]) -> tuple[_StatKey, bytes, bool] | None:
    """(stat key, bytes, verified) of the config file, or None when it does not exist."""
    now = clock()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"cannot read config {path}: not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES and (chunk := os.read(fd, 1 << 16)):
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return _stat_key(st), b"".join(chunks), now - st.st_mtime_ns >= _RACY_WINDOW_NS


def load_config(path: Path | None = None) -> Config:
    """Read and validate the config (default: `config_path()`); a missing file is empty."""
    path = config_path() if path is None else path
    found = _read_file(path, time.time_ns)
    return Config() if found is None else parse_config(found[1], str(path))


def save_config(path: Path, cfg: Config) -> None:
    """Write `cfg` atomically, 0600, creating missing directories 0700.

    A symlinked config stays a symlink: its target is replaced. Raises ConfigError
    when `cfg` would not read back, StorageError when the file cannot be written.
    """
    data = dump_config(cfg)
    parse_config(data, str(path))
    target = _write_target(path)
    _ensure_dir(target.parent)
    _atomic_write(target, data)


def _write_target(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path)) if path.is_symlink() else path
    except OSError as exc:
        raise _storage_error(path, exc) from None


def _ensure_dir(directory: Path) -> None:
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for part in reversed(missing):
        try:
            os.mkdir(part, 0o700)
            os.chmod(part, 0o700)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(
                f"cannot create config directory {part}: {exc.strerror or exc}", _WRITE_HINT
            ) from None


_WRITE_HINT = "Check the permissions of the config directory and the free disk space."


def _storage_error(path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write config {path}: {exc.strerror or exc}", _WRITE_HINT)


def _atomic_write(target: Path, data: bytes) -> _StatKey:
    try:
        return _stat_key(atomic_write(target, data))
    except OSError as exc:
        raise _storage_error(target, exc) from None


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    try:
        # flock needs no write access: read-only also works on a lock file a harsh umask made 0400.
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StorageError(
            f"cannot open config lock {lock_path}: {exc.strerror or exc}", _WRITE_HINT
        ) from None
    try:
        with contextlib.suppress(OSError):  # someone else's lock file: leave its mode alone
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class ConfigStore:
    """The config file of one process: cheap reloads and locked read-modify-writes.

    `clock` (nanoseconds, like `time.time_ns`) decides whether a file is too
    recently modified for its stat data to prove it unchanged.
    """

    def __init__(self, path: Path, *, clock: Callable[[], int] = time.time_ns) -> None:
        self._path = path
        self._clock = clock
        self._mutex = threading.Lock()
        self._cache: _Snapshot | None = None

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> Config:
        """The current config; the same object while the file is unchanged.

        A missing file is an empty Config. A broken file raises ConfigError
        (every time, until it is fixed).
        """
        with self._mutex:
            cached = self._cache
            if cached is not None and cached.verified:
                try:
                    key: _StatKey | None = _stat_key(os.stat(self._path))
                except FileNotFoundError:
                    key = None
                except OSError as exc:
                    raise ConfigError(
                        f"cannot read config {self._path}: {exc.strerror or exc}"
                    ) from None
                if key == cached.key:
                    return cached.config
            found = _read_file(self._path, self._clock)
            self._cache = self._snapshot(found, cached)
            return self._cache.config

    def _snapshot(
        self, found: tuple[_StatKey, bytes, bool] | None, cached: _Snapshot | None
    ) -> _Snapshot:
        if found is None:
            if cached is not None and cached.key is None:
                return cached
            return _Snapshot(None, b"", Config(), verified=True)
        key, data, verified = found
        if cached is not None and cached.key is not None and cached.data == data:
            config = cached.config  # touched or rewritten identically: no parse
        else:
            config = parse_config(data, str(self._path))
        return _Snapshot(key, data, config, verified)

    def update(self, fn: Callable[[Config], Config]) -> Config:
        """Apply `fn` to the config on disk and save the result, under a file lock.

        The file is re-read inside the lock, so concurrent writers (other
        processes included) never lose each other's changes. If `fn` raises,
        or its result would not validate, nothing is written.
        """
        target = _write_target(self._path)
        _ensure_dir(target.parent)
        with _file_lock(target.parent / f".{target.name}.lock"):
            found = _read_file(self._path, self._clock)
            current = Config() if found is None else parse_config(found[1], str(self._path))
            changed = fn(current)
            if not isinstance(changed, Config):
                raise TypeError(f"update function returned {type(changed).__name__}, not Config")
            data = dump_config(changed)
            config = parse_config(data, str(self._path))
            key = _atomic_write(target, data)
            verified = self._clock() - key[0] >= _RACY_WINDOW_NS
            with self._mutex:
                self._cache = _Snapshot(key, data, config, verified)
        return config
