"""The one-line handshake before MCP on a service's socket (issue #16).

Stdlib only, like `rendezvous`: the thin front imports both in milliseconds.

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

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

PROTOCOL = 1
MAGIC = "agent-dispatch"
MAX_HELLO_BYTES = 1 << 20
MAX_REPLY_BYTES = 1 << 16
REFUSAL_CODES = ("outdated", "protocol", "bad_hello", "draining")


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
