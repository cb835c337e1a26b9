"""Concurrency limits per key: ``concurrency_limit=2`` with ``concurrency_key=`` (a
callable given the run's arguments; default: one key per task): at most N runs of a key
execute at once, across every worker.

A key's slots are a sorted set in Redis (``<queue tag>:conc:<bucket>``): one member per
running run, scored by when its lease ends (server ms). A worker takes a slot for a
delivery before it starts it (``conc.lua``, which first drops expired slots); it renews
the slot with the delivery's lease, every ``lease_seconds / 3``; and it gives it back
when the body has returned (or the delivery was not started after all). A slot held by a
worker that dies (SIGKILL) therefore comes back when its lease ends, never later, and is
never lost.

A delivery whose key has no free slot is not failed and holds no worker slot: it goes back
to the delay queue (``defer.lua``) for a short wait that doubles each time it finds the
key full (from 50 ms up to ``lease_seconds``), so runs of other keys are never held up
behind it. Runs of tasks without a limit pay one attribute check per delivery. Flows take
no concurrency limit (limit their tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq.errors import ConfigurationError
from taskq.limitkeys import limit_key

if TYPE_CHECKING:
    from taskq.delivery import Delivery


#: The first wait of a delivery whose key is full (ms); it doubles on each retry.
FIRST_WAIT_MS = 50


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``limit`` runs per key at once."""

    limit: int
    key_fn: Callable[..., Any] | None = None

    def bucket(self, d: Delivery) -> str:
        """The bucket of a delivery (see :func:`taskq.limitkeys.limit_key`)."""
        return limit_key(d, self.key_fn, "concurrency_key")


def build_concurrency(limit: Any, key_fn: Any = None) -> ConcurrencyLimit | None:
    """Validate ``concurrency_limit`` and ``concurrency_key``.

    Raises:
        ConfigurationError: A limit that is not a whole number >= 1, a key that is not
            callable, or a key without a limit.
    """
    if limit is None:
        if key_fn is not None:
            raise ConfigurationError("concurrency_key needs a concurrency_limit")
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"concurrency_limit must be a whole number >= 1, got {limit!r}")
    if key_fn is not None and not callable(key_fn):
        raise ConfigurationError(f"concurrency_key must be callable, got {key_fn!r}")
    return ConcurrencyLimit(limit, key_fn)


def wait_ms(tries: int, lease_seconds: float) -> int:
    """How long a delivery that found its key full ``tries`` times waits next."""
    return int(min(FIRST_WAIT_MS * 2 ** min(tries, 16), lease_seconds * 1000))
