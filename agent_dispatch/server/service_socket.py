"""The OS side of the per-user service: its lock, its Unix socket, the peer's uid and
the hello line read off a fresh connection (the protocol is agent_dispatch.rendezvous).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from pathlib import Path

import trio

__all__ = [
    "PrefixedStream",
    "acquire_lock",
    "bind_socket",
    "lock_holder",
    "peer_uid",
    "read_line",
    "remove_stale_socket",
    "unlink_if_ours",
]


def acquire_lock(path: Path) -> int | None:
    """Take the setup's service lock for the process's life: the fd (close-on-exec, never
    closed by us), or None when another service holds it. Our pid goes in the file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def lock_holder(path: Path) -> int | None:
    """The pid the lock file names (the service that holds it, or held it last)."""
    try:
        with open(path, "rb") as f:
            text = f.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and len(text) < 10 else None


def remove_stale_socket(path: Path) -> bool:
    """Remove a socket file nothing answers on; False when something does answer there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ETIMEDOUT, errno.EAGAIN):
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        probe.close()
    return False


def bind_socket(path: Path) -> tuple[socket.socket, int]:
    """A listening Unix socket at `path`, mode 0600 (its directory is 0700 as well), and
    the file's inode; blocking (run it in a thread), then `trio.socket.from_stdlib_socket`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        os.chmod(path, 0o600)
        sock.listen(128)
        inode = os.lstat(path).st_ino
    except BaseException:
        sock.close()
        raise
    return sock, inode


def unlink_if_ours(path: Path, inode: int) -> None:
    """Remove the socket file if it is still the one we bound (a successor may own it)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def peer_uid(stream: trio.SocketStream) -> int:
    """The uid of the process at the other end (SO_PEERCRED, Linux)."""
    creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


async def read_line(stream: trio.abc.ReceiveStream, limit: int) -> tuple[bytes, bytes]:
    """One line (with its newline) and the bytes read past it. ValueError when the
    stream ends first or the line passes `limit` bytes; bound it with a cancel scope."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            return bytes(buffer[: end + 1]), bytes(buffer[end + 1 :])
        if len(buffer) > limit:
            raise ValueError(f"hello: over the {limit}-byte limit")
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ValueError("hello: the connection ended before a whole line")
        buffer += chunk


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A socket stream that first gives back the bytes read past the hello."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()
