"""How ``Task.map`` spreads its arguments over runs, as Prefect's ``map`` does.

Every argument, positional or keyword, that is iterable (but not a string or bytes)
is mapped: run *i* gets its *i*-th element, and all mapped arguments must have the
same length. Anything else is passed whole to every run, and so is an iterable
wrapped in :class:`unmapped` (``task.map(items, unmapped(lookup))``). As in Prefect,
a dict is iterable (over its keys): wrap a dict meant for every run in ``unmapped``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, Generic, TypeVar

from taskq.errors import ConfigurationError

T = TypeVar("T")


class unmapped(Generic[T]):
    """Pass ``value`` whole to every run of a ``map``, iterable or not."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


def _same(value: Any) -> Any:
    return value


def is_mapped(value: Any) -> bool:
    """Whether ``map`` spreads ``value`` over its runs (Prefect's ``isiterable``)."""
    if isinstance(value, unmapped | str | bytes | bytearray | memoryview):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


def static(value: Any) -> Any:
    """The value passed whole to every run (``unmapped`` unwrapped)."""
    return value.value if isinstance(value, unmapped) else value


def spread(
    args: Sequence[Any], kwargs: dict[str, Any], resolve: Callable[[Any], Any] = _same
) -> tuple[list[list[Any]], dict[str, Any] | list[dict[str, Any]]]:
    """Each run's positional arguments, and its keyword arguments: one dict shared by
    every run when no keyword argument is mapped, else one dict per run. ``resolve``
    is applied to each mapped argument's list and to each value passed whole (once).

    Raises:
        ConfigurationError: No argument is mapped, or mapped ones differ in length.
    """
    columns = {i: resolve(list(a)) for i, a in enumerate(args) if is_mapped(a)}
    keyed = {k: resolve(list(v)) for k, v in kwargs.items() if is_mapped(v)}
    lengths = {len(c) for c in columns.values()} | {len(c) for c in keyed.values()}
    if not lengths:
        raise ConfigurationError(
            "map needs at least one iterable argument (a list, tuple, range, generator, ...); "
            "wrap one meant for every run in taskq.unmapped"
        )
    if len(lengths) > 1:
        raise ConfigurationError(f"map iterables have different lengths: {sorted(lengths)}")
    (n,) = lengths
    parts = [
        columns[j] if j in columns else repeat(resolve(static(a)), n) for j, a in enumerate(args)
    ]
    rows = list(map(list, zip(*parts, strict=True))) if parts else [[] for _ in range(n)]
    shared = {k: resolve(static(v)) for k, v in kwargs.items() if k not in keyed}
    if not keyed:
        return rows, shared
    return rows, [shared | {k: c[i] for k, c in keyed.items()} for i in range(n)]
