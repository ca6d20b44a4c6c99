"""Answer the MCP handshake while the SDK is still importing.

Importing mcp 2.x (pydantic models for every protocol revision) takes most of a
second; trio, the Dispatcher and the wire are ready long before. A client
(Claude Code starting its MCP servers) can use no tool before `initialize` and
`tools/list` are answered, so `serve` answers those two from `handshake.json`,
the SDK's own answers recorded by `scripts/gen-handshake` (a test keeps the
file current), while the SDK imports in a thread. The other lists a client fetches on connecting
(prompts, resources, resource templates) are answered the same way.

The SDK still sees every message, in order. A request answered early is
replayed to it under a private id; its answer to the replay is dropped on the
way out and compared with ours. A `tools/list` that differed is followed by
`notifications/{tools,prompts,resources}/list_changed`, so the client fetches
the SDK's list.
Everything else waits for the SDK: a `tools/call` sent during startup, a client
that does not open with `initialize` (the 2026 stateless era), params the
record does not cover. A record made for another mcp or agent-dispatch version
is not used at all: `serve` then records its own SDK into the user's cache
(`~/.cache/agent-dispatch/handshake.json`) and answers from that on the next
start, re-recording it whenever the SDK disagrees with it.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import msgspec
import trio

from agent_dispatch import __version__
from agent_dispatch.files import atomic_write

log = logging.getLogger("agent_dispatch.early")

HANDSHAKE_FILE = Path(__file__).with_name("handshake.json")
# The parameterless lists a client fetches on connecting; answered early when recorded.
EARLY_LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
_QUEUE = 256  # lines read ahead of the SDK; the reader blocks beyond that
_MISSING = object()


class Handshake(msgspec.Struct, frozen=True):
    """What `server.record_handshake()` recorded: answers per protocol revision."""

    agent_dispatch: str
    mcp: str
    latest: str
    versions: dict[str, dict[str, int]]  # revision -> method -> index in answers
    answers: list[Any]

    def initialize(self, requested: str) -> tuple[str, Any]:
        """The SDK's negotiation: the client's revision if it has one, else the latest."""
        version = requested if requested in self.versions else self.latest
        return version, self.answers[self.versions[version]["initialize"]]

    def answer(self, version: str, method: str) -> Any:
        """The recorded result of a parameterless `method` (not initialize), or _MISSING."""
        index = self.versions[version].get(method) if method != "initialize" else None
        return _MISSING if index is None else self.answers[index]


def load_handshake(path: Path = HANDSHAKE_FILE) -> Handshake | None:
    """The recorded handshake, when it was made by the installed versions; else None."""
    try:
        handshake = msgspec.json.decode(path.read_bytes(), type=Handshake)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.debug("no early handshake: %s", exc)
        return None
    installed = (__version__, installed_mcp())
    indexes = [i for methods in handshake.versions.values() for i in methods.values()]
    recorded = (handshake.agent_dispatch, handshake.mcp)
    if recorded != installed:
        log.debug("no early handshake: recorded for %s, installed %s", recorded, installed)
        return None
    if (
        handshake.latest not in handshake.versions
        or not all("initialize" in methods for methods in handshake.versions.values())
        or not all(0 <= i < len(handshake.answers) for i in indexes)
    ):
        log.debug("no early handshake: %s is inconsistent", path)
        return None
    return handshake


def user_record_path(env: Mapping[str, str] | None = None) -> Path:
    """Where `serve` keeps its own record when the packaged one does not fit."""
    env = os.environ if env is None else env
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(cache) / "agent-dispatch" / "handshake.json"


def choose_handshake(env: Mapping[str, str] | None = None) -> tuple[Handshake | None, Path | None]:
    """(the record to answer from, the user record to refresh or None).

    The packaged record when it fits the installed versions; else the user's,
    which `serve` writes (when missing) or rewrites (when found stale).
    """
    packaged = load_handshake(HANDSHAKE_FILE)  # read at call time: tests swap the file
    if packaged is not None:
        return packaged, None
    user = user_record_path(env)
    return load_handshake(user), user


def save_record(path: Path, record: bytes) -> None:
    """Write a user record; a cache that cannot be written only costs speed."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, record)
    except OSError as exc:
        log.debug("handshake record not saved to %s: %s", path, exc)


