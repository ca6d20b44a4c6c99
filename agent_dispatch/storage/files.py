"""Small file-system helpers shared by the config, the job store and `describe`."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path


def atomic_write(target: Path, data: bytes) -> os.stat_result:
    """Write `data` to a unique 0600 temp file beside `target`, fsync, rename it over
    `target`, fsync the directory. Returns the new file's stat. Raises OSError; a
    failed write leaves no temp file behind."""
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            st = os.fstat(fd)  # a rename keeps inode, size and mtime
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every filesystem can fsync a directory
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return st


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory: nothing to read safely."""


class FileTooLarge(OSError):
    """The file holds more bytes than the caller's limit."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def read_regular(
    path: str | os.PathLike[str], limit: int, *, head: bool = False, follow_symlinks: bool = False
) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at `path` and its fstat, never blocking or unbounded.

    The open is O_NONBLOCK (a FIFO opens without waiting for a writer) and, unless
    `follow_symlinks`, O_NOFOLLOW (a symlink as the last component fails with ELOOP);
    then fstat must show a regular file, else NotRegularFile. At most `limit` bytes
    are read: with `head` the first `limit` bytes come back whatever the size, else a
    longer file raises FileTooLarge. Every failure is an OSError.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise NotRegularFile(errno.EINVAL, f"{kind}, not a regular file", os.fspath(path))
        if not head and st.st_size > limit:
            raise _too_large(path, limit)
        want = limit if head else limit + 1  # one byte more tells a file that grew
        chunks: list[bytes] = []
        size = 0
        while size < want and (chunk := os.read(fd, min(want - size, 1 << 20))):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _too_large(path, limit)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def _too_large(path: str | os.PathLike[str], limit: int) -> FileTooLarge:
    return FileTooLarge(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))
