"""Exception groups taken apart at the edges: the helper, then each edge that uses it.

Nurseries wrap what their tasks raise, once per nursery; the edges (CLI exit
status, a tool's envelope, a process run's cancellation, the demo) must see
through any nesting and decide the same way they would for a bare exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_dispatch import exception_groups
from agent_dispatch.cli import app as cli_app
from agent_dispatch.cli.demo import _demo_error
from agent_dispatch.errors import DispatchError
from agent_dispatch.runtime.process import _raise_bare_cancelled
from agent_dispatch.server.toolkit import tool_errors


def group(*exceptions: BaseException) -> BaseExceptionGroup[BaseException]:
    return BaseExceptionGroup("nursery", list(exceptions))


async def a_cancelled() -> trio.Cancelled:
    """A real trio.Cancelled (it has no public constructor)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            return exc
    raise AssertionError("not cancelled")


# -- the helper ----------------------------------------------------------------------------


def test_a_bare_exception_is_one_side_of_the_split_whole() -> None:
    error = DispatchError("boom")
    assert exception_groups.split(error, DispatchError) == (error, None)
    assert exception_groups.split(error, KeyboardInterrupt) == (None, error)
    assert exception_groups.leaves(error) == [error]
    assert exception_groups.sole(error) is error
    assert exception_groups.first(error, DispatchError) is error
    assert exception_groups.first(error, OSError) is None


async def test_mixed_nested_groups_split_by_kind_keeping_order() -> None:
    cancelled, interrupt = await a_cancelled(), KeyboardInterrupt()
    error, other = DispatchError("first"), DispatchError("second")
    tree = group(cancelled, group(error, group(interrupt)), other)
    assert exception_groups.leaves(tree) == [cancelled, error, interrupt, other]
    matched, rest = exception_groups.split(tree, DispatchError)
    assert matched is not None and rest is not None
    assert exception_groups.leaves(matched) == [error, other]
    assert exception_groups.leaves(rest) == [cancelled, interrupt]
    assert exception_groups.first(tree, DispatchError) is error
    assert exception_groups.first(tree, trio.Cancelled) is cancelled
    assert exception_groups.sole(tree) is None
    _, not_ours = exception_groups.split(tree, (trio.Cancelled, KeyboardInterrupt))
    assert not_ours is not None and exception_groups.leaves(not_ours) == [error, other]


def test_a_single_leaf_is_found_however_deep() -> None:
    leaf = OSError("disk")
    assert exception_groups.sole(group(group(group(leaf)))) is leaf
    assert exception_groups.split(group(group(leaf)), OSError)[1] is None


KINDS = [DispatchError, OSError, ValueError, KeyboardInterrupt, SystemExit]
leaf_exceptions = st.sampled_from(KINDS).map(lambda kind: kind("x"))
trees = st.recursive(
    leaf_exceptions, lambda inner: st.lists(inner, min_size=1, max_size=4).map(lambda x: group(*x))
)
kinds = st.sampled_from([*KINDS, Exception, BaseException, (OSError, KeyboardInterrupt)])


