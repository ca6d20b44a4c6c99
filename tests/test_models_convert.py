"""models.convert: the one way an argument becomes data, and its errors name the field."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch.errors import InvalidArgument
from agent_dispatch.models import (
    JOB_STATUSES,
    PERMISSION_MODES,
    RESPONSE_FORMATS,
    TERMINAL_STATUSES,
    AgentConfig,
    Config,
    DispatchRequest,
    JobStatus,
    NonNegFloat,
    ParallelItem,
    PositiveFloat,
    clamped,
    convert,
    dispatch_request,
    revalidated,
)
from agent_dispatch.service.resolve import validate_request

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _request_like() -> st.SearchStrategy[dict[str, Any]]:
    """Objects with DispatchRequest's keys holding random JSON, some well formed."""
    keys = st.sampled_from(DispatchRequest.__struct_fields__)
    return st.dictionaries(keys, _json | st.text(max_size=8), max_size=6).map(
        lambda d: {"agent": "a", "task": "t", **d}
    )


def _names_a_field(message: str, prefix: str, fields: tuple[str, ...]) -> bool:
    if not message.startswith(prefix):
        return False
    rest = message[len(prefix) :]
    return rest.startswith(":") or any(rest.startswith(f".{f}") for f in fields)


@settings(max_examples=200, deadline=None)
@given(_json | _request_like())
def test_random_json_is_a_request_or_an_error_naming_the_field(value: Any) -> None:
    try:
        req = convert(value, DispatchRequest, field="request")
    except InvalidArgument as exc:
        assert _names_a_field(exc.message, "request", DispatchRequest.__struct_fields__)
        return
    assert isinstance(req, DispatchRequest)
    assert req.response_format in RESPONSE_FORMATS
    assert req.timeout_seconds is None or (
        math.isfinite(req.timeout_seconds) and req.timeout_seconds >= 0
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(_json | _request_like(), max_size=3))
def test_errors_in_a_list_name_the_item(value: list[Any]) -> None:
    try:
        convert(value, list[DispatchRequest], field="dispatches")
    except InvalidArgument as exc:
        assert exc.message.startswith("dispatches")
        assert exc.message.startswith(("dispatches:", "dispatches["))


@settings(max_examples=200, deadline=None)
@given(_scalars, st.floats(-5, 5), st.floats(5, 100))
def test_clamped_is_a_number_in_range_or_an_error_naming_the_field(
    value: Any, low: float, high: float
) -> None:
    try:
        out = clamped(value, "limit", low, high)
    except InvalidArgument as exc:
        assert exc.message.startswith("limit: ")
        return
    assert low <= out <= high


@pytest.mark.parametrize(
    ("value", "type_", "words"),
    [
        (math.nan, NonNegFloat, "x: expected a finite number, got nan"),
        (math.inf, PositiveFloat, "x: expected a finite number, got inf"),
        (-1, NonNegFloat, "x: must not be negative, got -1"),
        (0, PositiveFloat, "x: must be > 0, got 0"),
        (True, NonNegFloat, "x: expected float, got bool"),
        ("yes", JobStatus, "x: invalid value 'yes' (expected one of pending, running"),
    ],
)
def test_errors_say_what_is_wrong(value: Any, type_: Any, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert(value, type_, field="x")
    assert info.value.message.startswith(words)


def test_a_non_finite_number_deep_in_a_request_is_named_by_its_path() -> None:
    with pytest.raises(InvalidArgument) as info:
        convert([{"agent": "a", "task": "t", "timeout_seconds": math.inf}], list[DispatchRequest])
    assert info.value.message == "[0].timeout_seconds: expected a finite number, got inf"


def test_revalidated_applies_the_constraints_a_constructor_skips() -> None:
    built = DispatchRequest(agent="a", task="t", timeout_seconds=-1)  # no Meta check here
    with pytest.raises(InvalidArgument, match="timeout_seconds"):
        revalidated(built)
    good = DispatchRequest(agent="a", task="t", timeout_seconds=30)
    assert revalidated(good) == good


def test_each_set_of_names_is_one_literal() -> None:
    assert TERMINAL_STATUSES < set(JOB_STATUSES)
    assert "bypassPermissions" in PERMISSION_MODES
    assert RESPONSE_FORMATS == ("", "json")
    schema = msgspec.json.schema(DispatchRequest)
    props = schema["$defs"]["DispatchRequest"]["properties"]
    assert set(props["response_format"]["enum"]) == set(RESPONSE_FORMATS)


# -- dispatch_request: one way arguments become a DispatchRequest ---------------------


def test_a_tools_parameters_become_a_request_and_empty_means_none() -> None:
    face = {"agent": "a", "task": "t", "ctx": object(), "return_ref": True, "group": ""}
    req = dispatch_request({**face, "session_id": "", "timeout_seconds": 0})
    assert req == DispatchRequest(agent="a", task="t", timeout_seconds=0)


@settings(max_examples=200, deadline=None)
@given(_json | _request_like())
def test_random_json_is_a_parallel_item_or_an_error_naming_the_item(value: Any) -> None:
    try:
        item = dispatch_request(value, "dispatches[3]", ParallelItem)
    except InvalidArgument as exc:
        assert exc.message.startswith(("dispatches[3]:", "dispatches[3]."))
        return
    assert isinstance(item.request(), DispatchRequest)
    assert type(item.request()) is DispatchRequest


def test_a_parallel_item_refuses_unknown_fields() -> None:
    with pytest.raises(InvalidArgument, match=r'^dispatches\[0\]: unknown field "colour"'):
        dispatch_request(
            {"agent": "a", "task": "t", "colour": "red"}, "dispatches[0]", ParallelItem
        )


@pytest.mark.parametrize(
    ("built", "field"),
    [
        (DispatchRequest(agent="a", task="t", response_format="xml"), "response_format"),  # type: ignore[arg-type]
        (DispatchRequest(agent="a", task="t", timeout_seconds=math.nan), "timeout_seconds"),
        (DispatchRequest(agent="a", task=3), "task"),  # type: ignore[arg-type]
    ],
)
def test_a_library_request_gets_the_checks_a_face_gets(built: DispatchRequest, field: str) -> None:
    cfg = Config(agents={"a": AgentConfig(directory="/tmp")})
    with pytest.raises(InvalidArgument) as info:
        validate_request(cfg, built, "dispatches[1]")
    assert info.value.message.startswith(f"dispatches[1].{field}: ")