def installed_mcp() -> str | None:
    """mcp's version from its dist-info name: importlib.metadata costs ~70 ms here."""
    spec = importlib.util.find_spec("mcp")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    site = Path(spec.origin).parent.parent
    try:
        names = os.listdir(site)
    except OSError:
        return None
    for name in names:
        if name.startswith("mcp-") and name.endswith(".dist-info"):
            return name[len("mcp-") : -len(".dist-info")]
    return None


class Front:
    """Between the wire and the SDK: reads every line, answers the handshake early.

    `pump()` reads the wire into a queue the SDK iterates (`source`); the SDK
    writes through `sink`. Call `sdk_ready()` before the SDK starts reading:
    from then on lines pass through untouched.
    """

    def __init__(
        self,
        rx: trio.abc.ReceiveStream,
        tx: trio.abc.SendStream,
        handshake: Handshake | None,
        *,
        on_broken: Callable[[], None],
    ) -> None:
        self._rx, self._tx = rx, tx
        self._handshake = handshake  # None once the SDK is ready
        self._on_broken = on_broken
        self._opened = False
        self._version: str | None = None  # negotiated by an early initialize
        self._send_lock = trio.Lock()
        self._queue_in, self._queue_out = trio.open_memory_channel[str](_QUEUE)
        self._replays: dict[str, tuple[str, Any]] = {}  # private id -> (method, our result)
        token = secrets.token_hex(4)  # no client id can collide with a replay's
        self._ids = (f"agent-dispatch-early-{token}-{n}" for n in itertools.count())
        self.source = self._queue_out
        self.sink = _Sink(self)
        self.answered_early: list[str] = []  # methods, for logs and tests
        self.stale = trio.Event()  # set when the SDK disagreed with an early answer

    def sdk_ready(self) -> None:
        self._handshake = None

    async def pump(self) -> None:
        """Read the wire until EOF; the SDK sees EOF once it has read everything before it.

        A line that is not JSON-RPC is answered here with the JSON-RPC error (the
        SDK would drop it, and a client waiting on its id would wait forever).
        """
        async with self._queue_in:
            async for line in _lines(self._rx):
                if not line.strip():
                    continue
                message, problem = _vet(line)
                if problem is not None:
                    await self._write(_encode({"jsonrpc": "2.0", **problem}))
                    continue
                if self._handshake is not None:
                    line = await self._maybe_answer(self._handshake, line, message)
                await self._queue_in.send(line)

    async def _maybe_answer(self, handshake: Handshake, line: str, message: Any) -> str:
        if not isinstance(message, dict):
            message = None
        method = message.get("method") if message is not None else None
        opening, self._opened = not self._opened, True
        if opening and method != "initialize":  # not the handshake era: the SDK decides
            self._handshake = None
            return line
        if message is None or not _is_id(message.get("id")) or not isinstance(method, str):
            return line
        params = message.get("params")
        if method == "initialize" and opening and _initialize_params(params):
            self._version, result = handshake.initialize(params["protocolVersion"])
        elif self._version is not None and _no_cursor(params):
            result = handshake.answer(self._version, method)
        else:
            result = _MISSING
        if result is _MISSING:
            return line
        private = next(self._ids)
        self._replays[private] = (method, result)
        self.answered_early.append(method)
        log.debug("answered %s before the SDK was ready", method)
        await self._write(_encode({"jsonrpc": "2.0", "id": message["id"], "result": result}))
        return _encode({**message, "id": private})

    async def _from_sdk(self, text: str) -> None:
        if self._replays:
            message = _decode(text)
            rid = message.get("id") if message is not None else None
            replay = self._replays.pop(rid, None) if isinstance(rid, str) else None
            if replay is not None:
                await self._compare(replay, message)
                return
        await self._write(text)

    async def _compare(self, replay: tuple[str, Any], message: Any) -> None:
        method, ours = replay
        if "result" not in message:
            log.warning("the SDK refused the %s answered early: %s", method, message.get("error"))
        elif message["result"] != ours:
            log.warning("the SDK's %s differs from the one answered early", method)
            self.stale.set()
            kind = method.split("/")[0]  # tools, prompts or resources (templates included)
            if kind in ("tools", "prompts", "resources"):
                changed = {"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}
                await self._write(_encode(changed))

    async def _write(self, text: str) -> None:
        async with self._send_lock:
            try:
                await self._tx.send_all(text.encode("utf-8"))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.info("the client closed stdout: shutting down")
                self._on_broken()


class _Sink:
    """The SDK's stdout: its writer task calls write() then flush() per message."""

    def __init__(self, front: Front) -> None:
        self._front = front

    async def write(self, text: str) -> None:
        await self._front._from_sdk(text)

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buffer = bytearray()
    while data := await stream.receive_some(65536):
        buffer += data
        while (nl := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[: nl + 1])
            del buffer[: nl + 1]
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


_ID_RE = re.compile(r'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')


def _vet(line: str) -> tuple[Any, dict[str, Any] | None]:
    """(the decoded message, None), or (None, the error reply) for a line that is not
    JSON-RPC. Batches and anything with a method or a result pass: the SDK's to judge."""
    try:
        message = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        message = _lenient(line)  # the SDK takes what Python's json takes: NaN, Infinity
        if message is _MISSING:
            return None, _error(_guess_id(line), -32700, f"Parse error: {exc}")
    if not isinstance(message, dict):
        return message, None
    rid = message.get("id") if _is_id(message.get("id")) else None
    if isinstance(message.get("method"), str):
        params = message.get("params")
        if params is None or isinstance(params, dict | list) or "id" not in message:
            return message, None  # (a notification gets no answer, not even an error)
        return None, _error(rid, -32602, "Invalid params: params must be an object or array")
    if "id" in message and ("result" in message or "error" in message):
        return message, None  # the client answering a request of ours
    return None, _error(rid, -32600, "Invalid Request: not a JSON-RPC request or response")


def _lenient(line: str) -> Any:
    """The line as Python's json reads it, unless it holds text that is not Unicode
    (a lone surrogate), which the SDK would choke on; else _MISSING."""
    try:
        message = json.loads(line)
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        return _MISSING
    return message


def _guess_id(line: str) -> object:
    """The id of a request that does not decode, when it shows plainly; else None."""
    found = _ID_RE.search(line)
    try:
        return msgspec.json.decode(found.group(1)) if found else None
    except msgspec.DecodeError:
        return None


def _error(rid: object, code: int, message: str) -> dict[str, Any]:
    return {"id": rid, "error": {"code": code, "message": message}}


def _decode(text: str) -> dict[str, Any] | None:
    try:
        message = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    return message if isinstance(message, dict) else None


def _encode(message: dict[str, Any]) -> str:
    return msgspec.json.encode(message).decode("utf-8") + "\n"


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _initialize_params(params: object) -> TypeGuard[dict[str, Any]]:
    """What the SDK's InitializeRequestParams requires; anything odder is the SDK's to judge."""
    if not isinstance(params, dict):
        return False
    client = params.get("clientInfo")
    return (
        isinstance(params.get("protocolVersion"), str)
        and isinstance(params.get("capabilities"), dict)
        and isinstance(client, dict)
        and isinstance(client.get("name"), str)
        and isinstance(client.get("version"), str)
    )


def _no_cursor(params: object) -> bool:
    return params is None or (isinstance(params, dict) and set(params) <= {"_meta"})
