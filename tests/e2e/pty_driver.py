"""The real interactive ``claude`` (no ``-p``) under a pseudo-terminal, for the e2e tier.

Headless ``claude -p`` never declares the MCP tasks extension (MCP_TASKS.md 2.3); only
the interactive terminal UI does, so that is what a task test has to drive.

    async with interactive_claude(binary, env, cwd, args=[...], prompt="...") as cli:
        await fake_api.wait_until(...)   # wait on API requests, not on the screen
        ... cli.screen() ...             # the screen so far, for failure messages

``prepare_home`` writes the test HOME's ``~/.claude.json`` so that no first-run dialog
shows: onboarding done, the project's trust accepted, the fake API key approved. The
prompt goes on the command line (``claude "prompt"`` starts the session with it), so
no keys need typing; ``send`` types more when a test wants to.

The CLI runs in its own session with the pty as its controlling terminal (``setsid
-c``), so its process group is exactly it and what it started (the MCP servers among
them, unless they leave the group). On leaving the block the driver asks it to exit
(Ctrl-C, two or three presses), then SIGTERMs and SIGKILLs the group and waits until it
is empty: nothing is left behind, whatever happened in the block.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import struct
import termios
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from agent_dispatch.exception_groups import collapsed

__all__ = ["InteractiveClaude", "interactive_claude", "prepare_home", "screen_text"]

ROWS, COLUMNS = 50, 160
# Ctrl-C presses to exit (one more than two: a turn in flight takes one), each given
# this long to end the CLI (well inside its "press again to exit" window); then SIGTERM.
EXIT_PRESSES = 3
PRESS_GAP_S = 0.5
TERM_GRACE_S = 2.0
DEATH_LIMIT_S = 2.0  # SIGKILLed processes get this long to finish dying
SCREEN_TAIL_CHARS = 4000

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS, SOS, PM, APC
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x1b[()][0-9A-Za-z]"  # charset selection
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def screen_text(raw: bytes) -> str:
    """What a terminal output stream says, roughly: escape sequences dropped, carriage
    returns as line ends, blank runs squeezed. Good for messages, not for layout."""
    text = _ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r\n", "\n").replace("\r", "\n")
    lines = (_CONTROL.sub("", line).rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def prepare_home(home: Path, project: Path, api_key: str) -> None:
    """Write ``home/.claude.json`` so the interactive CLI opens straight on its prompt:
    onboarding completed, ``project`` trusted, ``api_key`` approved (the CLI keeps the
    last 20 characters of a key it asked about). These three are all 2.1.332 needs."""
    state: dict[str, Any] = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
        "projects": {str(project): {"hasTrustDialogAccepted": True}},
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=2))


class InteractiveClaude:
    """One running interactive CLI: its process, its terminal, what it has shown."""

    def __init__(self, process: trio.Process, master: trio.lowlevel.FdStream) -> None:
        self.process = process
        self._master = master
        self._output = bytearray()
        self.closed = trio.Event()  # the terminal reported end of output

    @property
    def pid(self) -> int:
        return self.process.pid

    def screen(self, tail: int = SCREEN_TAIL_CHARS) -> str:
        """The end of everything the CLI has shown, as text (for failure messages)."""
        return screen_text(bytes(self._output))[-tail:]

    async def send(self, keys: str) -> None:
        """Type ``keys`` (``"\\r"`` is Enter, ``"\\x03"`` Ctrl-C)."""
        await self._master.send_all(keys.encode())

    @contextlib.contextmanager
    def expecting(self, what: str, seconds: float) -> Iterator[None]:
        """Bound the waits inside to ``seconds``; when they run out, fail saying that
        ``what`` did not happen, with the end of the screen (what the user would see)."""
        try:
            with trio.fail_after(seconds):
                yield
        except trio.TooSlowError:
            raise AssertionError(
                f"{what}: not within {seconds} s. The CLI's screen ends:\n{self.screen()}"
            ) from None

    async def _read(self) -> None:
        try:
            while chunk := await self._master.receive_some(65536):
                self._output += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # EIO: every slave end is closed, the CLI and its children are gone
        finally:
            self.closed.set()

    async def _stop(self) -> None:
        """Ask the CLI to exit, then end its process group by force; reap it."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            # Ctrl-C: the first interrupts a turn in flight, two in a row exit.
            for _ in range(EXIT_PRESSES):
                if self.process.returncode is not None:
                    break
                await self.send("\x03")
                with trio.move_on_after(PRESS_GAP_S):
                    await self.process.wait()
        for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, None)):
            # The group outlives its leader when children stayed in it: signal it anyway.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            if grace is not None and self.process.returncode is None:
                with trio.move_on_after(grace):
                    await self.process.wait()
        await self.process.wait()
        with trio.move_on_after(DEATH_LIMIT_S):
            await self._group_gone()

    async def _group_gone(self) -> None:
        """Wait until no process is left in the CLI's group (its killed children die and
        are reaped by init). Callers bound the wait."""
        while True:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            await trio.sleep(0.02)  # other processes dying: no event to wait on


def _set_window(fd: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))


@asynccontextmanager
async def interactive_claude(
    binary: Path,
    env: Mapping[str, str],
    cwd: Path,
    *,
    args: Sequence[str] = (),
    prompt: str | None = None,
) -> AsyncIterator[InteractiveClaude]:
    """Run ``binary args [-- prompt]`` interactively on a fresh pty, in ``cwd`` with
    ``env`` (``prepare_home`` its HOME first); stop it and its group on leaving."""
    argv = ["setsid", "--ctty", str(binary), *args]
    if prompt is not None:
        argv += ["--", prompt]
    master_fd, slave_fd = os.openpty()
    try:
        _set_window(slave_fd)
        process = await trio.lowlevel.open_process(
            argv,
            stdin=slave_fd,
            stdout=slave_fd,
            stderr=slave_fd,
            cwd=cwd,
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)},
        )
    except BaseException:
        os.close(master_fd)
        raise
    finally:
        os.close(slave_fd)
    master = trio.lowlevel.FdStream(master_fd)  # owns master_fd from here
    cli = InteractiveClaude(process, master)
    try:
        # collapsed: what the block raises (a failed assertion) comes out as itself.
        with collapsed():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cli._read)
                try:
                    yield cli
                finally:
                    with trio.CancelScope(shield=True):
                        await cli._stop()
                        with trio.move_on_after(TERM_GRACE_S):
                            await cli.closed.wait()  # the rest of the output, for messages
                    nursery.cancel_scope.cancel()
    finally:
        with contextlib.suppress(OSError):
            await master.aclose()
