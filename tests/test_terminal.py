"""terminal.py: the one sanitizer for untrusted text on a terminal, and its JSON twin."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.cli.terminal import json_text, terminal_text

# Written out independently of the module: what must never reach a terminal raw.
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

hostile_chars = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(["\x1b", "\x9b", "\x9d", "\x9c", "\x07", "[", "]", ";", "\\", "\r", *BIDI]),
)
hostile_text = st.text(hostile_chars, max_size=300)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mRED\x1b[0m", "RED"),
        ("\x1b[2J\x1b[Hclear", "clear"),
        ("\x1b]0;pwned\x07title", "title"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x9b2Jcsi", "csi"),
        ("\x1bcreset", "reset"),
        ("abc\rXYZ", "abcXYZ"),
        ("\u202eevil\u202c", "evil"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("\x1b]0;unterminated title", "0;unterminated title"),
        ("naïve 日本語 🎉 a\u200db", "naïve 日本語 🎉 a\u200db"),
    ],
)
def test_escape_sequences_and_controls_are_removed_and_text_stays(raw: str, shown: str) -> None:
    assert terminal_text(raw) == shown


@settings(max_examples=200, deadline=None)
@given(hostile_text)
def test_the_output_never_holds_a_control_character_but_tab_and_newline(text: str) -> None:
    out = terminal_text(text)
    assert FORBIDDEN.search(out) is None, repr(out)
    assert terminal_text(out) == out  # idempotent: nothing left to strip


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters=BIDI)))
def test_text_without_controls_is_unchanged(text: str) -> None:
    assert terminal_text(text) == text


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | hostile_text,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_json_output_keeps_every_string_whole_with_no_raw_control(value: object) -> None:
    out = json_text(value)
    assert json.loads(out) == value
    assert FORBIDDEN.search(out.replace("\n", "")) is None


def test_many_unterminated_introducers_are_scanned_in_linear_time() -> None:
    for unit in ("\x9d", "\x1b]", "\x1b[0", "\x90x"):
        assert FORBIDDEN.search(terminal_text(unit * 200_000)) is None
