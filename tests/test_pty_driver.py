"""The e2e pty driver (tests/e2e/pty_driver.py) without the real CLI: its screen text
(terminal output is hostile input: any bytes; what it keeps must read as the text), its
primed HOME, and its promise that nothing of the program is left after the block (a
shell stands in for the CLI: the OS is the subject)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.pty_driver import interactive_claude, prepare_home, screen_text

SH = Path("/bin/sh")

# Escape sequences an Ink UI writes: colours, cursor moves, erases, a window title.
ESCAPES = st.sampled_from(
    ["\x1b[31m", "\x1b[0m", "\x1b[2K", "\x1b[1A", "\x1b[?25l", "\x1b[38;5;208m", "\x1b]0;t\x07"]
)
CONTROLS = frozenset(map(chr, [*range(0x20), 0x7F])) - {"\n", "\t"}
WORDS = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1)


@settings(max_examples=200)
@given(st.binary())
def test_screen_text_of_any_output_is_text_without_escapes_or_controls(raw: bytes) -> None:
    shown = screen_text(raw)
    assert not CONTROLS.intersection(shown), shown  # escapes among them


@settings(max_examples=200)
@given(st.lists(st.tuples(ESCAPES, WORDS), min_size=1, max_size=8))
def test_screen_text_keeps_the_words_between_escape_sequences(parts: list[tuple[str, str]]) -> None:
    lines = [word for _, word in parts]
    raw = "\r\n".join(escape + word for escape, word in parts).encode()
    assert screen_text(raw) == "\n".join(lines)


def test_prepare_home_approves_the_key_and_trusts_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    prepare_home(tmp_path, project, "sk-ant-" + "x" * 30)
    state = json.loads((tmp_path / ".claude.json").read_text())
    assert state["hasCompletedOnboarding"] is True
    assert state["customApiKeyResponses"]["approved"] == ["x" * 20]  # the key's last 20
    assert state["projects"][str(project)]["hasTrustDialogAccepted"] is True


async def test_the_screen_shows_what_the_program_wrote_on_its_terminal(tmp_path: Path) -> None:
    shown = r"printf '\033[1mready\033[0m on a tty: '; test -t 0 && test -t 1 && echo yes"
    async with interactive_claude(SH, os.environ, tmp_path, args=["-c", shown]) as cli:
        with trio.fail_after(10):
            await cli.closed.wait()  # it wrote, exited, and its terminal closed
    assert "ready on a tty: yes" in cli.screen()


async def test_leaving_the_block_ends_the_whole_group_even_when_it_ignores_ctrl_c(
    tmp_path: Path,
) -> None:
    stubborn = 'trap "" INT TERM; sleep 300 & sleep 300 & wait'  # ignored signals inherit
    with pytest.raises(ValueError, match=r"^the block failed$"):  # raised as itself
        async with interactive_claude(SH, os.environ, tmp_path, args=["-c", stubborn]) as cli:
            raise ValueError("the block failed")
    assert cli.process.returncode == -9  # SIGKILL it took
    with pytest.raises(ProcessLookupError):
        os.killpg(cli.pid, 0)
