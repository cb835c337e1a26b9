"""How ``map`` spreads its arguments over runs (Prefect's rules)."""

from __future__ import annotations

import pytest

from taskq import unmapped
from taskq.errors import ConfigurationError
from taskq.mapping import is_mapped, spread


def test_iterables_are_mapped_and_everything_else_goes_whole() -> None:
    rows, kws = spread([[1, 2, 3], "sep", unmapped([9, 9])], {"k": 5, "tag": "x"})
    assert rows == [[1, "sep", [9, 9]], [2, "sep", [9, 9]], [3, "sep", [9, 9]]]
    assert kws == {"k": 5, "tag": "x"}  # none mapped: one dict shared by every run


def test_iterable_keyword_arguments_are_mapped_too() -> None:
    rows, kws = spread([range(2)], {"y": (10, 20), "fixed": unmapped({"a": 1}), "z": 0})
    assert rows == [[0], [1]]
    assert kws == [{"fixed": {"a": 1}, "z": 0, "y": 10}, {"fixed": {"a": 1}, "z": 0, "y": 20}]
    rows, kws = spread([], {"x": [1, 2]})  # keyword arguments alone are enough
    assert rows == [[], []] and kws == [{"x": 1}, {"x": 2}]


def test_strings_and_bytes_are_not_mapped_and_dicts_are_as_in_prefect() -> None:
    assert not is_mapped("abc") and not is_mapped(b"abc") and not is_mapped(3)
    assert is_mapped({"a": 1}) and is_mapped(x for x in ()) and is_mapped({1, 2})
    assert not is_mapped(unmapped([1]))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([], {}, "at least one iterable"),
        (["abc", 1], {"k": unmapped([1])}, "at least one iterable"),
        ([[1, 2]], {"y": [1, 2, 3]}, r"different lengths: \[2, 3\]"),
        ([[1], [1, 2]], {}, "different lengths"),
    ],
)
def test_refused_with_the_reason(
    args: list[object], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        spread(args, kwargs)
