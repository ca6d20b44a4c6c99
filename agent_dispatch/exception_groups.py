"""Exception groups, taken apart at the edges.

A trio nursery wraps whatever its tasks raise in a `BaseExceptionGroup`, nested
once per nursery. Inside the layers nothing unwraps them; each edge (the CLI's
exit status, a tool's error envelope, a process run's cancellation, the demo)
decides once, with `split`, what the group holds, as hypercorn's trio worker
does (`error.split((ShutdownError, KeyboardInterrupt))`). These helpers also
take a bare exception, so an edge need not ask which one it caught.
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar, cast

__all__ = ["first", "leaves", "sole", "split"]

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
