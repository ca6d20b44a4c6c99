"""Small file-system helpers shared by the config and the job store."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path


def state_home(env: Mapping[str, str] | None = None) -> Path:
    """`~/.config/agent-dispatch`, where the config and job records live by default."""
    env = os.environ if env is None else env
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "agent-dispatch"


def env_path(env: Mapping[str, str] | None, name: str) -> Path | None:
    """An absolute path from environment variable `name`, when it is set and non-empty."""
    value = (os.environ if env is None else env).get(name, "")
    return Path(value).expanduser().absolute() if value else None


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
