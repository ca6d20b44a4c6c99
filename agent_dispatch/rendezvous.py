"""Where a setup's service lives and the one-line handshake before MCP (issue #16).

Shared by the service and the thin front; stdlib only, so a front imports it in a few
milliseconds. Paths:

- `config_file(env)`, `jobs_directory(env)`: the setup (the rule storage uses too).
- `service_key(env)`: 16 hex chars naming the setup; separate setups get separate services.
- `runtime_dir(env)`: a private 0700 directory for the socket and the lock.
- `socket_path(env)`, `lock_path(env)`, `log_path(env)`.
- `ServicePaths(env)`: all of those as strings, the key computed once (the front's form).

The wire, on the Unix socket, before the raw MCP stream: each side sends exactly one JSON
object on one line.

1. front -> service, the hello (at most `MAX_HELLO_BYTES`)::

     {"hello": "agent-dispatch", "protocol": 1, "version": "0.1.0", "pid": 123,
      "cwd": "/home/me/project", "env": {"NAME": "value", ...}}

2. service -> front, one of::

     {"welcome": "agent-dispatch", "protocol": 1, "version": "0.1.0", "pid": 456}
     {"refused": "<reason>", "code": "outdated" | "protocol" | "bad_hello" | "draining"}

The status request is a hello with `"status": true` (its `cwd` and `env` may be "" and
{}: `encode_status_request` writes one). The service answers it with one status line
instead of a welcome, then closes the connection; it never drains for one::

     {"status": "agent-dispatch", "protocol": 1, "version": "0.1.0", "pid": 456,
      "uptime": 12.5, "sessions": 2, "running": 1, "queued": 0, "draining": false}

Every parser here takes any bytes and returns a value or raises ValueError, never another
exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

# The front imports this module for every Claude Code session and every `claude -p`
# child: it pays for nothing it does not use. pathlib, dataclasses and typing would
# cost it ~30 ms (`python -X importtime`), so the paths are computed as strings (the
# Path-returning functions import pathlib when called) and the records are small
# classes of their own. Type checkers read the imports below.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

PROTOCOL = 1
MAGIC = "agent-dispatch"
MAX_HELLO_BYTES = 1 << 20
MAX_REPLY_BYTES = 1 << 16
REFUSAL_CODES = ("outdated", "protocol", "bad_hello", "draining")

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


def _candidate_dir(env: Mapping[str, str]) -> str:
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


class _Record:
    """A small immutable value, equal by type and fields (its `__slots__`), shown by
    them: what a frozen dataclass gives, without importing `dataclasses`."""

    __slots__: tuple[str, ...] = ()
    _unhashed: tuple[str, ...] = ()  # fields left out of the hash (mutable ones)

    def _fields(self, names: tuple[str, ...]) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in names)

    def _init(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields(self.__slots__) == other._fields(self.__slots__)

    def __hash__(self) -> int:
        kept = tuple(name for name in self.__slots__ if name not in self._unhashed)
        return hash((type(self), self._fields(kept)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"


class ServicePaths(_Record):
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
        runtime = _candidate_dir(env)
        _ensure_private_dir(runtime)
        self._init(
            key=key,
            runtime=runtime,
            socket=os.path.join(runtime, f"{key}.sock"),
            lock=os.path.join(runtime, f"{key}.lock"),
            start_lock=os.path.join(runtime, f"{key}.start"),
            log=_log_file(env, key),
        )


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """The private directory holding the sockets and locks, created 0700 when missing:
    `$XDG_RUNTIME_DIR/agent-dispatch` when that is an existing directory (and its socket
    paths fit), else `/tmp/agent-dispatch-<uid>`. Raises OSError (PermissionError when
    the directory is not ours or not private, which would let another user in)."""
    directory = _candidate_dir(_env(env))
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


# -- the wire -------------------------------------------------------------------


class Hello(_Record):
    """The front's first line: who it is and the caller's context."""

    __slots__ = ("cwd", "env", "pid", "status", "version")
    _unhashed = ("env",)
    version: str
    pid: int
    cwd: str
    env: Mapping[str, str]
    status: bool  # a status request: answer with a status line, no MCP

    def __init__(
        self, version: str, pid: int, cwd: str, env: Mapping[str, str], status: bool = False
    ) -> None:
        self._init(version=version, pid=pid, cwd=cwd, env=env, status=status)


class Welcome(_Record):
    __slots__ = ("pid", "protocol", "version")
    version: str
    pid: int
    protocol: int

    def __init__(self, version: str, pid: int, protocol: int = PROTOCOL) -> None:
        self._init(version=version, pid=pid, protocol=protocol)


class Refusal(_Record):
    __slots__ = ("code", "reason")
    code: str  # one of REFUSAL_CODES (a newer service may add codes)
    reason: str

    def __init__(self, code: str, reason: str) -> None:
        self._init(code=code, reason=reason)


class Status(_Record):
    """What a status request tells about a running service."""

    __slots__ = ("draining", "pid", "queued", "running", "sessions", "uptime", "version")
    version: str
    pid: int
    uptime: float
    sessions: int
    running: int
    queued: int
    draining: bool

    def __init__(
        self,
        version: str,
        pid: int,
        uptime: float,
        sessions: int,
        running: int,
        queued: int,
        draining: bool,
    ) -> None:
        self._init(
            version=version,
            pid=pid,
            uptime=uptime,
            sessions=sessions,
            running=running,
            queued=queued,
            draining=draining,
        )


class UnsupportedProtocol(ValueError):
    """A hello in a protocol this side does not speak (refuse it with code "protocol")."""


def _line(obj: Mapping[str, Any]) -> bytes:
    # ensure_ascii: environment values may hold lone surrogates (undecodable bytes)
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def _no_nul(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{what} contains a NUL character")
    return value


def _check_env(env: object) -> dict[str, str]:
    if not isinstance(env, dict):
        raise ValueError(f"hello: 'env' must be an object of strings, not {type(env).__name__}")
    for key, value in env.items():
        _no_nul("hello: an env name", key)
        if not key or "=" in key:
            raise ValueError(f"hello: env name {key[:40]!r} is empty or holds '='")
        _no_nul(f"hello: env {key[:40]!r}", value)
    return env


def _pid(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what}: 'pid' must be a positive integer")
    return value


def encode_hello(
    version: str, pid: int, cwd: str, env: Mapping[str, str], *, status: bool = False
) -> bytes:
    """The hello line; ValueError when `env` or `cwd` hold NULs or it exceeds the limit."""
    obj: dict[str, Any] = {
        "hello": MAGIC,
        "protocol": PROTOCOL,
        "version": _no_nul("hello: 'version'", version),
        "pid": _pid(pid, "hello"),
        "cwd": _no_nul("hello: 'cwd'", cwd),
        "env": _check_env(dict(env)),
    }
    if status:
        obj["status"] = True
    line = _line(obj)
    if len(line) > MAX_HELLO_BYTES:
        raise ValueError(
            f"hello: {len(line)} bytes, over the {MAX_HELLO_BYTES}-byte limit "
            "(the environment is too large to send)"
        )
    return line


def encode_status_request(version: str, pid: int) -> bytes:
    """A hello asking for the service's status line instead of an MCP session."""
    return encode_hello(version, pid, "", {}, status=True)


