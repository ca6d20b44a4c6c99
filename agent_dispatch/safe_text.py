"""Untrusted text made safe to show on a terminal or in a client's status line.

Agent results, job tasks, progress lines and what a child printed can hold escape
sequences that recolour, retitle, move the cursor or hide text, and bidi overrides
that reorder what a reader sees. `terminal_text` removes them; the CLI
(cli/terminal.py) and the MCP task status lines (server/tasks.py) use it.
"""

from __future__ import annotations

import re

# Whole escape sequences go, so no "[31m" debris is left behind. The string
# bodies stop at any introducer, which keeps every scan linear; an unterminated
# one is not a sequence here, and its introducer is dropped below like any control.
_ESCAPE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x90-\x9f]*(?:\x07|\x1b\\|\x9c)"  # OSC..
    r"|\x1b[ -/]*[0-~]"  # the short escapes (charset, keypad, full reset)
)
# C0 except tab and newline, DEL, C1, and the bidi controls (Trojan-Source reordering).
UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
UNSAFE_RE = re.compile(f"[{UNSAFE}]")


def terminal_text(text: str) -> str:
    """`text` without escape sequences and without any character in UNSAFE.

    Tabs and newlines stay; a carriage return goes (it would let a line overwrite
    itself). Printable text, whatever its script, is unchanged.
    """
    return UNSAFE_RE.sub("", _ESCAPE_RE.sub("", text))
