"""The config file: locate, parse and validate, dump, save atomically, reload cheaply.

Parsing is pure (`parse_config` / `dump_config` in config_format.py); the file work is small and
synchronous. `ConfigStore` is the one per-process handle the composition root
creates: `load()` skips the parse while the file is unchanged, `update()` is a
read-modify-write under a cross-process lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent_dispatch import rendezvous
from agent_dispatch.errors import ConfigError, StorageError
from agent_dispatch.models import (
    AgentConfig,
    Config,
)
from agent_dispatch.storage.config_format import dump_config, parse_config
from agent_dispatch.storage.config_perms import check_private
from agent_dispatch.storage.files import (
    FileTooLarge,
    atomic_write,
    read_regular,
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

ENV_VAR = rendezvous.CONFIG_ENV
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# A file modified less than this long before we read it may change again without
# its (mtime, size, inode) changing (coarse timestamps); such a cache entry is
# confirmed by comparing bytes on the next load instead of being trusted.
_RACY_WINDOW_NS = 2_000_000_000

_StatKey = tuple[int, int, int, int, int]


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$AGENT_DISPATCH_CONFIG`, else `~/.config/agent-dispatch/agents.yaml`."""
    return rendezvous.config_file(env)


def agent_directory(agent: AgentConfig) -> Path:
    """The agent's directory with `~` expanded and symlinks resolved (it need not exist).

    On every dispatch's path, so string functions: `Path.resolve` costs a stat more."""
    path = os.path.expanduser(agent.directory)  # no home to expand into: left as it is
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):  # a NUL byte, ...
        return Path(os.path.abspath(path))


# -- files ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    key: _StatKey | None  # None: the file does not exist
    data: bytes
    config: Config
    verified: bool  # the stat key alone proves the file unchanged


def _stat_key(st: os.stat_result) -> _StatKey:
    # mode and owner too: a chmod or chown must be seen (and checked) on the next load
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, st.st_uid)


def _read_file(path: Path, clock: Callable[[], int]) -> tuple[_StatKey, bytes, bool] | None:
    """(stat key, bytes, verified) of the config file, or None when it does not exist.
    A symlinked config is followed; what it leads to must be a private regular file."""
    now = clock()
    try:
        data, st = read_regular(path, MAX_CONFIG_BYTES, follow_symlinks=True)
    except FileNotFoundError:
        return None
    except FileTooLarge:
        raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    check_private(path, st)
    return _stat_key(st), data, now - st.st_mtime_ns >= _RACY_WINDOW_NS


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
                    st = os.stat(self._path)
                except FileNotFoundError:
                    key: _StatKey | None = None
                except OSError as exc:
                    raise ConfigError(
                        f"cannot read config {self._path}: {exc.strerror or exc}"
                    ) from None
                else:
                    key = _stat_key(st)
                if key == cached.key:
                    if key is not None:
                        check_private(self._path, st)  # its directories may have changed
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
