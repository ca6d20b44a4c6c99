"""The faces' spelling of agent fields, converted into the one spec: an AgentPatch.

The MCP tools and the CLI take agent fields as text (and numbers) with the same
rules: empty means unchanged, `none` clears, tool lists are comma lists with
`[]` for none. They differ only in what a 0 means for a number (MCP update:
unchanged; the CLI and add: the default), which the caller says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args

import msgspec
from msgspec import UnsetType

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import AgentPatch, convert

CLEAR = "none"  # this value clears a field
EMPTY_LIST = "[]"  # a tool list that allows/denies nothing (vs. inheriting defaults)

_TEXT = frozenset({"description", "instructions"})  # free text: kept as written
_TOOLS = frozenset({"allowed_tools", "disallowed_tools"})
_LABELS = frozenset({"capabilities", "risky_capabilities"})
_NUMBERS = frozenset({"timeout", "max_budget_usd"})


def split_list(text: str) -> tuple[str, ...]:
    """Split a comma list, keeping commas inside parentheses (`Bash(git log:*, ...)`)."""
    items: list[str] = []
    depth, current = 0, list[str]()
    for ch in text:
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        depth += (ch == "(") - (ch == ")")
        current.append(ch)
    items.append("".join(current))
    return tuple(item.strip() for item in items if item.strip())


def parse_tool_list(text: str, field: str) -> tuple[str, ...]:
    """`"[]"`: no tools; else the comma list, which must name at least one."""
    if text.strip() == EMPTY_LIST:
        return ()
    tools = split_list(text)
    if not tools:  # ",,," is a typo, not a wish to allow nothing
        raise InvalidArgument(
            f"{field}: no tool names in {text!r}",
            f'Use "{EMPTY_LIST}" for no tools, or leave it out to inherit the defaults.',
        )
    return tools


def _value_type(annotation: Any) -> Any:
    """A patch field's type without its UNSET and None (clear) options."""
    kept = tuple(t for t in get_args(annotation) if t not in (UnsetType, type(None)))
    return kept[0] if len(kept) == 1 else Union[kept]  # noqa: UP007 - a runtime union


_FIELDS = msgspec.structs.fields(AgentPatch)
_VALUE_TYPES = {f.name: _value_type(f.type) for f in _FIELDS}
_CLEARABLE = frozenset(f.name for f in _FIELDS if type(None) in get_args(f.type))


def _number(field: str, value: Any, hint: str) -> Any:
    """A number as text (a command line) parsed; a whole float made an int (MCP sends
    `42.0` for 42)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidArgument(
                f"{field}: expected a number or none, got {value!r}", hint
            ) from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _spelled(field: str, raw: object) -> tuple[bool, Any]:
    """(given, value) for one face value: None/"" are not given, "none" is a clear."""
    if raw is None or not isinstance(raw, str):
        return raw is not None, raw
    text = raw if field in _TEXT else raw.strip()
    if not text:
        return False, None
    if text.lower() == CLEAR:
        return True, None
    if field in _TOOLS:
        return True, parse_tool_list(text, field)
    if field in _LABELS:
        return True, split_list(text)
    return True, text


def patch_from_args(
    args: Mapping[str, object],
    *,
    zero: Literal["unchanged", "default"],
    hint: Callable[[str], str | None] = lambda field: None,
) -> AgentPatch:
    """The AgentPatch a face's arguments spell (field name -> text, number or None).

    None or empty text (blank, except for description and instructions) leaves a
    field unchanged; "none" in any case clears it; a 0 for timeout or max_budget_usd
    is `zero`. Numbers may come as text (a command line). Each field's value is
    checked by its type in AgentPatch; an error names the field, with `hint(field)`.
    """
    fields: dict[str, Any] = {}
    for field, raw in args.items():
        if field not in _VALUE_TYPES:
            raise InvalidArgument(f'unknown field "{field}"', hint(field) or "")
        given, value = _spelled(field, raw)
        if not given:
            continue
        field_hint = hint(field) or ""
        if value is None:
            if field not in _CLEARABLE:
                raise InvalidArgument(f"{field}: cannot be cleared", field_hint)
        elif field in _NUMBERS:
            value = _number(field, value, field_hint)
            if value == 0 and not isinstance(value, bool):
                if zero == "unchanged":
                    continue
                value = None
        if value is not None:
            value = convert(value, _VALUE_TYPES[field], field=field, hint=field_hint)
        fields[field] = value
    return AgentPatch(**fields)