def _load(line: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(line) > limit:
        raise ValueError(f"{what}: {len(line)} bytes, over the {limit}-byte limit")
    body = line.removesuffix(b"\n")
    if b"\n" in body:
        raise ValueError(f"{what}: more than one line")
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError(f"{what}: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: not one JSON object")
    return obj


def parse_hello(line: bytes) -> Hello:
    """The front's hello; ValueError naming the problem (UnsupportedProtocol, a
    ValueError, when it speaks another protocol)."""
    obj = _load(line, MAX_HELLO_BYTES, "hello")
    if obj.get("hello") != MAGIC:
        raise ValueError(f'hello: not an agent-dispatch hello (no "hello": "{MAGIC}")')
    protocol = obj.get("protocol")
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise ValueError("hello: 'protocol' must be an integer")
    if protocol != PROTOCOL:
        raise UnsupportedProtocol(
            f"hello: protocol {protocol} is not supported (this side speaks {PROTOCOL})"
        )
    status = obj.get("status", False)
    if not isinstance(status, bool):
        raise ValueError("hello: 'status' must be true or false")
    return Hello(
        version=_no_nul("hello: 'version'", obj.get("version")),
        pid=_pid(obj.get("pid"), "hello"),
        cwd=_no_nul("hello: 'cwd'", obj.get("cwd")),
        env=_check_env(obj.get("env")),
        status=status,
    )


def encode_welcome(version: str, pid: int) -> bytes:
    return _line({"welcome": MAGIC, "protocol": PROTOCOL, "version": version, "pid": pid})


def encode_refusal(code: str, reason: str) -> bytes:
    return _line({"refused": reason, "code": code})


def _refusal(obj: Mapping[str, Any]) -> Refusal:
    reason, code = obj["refused"], obj.get("code")
    if not isinstance(reason, str) or not isinstance(code, str):
        raise ValueError("reply: a refusal needs string 'refused' and 'code'")
    return Refusal(code=code, reason=reason)


def parse_reply(line: bytes) -> Welcome | Refusal:
    """The service's answer to a hello; ValueError when it is neither reply."""
    obj = _load(line, MAX_REPLY_BYTES, "reply")
    if "refused" in obj:
        return _refusal(obj)
    if obj.get("welcome") != MAGIC:
        raise ValueError("reply: neither a welcome nor a refusal")
    protocol = obj.get("protocol")
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise ValueError("reply: 'protocol' must be an integer")
    version = obj.get("version")
    if not isinstance(version, str):
        raise ValueError("reply: 'version' must be a string")
    return Welcome(version=version, pid=_pid(obj.get("pid"), "reply"), protocol=protocol)


def encode_status(status: Status) -> bytes:
    return _line(
        {
            "status": MAGIC,
            "protocol": PROTOCOL,
            "version": status.version,
            "pid": status.pid,
            "uptime": status.uptime,
            "sessions": status.sessions,
            "running": status.running,
            "queued": status.queued,
            "draining": status.draining,
        }
    )


def _count(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"status: {name!r} must be a non-negative integer")
    return value


def parse_status(line: bytes) -> Status | Refusal:
    """The answer to a status request: a Status, or a Refusal (e.g. "protocol")."""
    obj = _load(line, MAX_REPLY_BYTES, "status")
    if "refused" in obj:
        return _refusal(obj)
    if obj.get("status") != MAGIC:
        raise ValueError("status: not an agent-dispatch status line")
    version, uptime, draining = obj.get("version"), obj.get("uptime"), obj.get("draining")
    if not isinstance(version, str):
        raise ValueError("status: 'version' must be a string")
    if isinstance(uptime, bool) or not isinstance(uptime, int | float) or not uptime >= 0:
        raise ValueError("status: 'uptime' must be a non-negative number")
    if not isinstance(draining, bool):
        raise ValueError("status: 'draining' must be true or false")
    return Status(
        version=version,
        pid=_pid(obj.get("pid"), "status"),
        uptime=float(uptime),
        sessions=_count(obj, "sessions"),
        running=_count(obj, "running"),
        queued=_count(obj, "queued"),
        draining=draining,
    )


def _release(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    if not all(part.isascii() and part.isdecimal() and len(part) < 10 for part in parts):
        return None
    return tuple(int(part) for part in parts)


def newer(a: str, b: str) -> bool:
    """Whether version `a` is newer than `b`, compared as tuples of ints. A version that
    does not parse compares as unequal and newer (unless the two strings are equal)."""
    left, right = _release(a), _release(b)
    if left is None or right is None:
        return a != b
    return left > right
