"""Exception groups, taken apart at the edges.

A trio nursery wraps whatever its tasks raise in a `BaseExceptionGroup`, nested
once per nursery. Inside the layers nothing unwraps them; each edge (the CLI's
exit status, a tool's error envelope, a process run's cancellation, the demo)
decides once, with `split`, what the group holds, as hypercorn's trio worker
does (`error.split((ShutdownError, KeyboardInterrupt))`). These helpers also
take a bare exception, so an edge need not ask which one it caught.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeAlias, TypeVar, cast

import trio

__all__ = ["collapsed", "first", "leaves", "raise_alone", "sole", "split"]

_Kind: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]
_E = TypeVar("_E", bound=BaseException)


def split(exc: BaseException, kind: _Kind) -> tuple[BaseException | None, BaseException | None]:
    """(what matches `kind`, the rest): `BaseExceptionGroup.split`, nesting kept,
    and the same for a bare exception (which is one side or the other whole)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(kind)
    return (exc, None) if isinstance(exc, kind) else (None, exc)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions that are not groups, depth first in raise order; `[exc]` for a bare one."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def sole(exc: BaseException) -> BaseException | None:
    """The one exception `exc` holds, however deeply grouped; None when it holds several."""
    found = leaves(exc)
    return found[0] if len(found) == 1 else None


def first(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of `kind` that `exc` holds (depth first), or None."""
    matched, _ = split(exc, kind)
    return None if matched is None else cast(_E, leaves(matched)[0])


@contextmanager
def collapsed() -> Iterator[None]:
    """The library edge of one of our nurseries: what escapes it comes out as itself.

    A nursery groups even a lone exception; around `async with trio.open_nursery()`
    this unwraps one level, the one that nursery added, by `raise_alone`. So a
    caller's own `ValueError` raised in `Dispatcher.open`'s body, or the `Cancelled`
    of a scope around `dispatch`, comes out as it was raised; only several
    concurrent failures stay a group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise_alone(group)


def raise_alone(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one exception `group` holds at its top level, ignoring `Cancelled`
    beside another exception (trio's rule for a nursery inside a library call, as in
    `trio.as_safe_channel`): exactly one other exception -> it; only `Cancelled` -> the
    first of them; several others -> the group itself. Nested groups stay whole: they
    are someone else's. The re-raised exception keeps its own context and traceback."""
    others = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    if len(others) > 1:
        raise group
    alone = others[0] if others else group.exceptions[0]
    context = alone.__context__
    try:
        raise alone
    finally:
        alone.__context__ = context  # not the group: it would be shown as "during handling"
        del alone, group
