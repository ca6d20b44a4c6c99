"""Where a setup's service lives, and the registry entry of a front (issue #16).

Shared by the service and the thin front; stdlib only, so a front imports it in a few
milliseconds. Paths:

- `config_file(env)`, `jobs_directory(env)`: the setup (the rule storage uses too).
- `service_key(env)`: 16 hex chars naming the setup; separate setups get separate services.
- `runtime_dir(env)`: a private 0700 directory for the socket and the lock.
- `socket_path(env)`, `lock_path(env)`, `log_path(env)`.
- `ServicePaths(env)`: all of those as strings, the key computed once (the front's form).

The one-line handshake before MCP on that socket is `handshake`.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time

# The front imports this module for every Claude Code session and every `claude -p`
# child: it pays for nothing it does not use. pathlib, dataclasses and typing would
# cost it ~30 ms (`python -X importtime`), so the paths are computed as strings (the
# Path-returning functions import pathlib when called) and the records are small
# classes of their own. Type checkers read the imports below.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

CONFIG_ENV = "AGENT_DISPATCH_CONFIG"
JOBS_ENV = "AGENT_DISPATCH_JOBS_DIR"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_KEY_CHARS = 16


# -- paths ----------------------------------------------------------------------


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def _setup_file(env: Mapping[str, str], name: str, default: str) -> str:
    """`$name` made absolute (`~` expanded; `..` kept, as Path.absolute keeps it), else
    `~/.config/agent-dispatch/<default>`."""
    value = env.get(name, "")
    if value:
        return os.path.join(os.getcwd(), os.path.expanduser(value))
    return os.path.join(_home(env), ".config", "agent-dispatch", default)


def _path(value: str) -> Path:
    from pathlib import Path

    return Path(value)


def config_file(env: Mapping[str, str] | None = None) -> Path:
    """`$AGENT_DISPATCH_CONFIG`, else `~/.config/agent-dispatch/agents.yaml`."""
    return _path(_setup_file(_env(env), CONFIG_ENV, "agents.yaml"))


def jobs_directory(env: Mapping[str, str] | None = None) -> Path:
    """`$AGENT_DISPATCH_JOBS_DIR`, else `~/.config/agent-dispatch/jobs`."""
    return _path(_setup_file(_env(env), JOBS_ENV, "jobs"))


def service_key(env: Mapping[str, str] | None = None) -> str:
    """16 hex chars of sha256 over the absolute config path, NUL, the absolute jobs
    directory: one service per setup (neither needs to exist)."""
    env = _env(env)
    config = os.path.abspath(_setup_file(env, CONFIG_ENV, "agents.yaml"))
    jobs = os.path.abspath(_setup_file(env, JOBS_ENV, "jobs"))
    digest = hashlib.sha256(os.fsencode(config) + b"\0" + os.fsencode(jobs))
    return digest.hexdigest()[:_KEY_CHARS]


def _tmp_dir() -> str:
    # A fixed, per-uid name (not $TMPDIR): every front and service of a user must agree.
    return f"/tmp/agent-dispatch-{os.getuid()}"  # noqa: S108 - checked 0700 and ours


def runtime_candidate(env: Mapping[str, str]) -> str:
    """The runtime directory `env` names (not created or checked: see `runtime_dir`)."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        directory = os.path.join(os.path.normpath(runtime), "agent-dispatch")
        longest = os.path.join(directory, f"{'0' * _KEY_CHARS}.sock")
        if len(os.fsencode(longest)) <= _MAX_SOCKET_PATH:
            return directory
    return _tmp_dir()


def _ensure_private_dir(directory: str) -> None:
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(directory, 0o700)  # whatever the umask
    info = os.lstat(directory)
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a symlink or a file)"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}; it must be 0700"
    if problem:
        raise PermissionError(
            f"The agent-dispatch runtime directory {directory} {problem}. "
            f"Someone else may have created it: remove it (rm -r {directory}) "
            "or set XDG_RUNTIME_DIR to a private directory."
        )


def process_start(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, from /proc), or None: with the
    pid, it names one process (a pid alone may have been reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return None
    fields = stat_line.rpartition(b")")[2].split()
    try:
        return int(fields[19])  # field 22 of stat; the split starts at field 3
    except (IndexError, ValueError):
        return None


class ServicePaths:
    """Where a setup's service lives, as strings: its key, the private runtime
    directory, the socket, the service's life-long lock, the starters' lock, the log."""

    __slots__ = ("key", "lock", "log", "runtime", "socket", "start_lock")
    key: str
    runtime: str
    socket: str
    lock: str
    start_lock: str
    log: str

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """Computes them (creating the runtime directory; raises OSError, PermissionError
        when that directory is not ours or not private)."""
        env = _env(env)
        key = service_key(env)
        runtime = runtime_candidate(env)
        _ensure_private_dir(runtime)
        self.key = key
        self.runtime = runtime
        self.socket = os.path.join(runtime, f"{key}.sock")
        self.lock = os.path.join(runtime, f"{key}.lock")
        self.start_lock = os.path.join(runtime, f"{key}.start")
        self.log = _log_file(env, key)


def utc_stamp() -> str:
    """Now, as a registry entry's `started_at` (ISO 8601, UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def register_front(paths: ServicePaths, version: str, env: Mapping[str, str]) -> str | None:
    """Publish this front in the registry of running servers (`<runtime>/servers/<pid>.json`,
    the format runtime/servers.py reads): the file written, or None when it could not be
    (never raises: a front without its entry still relays). Every current process that
    runs `serve` is in the registry, so one that is not is an older version's."""
    pid = os.getpid()
    directory = os.path.join(paths.runtime, "servers")
    path = os.path.join(directory, f"{pid}.json")
    entry = {
        "pid": pid,
        "kind": "front",
        "version": version,
        "started_at": utc_stamp(),
        "config": os.path.abspath(_setup_file(env, CONFIG_ENV, "agents.yaml")),
        "jobs_dir": os.path.abspath(_setup_file(env, JOBS_ENV, "jobs")),
        "jobs": [],
        "process_started": process_start(pid),
    }
    tmp = os.path.join(directory, f".{pid}.tmp")
    try:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(entry).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except (OSError, ValueError):
        return None
    return path


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """The private directory holding the sockets and locks, created 0700 when missing:
    `$XDG_RUNTIME_DIR/agent-dispatch` when that is an existing directory (and its socket
    paths fit), else `/tmp/agent-dispatch-<uid>`. Raises OSError (PermissionError when
    the directory is not ours or not private, which would let another user in)."""
    directory = runtime_candidate(_env(env))
    _ensure_private_dir(directory)
    return _path(directory)


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """The setup's service socket (creates the runtime directory; raises OSError)."""
    return _path(ServicePaths(env).socket)


def lock_path(env: Mapping[str, str] | None = None) -> Path:
    """The lock one service of the setup holds for its whole life (raises OSError)."""
    return _path(ServicePaths(env).lock)


def _log_file(env: Mapping[str, str], key: str) -> str:
    cache = env.get("XDG_CACHE_HOME", "")
    base = cache if cache and os.path.isabs(cache) else os.path.join(_home(env), ".cache")
    return os.path.join(base, "agent-dispatch", f"service-{key}.log")


def log_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME` (else `~/.cache`) `/agent-dispatch/service-<key>.log`; not created."""
    env = _env(env)
    return _path(_log_file(env, service_key(env)))
