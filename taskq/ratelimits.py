"""Rate limits per task, or per key, for all workers together: ``rate_limit="100/m"``.

A limit of N runs per period admits one start every ``period / N`` (GCRA with no burst:
the rate never goes over, however many workers run the task). The check is in Redis, in
one script per bucket (``rate.lua``) that gives each delivery the next free slot: a
delivery whose slot is now starts; one whose slot is later is not failed and holds no
slot: it goes back to the delay queue (``defer.lua``), due at its slot, carrying it (a
``rs`` field in its message's meta), and when the mover brings it back it starts without
another check. A backlog therefore drains from the stream into the delay queue at once
and comes back at the limited rate: no worker busy-polls a limit.

``rate_limit_key`` (a callable given the run's arguments, like the task) splits the limit
into one bucket per key (per customer, say); by default one bucket per task. The bucket
lives on the queue's hash tag (of a partitioned queue, on the key's home partition), so
the limit holds across every worker and partition. Runs of tasks without a limit pay one
attribute check per delivery.

Flows take no rate limit (a resumed flow is the same attempt), and a retry with no delay,
which runs on in place, is not checked again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq.errors import ConfigurationError
from taskq.limitkeys import limit_key

if TYPE_CHECKING:
    from taskq.delivery import Delivery


_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNIT = dict(zip("smhd", (1, 60, 3600, 86400), strict=True))  # seconds per unit


@dataclass(frozen=True)
class RateLimit:
    """``count`` runs per ``period`` seconds, per bucket."""

    count: int
    period: float
    key_fn: Callable[..., Any] | None = None

    @property
    def interval_ms(self) -> int:
        """Milliseconds between two starts of one bucket."""
        return max(1, round(self.period * 1000 / self.count))

    def bucket(self, d: Delivery) -> str:
        """The bucket of a delivery (see :func:`taskq.limitkeys.limit_key`)."""
        return limit_key(d, self.key_fn, "rate_limit_key")


def build_rate(value: Any, key_fn: Any = None) -> RateLimit | None:
    """Validate ``rate_limit`` ("N/s", "N/m", "N/h", "N/d", or "N/10s") and
    ``rate_limit_key``.

    Raises:
        ConfigurationError: Anything else.
    """
    if value is None:
        if key_fn is not None:
            raise ConfigurationError("rate_limit_key needs a rate_limit")
        return None
    m = _RATE_RE.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) < 1:
        raise ConfigurationError(
            f'rate_limit must look like "100/m" (N per s, m, h, d, or "5/10s"), got {value!r}'
        )
    if key_fn is not None and not callable(key_fn):
        raise ConfigurationError(f"rate_limit_key must be callable, got {key_fn!r}")
    period = int(m.group(2) or 1) * _UNIT[m.group(3)]
    return RateLimit(int(m.group(1)), float(period), key_fn)
