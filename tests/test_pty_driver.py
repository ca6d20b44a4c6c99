"""The e2e pty driver's screen text (tests/e2e/pty_driver.py), without a CLI: terminal
output is hostile input to it (any bytes), and what it keeps must read as the text."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.pty_driver import prepare_home, screen_text

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
