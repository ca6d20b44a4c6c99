"""agent_args.patch_from_args: both faces' spelling of agent fields becomes one AgentPatch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import AgentConfig, AgentPatch, convert
from agent_dispatch.service.agent_args import patch_from_args

FIELDS = AgentPatch.__struct_fields__

_face_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", " ", "none", "NONE", "[]", ",,", "0", "600", "1.5", "plan", "-x"])
    | st.text(max_size=10)
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), _face_values, max_size=5), st.booleans())
def test_face_values_become_a_patch_or_an_error_naming_the_field(
    args: dict[str, Any], unchanged_zero: bool
) -> None:
    try:
        patch = patch_from_args(args, zero="unchanged" if unchanged_zero else "default")
    except InvalidArgument as exc:
        assert exc.message.split(":")[0].split("[")[0] in args
        return
    assert set(patch.given()) <= set(args)
    for field, value in patch.given().items():
        assert value is None or value == getattr(convert({field: value}, AgentPatch), field)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), _face_values, max_size=4))
def test_random_json_is_a_patch_or_an_error_naming_the_field(value: dict[str, Any]) -> None:
    try:
        patch = convert(value, AgentPatch, field="agent")
    except InvalidArgument as exc:
        assert exc.message.startswith("agent")
        return
    assert isinstance(patch, AgentPatch)


def _mcp_update(**kw: Any) -> AgentPatch:
    """The MCP update_agent face: every parameter present, "" and 0 meaning unchanged."""
    face: dict[str, Any] = {f: "" for f in FIELDS} | {"timeout": 0, "max_budget_usd": 0}
    return patch_from_args(face | kw, zero="unchanged")


def _cli_update(**kw: Any) -> AgentPatch:
    """The CLI update face: options left out are None, every value is text."""
    face: dict[str, Any] = dict.fromkeys(FIELDS)
    return patch_from_args(face | {k: str(v) for k, v in kw.items()}, zero="default")


@pytest.mark.parametrize(
    "change",
    [
        {"timeout": 600},
        {"timeout": "none", "max_budget_usd": "NONE"},
        {"max_budget_usd": 2.5},
        {"model": "opus", "description": "money"},
        {"model": "none", "permission_mode": "plan"},
        {"permission_mode": "none"},
        {"allowed_tools": "Read, Bash(git log:*, git diff:*)", "disallowed_tools": "[]"},
        {"allowed_tools": "none", "capabilities": "a,b", "risky_capabilities": "none"},
        {"instructions": "be brief", "description": "none"},
    ],
)
def test_cli_and_mcp_build_the_same_patch(change: dict[str, Any]) -> None:
    assert _mcp_update(**change) == _cli_update(**change)


def test_empty_leaves_fields_unchanged_on_both_faces() -> None:
    assert _mcp_update() == AgentPatch() == _cli_update()
    assert _mcp_update(model="  ", allowed_tools=" ").given() == {}


def test_zero_is_unchanged_over_mcp_and_the_default_on_the_cli() -> None:
    assert _mcp_update(timeout=0, max_budget_usd=0) == AgentPatch()
    cleared = AgentPatch(timeout=None, max_budget_usd=None)
    assert _cli_update(timeout=0, max_budget_usd="0") == cleared


def test_a_clear_puts_back_the_default_and_unset_keeps_the_value() -> None:
    agent = AgentConfig(
        directory="/p", timeout=42, model="opus", capabilities=("x",), allowed_tools=("Read",)
    )
    patch = _cli_update(timeout="none", model="none", capabilities="none", description="d")
    after = patch.apply(agent)
    assert (after.timeout, after.model, after.capabilities) == (300, None, ())
    assert after.allowed_tools == ("Read",) and after.description == "d"
    assert patch.max_budget_usd is UNSET


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 1.5}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": 10**400}, "timeout"),
        ({"max_budget_usd": float("nan")}, "max_budget_usd"),
        ({"max_budget_usd": "inf"}, "max_budget_usd"),
        ({"max_budget_usd": "lots"}, "max_budget_usd"),
        ({"permission_mode": "yolo"}, "permission_mode"),
        ({"allowed_tools": ",,"}, "allowed_tools"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_bad_values_are_rejected_naming_the_field_with_the_face_hint(
    args: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        patch_from_args(args, zero="default", hint=lambda f: f"hint for {f}")
    assert field in info.value.message.split(":")[0]
    if field != "allowed_tools":  # its error comes from the list parser, with its own hint
        assert info.value.hint == f"hint for {field}"
