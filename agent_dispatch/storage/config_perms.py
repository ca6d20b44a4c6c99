"""Who may write the config: only its owner, as ssh insists for ~/.ssh.

Whoever can write agents.yaml can set `claude_path` (or an agent's tools and
permission mode) and so run programs as the user. A config file that is group-
or world-writable, or owned by someone other than the user (or root), is
refused, and so is one in such a directory: a writable directory lets others
replace the file. A symlinked config is judged by the file it leads to, and
both the directory holding the link and the one holding its target count. A
sticky directory (like /tmp) is fine: others cannot replace a file in it.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from agent_dispatch.errors import ConfigError

__all__ = ["InsecureConfig", "check_private"]


class InsecureConfig(ConfigError):
    """The config, or a directory holding it, can be written by others. `fix` is the command."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message, f"Run: {fix}")
        self.fix = fix


def check_private(path: Path, st: os.stat_result) -> None:
    """Raise InsecureConfig unless only the user can change the config at `path`.

    `st` is the stat of the file `path` leads to (symlinks followed). The
    directories holding `path` and its real target are stat'ed here.
    """
    real = os.path.realpath(path)
    _check(real, st, "config")
    for directory in dict.fromkeys((os.path.dirname(os.path.abspath(path)), os.path.dirname(real))):
        try:
            dst = os.stat(directory)
        except OSError as exc:
            raise ConfigError(
                f"cannot check config directory {directory}: {exc.strerror or exc}"
            ) from None
        _check(directory, dst, "config directory")


def _check(path: str, st: os.stat_result, what: str) -> None:
    quoted = shlex.quote(path)
    if st.st_uid not in (os.geteuid(), 0):
        raise InsecureConfig(
            f"{what} {path} is owned by uid {st.st_uid}, not by you: whoever owns it can "
            "set claude_path and run programs as you, so it is not used",
            f"sudo chown $(id -u) {quoted} && chmod go-w {quoted}",
        )
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o022 or (stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX):
        return
    who = " and ".join(
        name for bit, name in ((0o020, "its group"), (0o002, "everyone")) if mode & bit
    )
    raise InsecureConfig(
        f"{what} {path} is writable by {who} (mode {mode:04o}): whoever can write it can "
        "set claude_path and run programs as you, so it is not used",
        f"chmod go-w {quoted}",
    )
