"""DispatchResult.raise_for_error: a failed run as a typed exception, on request."""

from __future__ import annotations

import pickle
from typing import Any, get_args

import pytest

from agent_dispatch.claude.classify import classify
from agent_dispatch.errors import DispatchError
from agent_dispatch.results import (
    DispatchFailed,
    DispatchResult,
    DispatchTimeout,
    ErrorType,
    PermissionDenied,
)


def _failed(error_type: ErrorType | None, **extra: Any) -> DispatchResult:
    error = f"it went wrong: {error_type}"
    hint = "try again"
    return DispatchResult(
        agent="backend", success=False, error=error, error_type=error_type, hint=hint, **extra
    )


def _raised(result: DispatchResult) -> DispatchFailed:
    with pytest.raises(DispatchFailed) as caught:
        result.raise_for_error()
    return caught.value


@pytest.mark.parametrize("error_type", get_args(ErrorType))
def test_every_error_type_raises_its_own_class(error_type: ErrorType) -> None:
    exc = _raised(_failed(error_type))
    assert type(exc) is not DispatchFailed, f"no exception class for {error_type!r}"
    assert type(exc).error_type == error_type


def test_no_two_error_types_share_a_class() -> None:
    classes = {type(_raised(_failed(t))) for t in get_args(ErrorType)}
    assert len(classes) == len(get_args(ErrorType))


def test_a_success_returns_none() -> None:
    result = DispatchResult(agent="backend", success=True, result="42")
    assert result.raise_for_error() is None  # type: ignore[func-returns-value]


def test_the_exception_carries_the_very_result_its_error_and_hint() -> None:
    result = _failed("timeout", session_id="abc", cost_usd=0.5)
    exc = _raised(result)
    assert exc.result is result
    assert exc.message == str(exc) == "it went wrong: timeout"
    assert exc.hint == "try again"


def test_a_failure_without_an_error_type_raises_the_base_class() -> None:
    exc = _raised(_failed(None))
    assert type(exc) is DispatchFailed
    assert type(exc).error_type is None


def test_a_failure_without_error_text_or_hint_still_says_which_agent_failed() -> None:
    exc = _raised(DispatchResult(agent="backend", success=False, error_type="cli_error"))
    assert str(exc) == "the dispatch to agent 'backend' failed"
    assert exc.hint == ""


def test_except_dispatch_error_catches_a_failed_run_too() -> None:
    with pytest.raises(DispatchError):
        _failed("budget").raise_for_error()


@pytest.mark.parametrize("error_type", [*get_args(ErrorType), None])
def test_a_failure_pickles_with_its_class_message_hint_and_result(
    error_type: ErrorType | None,
) -> None:
    exc = _raised(_failed(error_type, denied_tools=["Bash"]))
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    assert type(back) is type(exc)
    assert (back.message, back.hint, str(back)) == (exc.message, exc.hint, str(exc))
    assert back.result == exc.result


def test_under_prefixes_the_message_and_keeps_the_result() -> None:
    exc = _raised(_failed("permission"))
    inner = exc.under("dispatches[2]")
    assert type(inner) is PermissionDenied
    assert inner.message == "dispatches[2].it went wrong: permission"
    assert inner.result is exc.result


def test_a_timeout_as_the_classifier_reports_it_raises_dispatch_timeout() -> None:
    result = classify(
        agent="backend",
        returncode=-15,
        stdout=b"",
        stderr=b"",
        timed_out=True,
        session_id="abc",
        timeout_seconds=30.0,
    )
    with pytest.raises(DispatchTimeout) as caught:
        result.raise_for_error()
    assert caught.value.result is result
    assert str(caught.value) == "timed out after 30s"
