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
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import msgspec
import trio

from agent_dispatch import __version__
from agent_dispatch.server import wire
from agent_dispatch.storage.files import atomic_write

log = logging.getLogger("agent_dispatch.server.early")

HANDSHAKE_FILE = Path(__file__).with_name("handshake.json")
# The parameterless lists a client fetches on connecting; answered early when recorded.
EARLY_LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
_QUEUE = 8  # lines read ahead of the SDK; the reader blocks beyond that
# Requests the SDK is working on; the reader stops reading beyond that, so a client that
# writes without reading gets a full pipe, not a server that grows without bound.
MAX_IN_FLIGHT = 64
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
    from then on lines pass through untouched, once vetted (`wire.vet`).
    """

    def __init__(
        self,
        rx: trio.abc.ReceiveStream,
        tx: trio.abc.SendStream,
        handshake: Handshake | None,
        *,
        on_broken: Callable[[], None],
        max_line: int = wire.DEFAULT_MAX_LINE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._rx, self._tx = rx, tx
        self._handshake = handshake  # None once the SDK is ready
        self._on_broken = on_broken
        self._max_line = max_line
        self._in_flight = _InFlight(max_in_flight)
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

    @property
    def in_flight(self) -> int:
        """Requests the SDK has and has not answered yet."""
        return self._in_flight.count

    async def pump(self) -> None:
        """Read the wire until EOF; the SDK sees EOF once it has read everything before it.

        Every line is vetted first: what the SDK would drop unanswered (not
        JSON-RPC, too deep, too long) is answered here with the JSON-RPC error,
        and nothing a line holds can end the session.
        """
        splitter = wire.LineSplitter(self._max_line)
        async with self._queue_in:
            while data := await self._rx.receive_some(65536):
                for frame in splitter.feed(data):
                    await self._take(frame)
            for frame in splitter.end():
                await self._take(frame)

    async def _take(self, frame: wire.Frame) -> None:
        if isinstance(frame, wire.Oversized):
            log.warning("a message of %d bytes exceeds the limit", frame.size)
            verdict: wire.Verdict = wire.oversized_reply(frame, self._max_line)
        else:
            verdict = wire.vet(frame.data)
        if isinstance(verdict, wire.Drop):
            log.debug("dropped %s", verdict.reason)
        elif isinstance(verdict, wire.Reply):
            await self._write(_encode(verdict.message))
        else:
            await self._forward(verdict)

    async def _forward(self, verdict: wire.Forward) -> None:
        line, request = verdict.text, verdict.request
        opening, self._opened = not self._opened, True
        if opening:
            log.debug("the client opened with %s", verdict.message.get("method"))
        if self._handshake is not None:
            line, request = await self._maybe_answer(self._handshake, verdict, opening=opening)
        if request is not None:
            await self._in_flight.admit(request)  # blocks the reader while the SDK is full
        if verdict.cancels is not None:
            self._in_flight.settle(verdict.cancels)  # the SDK never answers a cancelled request
        await self._queue_in.send(line)

    async def _maybe_answer(
        self, handshake: Handshake, verdict: wire.Forward, *, opening: bool
    ) -> tuple[str, wire.RequestId | None]:
        message, method = verdict.message, verdict.message.get("method")
        line, request = verdict.text, verdict.request
        if opening and method != "initialize":  # not the handshake era: the SDK decides
            self._handshake = None
            return line, request
        if request is None or not isinstance(method, str):
            return line, request
        params = message.get("params")
        if method == "initialize" and opening and _initialize_params(params):
            self._version, result = handshake.initialize(params["protocolVersion"])
        elif self._version is not None and _no_cursor(params):
            result = handshake.answer(self._version, method)
        else:
            result = _MISSING
        if result is _MISSING:
            return line, request
        private = next(self._ids)
        self._replays[private] = (method, result)
        self.answered_early.append(method)
        log.debug("answered %s before the SDK was ready", method)
        await self._write(_encode({"jsonrpc": "2.0", "id": request, "result": result}))
        return _encode({**message, "id": private}), private

    async def _from_sdk(self, text: str) -> None:
        head = _head(text)
        if head is not None and head.method is None and head.id is not None:
            self._in_flight.settle(head.id)
            replay = self._replays.pop(head.id, None) if isinstance(head.id, str) else None
            if replay is not None:
                message = _decode(text)
                if message is not None:
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


class _InFlight:
    """Requests handed to the SDK and not answered yet, bounded: `admit` waits for room.

    Keyed as the SDK correlates ids ("7" is 7); a duplicate id counts twice.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ids: dict[wire.RequestId, int] = {}
        self.count = 0
        self._room = trio.Event()

    async def admit(self, rid: wire.RequestId) -> None:
        while self.count >= self._limit:
            self._room = trio.Event()
            await self._room.wait()
        key = wire.request_key(rid)
        self._ids[key] = self._ids.get(key, 0) + 1
        self.count += 1

    def settle(self, rid: wire.RequestId) -> None:
        key = wire.request_key(rid)
        held = self._ids.get(key, 0)
        if held == 0:
            return
        if held == 1:
            del self._ids[key]
        else:
            self._ids[key] = held - 1
        self.count -= 1
        self._room.set()


class _Sink:
    """The SDK's stdout: its writer task calls write() then flush() per message."""

    def __init__(self, front: Front) -> None:
        self._front = front

    async def write(self, text: str) -> None:
        await self._front._from_sdk(text)

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


class _Head(msgspec.Struct):
    """What the Front needs of the SDK's own messages: is it an answer, to which id."""

    id: str | int | None = None
    method: str | None = None


_HEAD = msgspec.json.Decoder(_Head)


def _head(text: str) -> _Head | None:
    try:
        return _HEAD.decode(text)  # skips the rest without building it
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _decode(text: str) -> dict[str, Any] | None:
    try:
        message = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def _encode(message: dict[str, Any] | list[dict[str, Any]]) -> str:
    return msgspec.json.encode(message).decode("utf-8") + "\n"


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
