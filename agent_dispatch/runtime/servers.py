"""The registry of running servers: which agent-dispatch processes hold jobs (issue #15).

Every service and every standalone `serve` keeps one small file,
`<runtime dir>/servers/<pid>.json` (the runtime dir of `rendezvous`: private, per
user), saying what it is, which version, since when, for which setup, and the ids of
the jobs it runs now; it rewrites the file when its jobs change and removes it on the
way out. A process killed outright leaves its file: readers drop entries whose pid is
gone or belongs to another process now (its start time differs), so `doctor` sees
exactly the live ones, and can tell the user which run an older version.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from agent_dispatch import rendezvous
from agent_dispatch.rendezvous import process_start
from agent_dispatch.storage.files import atomic_write

Kind = Literal["service", "standalone", "front"]

MAX_ENTRY_BYTES = 1 << 20


class ServerEntry(msgspec.Struct, kw_only=True):
    """One running server, as its registry file says."""

    pid: int
    kind: Kind
    version: str
    started_at: str  # ISO 8601 UTC
    config: str
    jobs_dir: str
    jobs: list[str] = []
    process_started: int | None = None  # /proc start time: tells a reused pid apart


_DECODER = msgspec.json.Decoder(ServerEntry)
_ENCODER = msgspec.json.Encoder()


def registry_dir(env: Mapping[str, str] | None = None) -> Path:
    """`<runtime dir>/servers`, created 0700 (raises OSError, as rendezvous does)."""
    directory = rendezvous.runtime_dir(env) / "servers"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    return directory


def new_entry(
    kind: Kind, version: str, config: Path, jobs_dir: Path, jobs: list[str] | None = None
) -> ServerEntry:
    """This process's entry."""
    pid = os.getpid()
    return ServerEntry(
        pid=pid,
        kind=kind,
        version=version,
        started_at=rendezvous.utc_stamp(),
        config=str(config),
        jobs_dir=str(jobs_dir),
        jobs=list(jobs or []),
        process_started=process_start(pid),
    )


def write(directory: Path, entry: ServerEntry) -> None:
    """Publish `entry` (atomically: a reader sees the old file or the new one)."""
    atomic_write(directory / f"{entry.pid}.json", _ENCODER.encode(entry))


def remove(directory: Path, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / f"{pid}.json")


def decode(data: bytes) -> ServerEntry | None:
    """The entry in `data`, None when it is not one (never raises)."""
    try:
        entry = _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    return entry if entry.pid > 0 else None


def alive(entry: ServerEntry) -> bool:
    """Whether the entry's process still runs (the same process, not a reused pid)."""
    started = process_start(entry.pid)
    if started is None:
        return False
    return entry.process_started is None or entry.process_started == started


def live_entries(directory: Path) -> list[ServerEntry]:
    """The entries of live servers, oldest first; files of dead ones (and files that are
    not entries, or name another pid) are removed on the way."""
    found: list[ServerEntry] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot != "." or ext != "json" or not stem.isdecimal():
            continue  # a temp file being written, or not ours
        path = directory / name
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            continue  # its server just removed it
        entry = decode(data) if len(data) <= MAX_ENTRY_BYTES else None
        if entry is None or str(entry.pid) != stem:
            # Not an entry this version reads (a newer one's, a damaged one): left to
            # its server while that runs, removed once its pid is gone.
            if process_start(int(stem)) is None:
                remove(directory, int(stem))
            continue
        if not alive(entry):
            remove(directory, entry.pid)
            continue
        found.append(entry)
    found.sort(key=lambda e: (e.started_at, e.pid))
    return found


def is_serve_command(argv: list[str]) -> bool:
    """Whether `argv` runs agent-dispatch's `serve` (any version, any install):
    `.../agent-dispatch serve ...` or `python -m agent_dispatch serve ...`."""
    for i, word in enumerate(argv[:-1]):
        if os.path.basename(word) == "agent-dispatch" and argv[i + 1] == "serve":
            return True
        if word == "-m" and argv[i + 1] == "agent_dispatch" and argv[i + 2 : i + 3] == ["serve"]:
            return True
    return False


def serve_processes(proc: Path = Path("/proc")) -> list[tuple[int, str, str | None]]:
    """The running processes of this user whose command line runs `serve`, as (pid,
    command line, the runtime directory its environment names: whose registry it
    belongs in), this process left out; empty where there is no /proc."""
    found: list[tuple[int, str, str | None]] = []
    try:
        names = os.listdir(proc)
    except OSError:
        return found
    me, uid = os.getpid(), os.getuid()
    for name in names:
        if not name.isdecimal() or int(name) == me:
            continue
        try:
            if os.stat(proc / name).st_uid != uid:
                continue
            with open(proc / name / "cmdline", "rb") as f:
                raw = f.read(1 << 16)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        argv = [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
        if is_serve_command(argv):
            found.append((int(name), " ".join(argv), _runtime_of(proc / name)))
    found.sort()
    return found


def _runtime_of(process: Path) -> str | None:
    """The runtime directory the process's environment names, None if unreadable."""
    try:
        with open(process / "environ", "rb") as f:
            raw = f.read(1 << 20)
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key == b"XDG_RUNTIME_DIR":
            env["XDG_RUNTIME_DIR"] = value.decode("utf-8", "replace")
    return rendezvous.runtime_candidate(env)


def unregistered(
    entries: list[ServerEntry], env: Mapping[str, str] | None = None, proc: Path = Path("/proc")
) -> list[tuple[int, str]]:
    """The `serve` processes that belong in this registry (their environment names the
    same runtime directory) but are not in it: a version from before the registry."""
    mine = rendezvous.runtime_candidate(os.environ if env is None else env)
    known = {entry.pid for entry in entries}
    return [
        (pid, argv)
        for pid, argv, runtime in serve_processes(proc)
        if pid not in known and runtime == mine
    ]
