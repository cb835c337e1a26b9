"""Durations given by users: seconds as a number or a ``timedelta``, checked in one place.

Each option keeps the error wording it has always had (tests and users read them), so the
wordings live here as :class:`Rule` values beside the one check that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskq.errors import ConfigurationError

__all__ = ["CACHE_EXPIRATION", "DELAY", "NON_NEGATIVE", "POSITIVE", "Rule", "seconds"]


@dataclass(frozen=True)
class Rule:
    """What a duration option accepts and how it says it was given something else.

    Attributes:
        zero_ok: Whether 0 seconds is allowed (else the duration must be > 0).
        wrong_type: Message when the value is neither a number nor a timedelta; formatted
            with ``name`` and ``value`` (the value as given).
        out_of_range: Message when the number is out of range; formatted with ``name``
            and ``value`` (the number of seconds, a timedelta already converted).
    """

    zero_ok: bool
    wrong_type: str
    out_of_range: str


POSITIVE = Rule(
    zero_ok=False,
    wrong_type="{name} must be a number of seconds or a timedelta, got {value!r}",
    out_of_range="{name} must be > 0 seconds, got {value!r}",
)
"""``result_ttl``, ``timeout_seconds`` and the other task options that must be > 0."""

NON_NEGATIVE = Rule(
    zero_ok=True,
    wrong_type="{name} must be seconds (a number or timedelta), got {value!r}",
    out_of_range="{name} must not be negative, got {value!r}",
)
"""The retry options: delays, jitter, deadline, ``exponential_backoff``'s factor."""

DELAY = Rule(
    zero_ok=True,
    wrong_type="delay must be seconds >= 0 or a timedelta, got {value!r}",
    out_of_range="delay must be seconds >= 0 or a timedelta, got {value!r}",
)
"""A submission delay (also ``inline_wait_seconds``, which has always used this wording)."""

CACHE_EXPIRATION = Rule(
    zero_ok=False,
    wrong_type="{name} must be > 0 seconds or a timedelta, got {value!r}",
    out_of_range="{name} must be > 0 seconds or a timedelta, got {value!r}",
)
"""``cache_expiration``."""


def seconds(name: str, value: Any, rule: Rule) -> float:
    """``value`` as seconds, checked against ``rule``.

    NaN passes, as it always has: every check here is a comparison, and NaN compares false.

    Args:
        name: The option's name, for the message.
        value: A number of seconds (``bool`` is no number here) or a ``timedelta``.
        rule: What is accepted, and the messages.

    Returns:
        The duration in seconds, as a float.

    Raises:
        ConfigurationError: ``value`` is no number or timedelta, or out of range.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(rule.wrong_type.format(name=name, value=value))
    if value < 0 or (value == 0 and not rule.zero_ok):
        raise ConfigurationError(rule.out_of_range.format(name=name, value=value))
    return float(value)