@settings(max_examples=200, deadline=None)
@given(trees, kinds)
def test_split_parts_hold_exactly_the_leaves_of_each_kind(
    tree: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> None:
    found = exception_groups.leaves(tree)
    matched, rest = exception_groups.split(tree, kind)
    assert (exception_groups.leaves(matched) if matched else []) == [
        leaf for leaf in found if isinstance(leaf, kind)
    ]
    assert (exception_groups.leaves(rest) if rest else []) == [
        leaf for leaf in found if not isinstance(leaf, kind)
    ]
    assert exception_groups.sole(tree) is (found[0] if len(found) == 1 else None)


# -- the CLI: exit status --------------------------------------------------------------------


def cli_raising(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: BaseException
) -> tuple[int, str]:
    def command(tokens: list[str]) -> None:
        raise exc

    monkeypatch.setattr(cli_app, "app", command)
    monkeypatch.delenv("AGENT_DISPATCH_DEBUG", raising=False)
    rc = cli_app.run([])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "rc", "err"),
    [
        (KeyboardInterrupt, 130, "interrupted\n"),
        (lambda: group(group(KeyboardInterrupt()), KeyboardInterrupt()), 130, "interrupted\n"),
        (
            lambda: group(KeyboardInterrupt(), group(DispatchError("no agent", "add one"))),
            1,
            "error: no agent\nhint: add one\n",
        ),
        (
            lambda: group(ValueError("v"), DispatchError("first"), DispatchError("second")),
            1,
            "error: first\n",
        ),
        (
            lambda: group(group(OSError(28, "No space left on device"))),
            1,
            "error: [Errno 28] No space left on device\n",
        ),
        (
            lambda: group(ValueError("odd"), TypeError("t")),
            1,
            "error: unexpected ValueError: odd\n",
        ),
    ],
    ids=["ctrl-c", "ctrl-c-in-tasks", "interrupt-and-error", "first-error", "lone-oserror", "bug"],
)
def test_the_cli_maps_what_a_command_raised_to_a_status_and_an_error_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[], BaseException],
    rc: int,
    err: str,
) -> None:
    got_rc, got_err = cli_raising(monkeypatch, capsys, make())
    assert got_rc == rc
    assert got_err.startswith(err), got_err


async def test_the_cli_reraises_what_is_not_its_to_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = group(KeyboardInterrupt(), await a_cancelled())
    with pytest.raises(BaseExceptionGroup) as raised:
        cli_raising(monkeypatch, capsys, mixed)
    assert raised.value is mixed


# -- a tool: the error envelope --------------------------------------------------------------


async def call_tool_raising(exc: BaseException) -> Any:
    @tool_errors
    async def dispatch() -> dict[str, Any]:
        raise exc

    return await dispatch()


async def test_a_tool_reports_a_lone_user_error_however_deep() -> None:
    result: Any = await call_tool_raising(group(group(DispatchError("no agent", "add one"))))
    assert result.structured_content == {"error": "no agent", "hint": "add one"}


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (group(group(ValueError("odd"))), "dispatch: internal error: ValueError: odd"),
        (
            group(DispatchError("a"), DispatchError("b")),
            "dispatch: internal error: ExceptionGroup: nursery (2 sub-exceptions)",
        ),
    ],
    ids=["lone-bug", "several"],
)
async def test_a_tool_reports_bugs_of_ours_as_internal_errors(
    exc: BaseException, message: str
) -> None:
    result: Any = await call_tool_raising(exc)
    assert result.structured_content["error"] == message


async def test_a_tool_lets_cancellation_through() -> None:
    mixed = group(await a_cancelled(), ValueError("odd"))
    with pytest.raises(BaseExceptionGroup) as raised:
        await call_tool_raising(mixed)
    assert raised.value is mixed


# -- a process run: cancellation ------------------------------------------------------------


async def test_a_process_run_cancelled_in_its_nursery_raises_a_bare_cancelled() -> None:
    first, second = await a_cancelled(), await a_cancelled()
    with pytest.raises(trio.Cancelled) as raised:
        _raise_bare_cancelled(group(group(first), second))
    assert raised.value is first
    _raise_bare_cancelled(group(first, ValueError("odd")))  # not only Cancelled: left to caller


# -- the demo ------------------------------------------------------------------------------


def test_the_demo_reports_what_its_server_or_client_raised() -> None:
    nested = ExceptionGroup(
        "nursery", [ExceptionGroup("inner", [DispatchError("no agent", "add one")])]
    )
    error = _demo_error("", nested)
    assert (error.message, error.hint) == ("demo: no agent", "add one")
    bug = _demo_error("", ExceptionGroup("nursery", [ValueError("odd")]))
    assert bug.message == "demo: the MCP server or client failed: ValueError: odd"
