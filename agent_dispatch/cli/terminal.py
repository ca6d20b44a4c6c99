"""Untrusted text made safe to show on a terminal: the one sanitizer of the CLI.

Agent results, job tasks, CLAUDE.md previews, directory names and what a child
printed can hold escape sequences that recolour, retitle, move the cursor or
hide text, and bidi overrides that reorder what a reader sees. Every line the CLI
prints goes through `terminal_text` (`cli_common.emit` / `warn` / `table`);
JSON output keeps the text whole with such characters escaped (`json_text`).
"""

from __future__ import annotations

import json
from typing import Any

from agent_dispatch.safe_text import UNSAFE, UNSAFE_RE, terminal_text

__all__ = ["UNSAFE", "json_text", "terminal_text"]


def json_text(value: Any) -> str:
    """`value` as indented JSON whose strings hold no raw UNSAFE character.

    json.dumps already escapes C0; DEL, C1 and the bidi controls are escaped
    here as \\uXXXX, so a program reading the JSON gets the text unchanged.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
