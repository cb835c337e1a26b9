"""Capped, jittered exponential backoff for reconnecting (tenacity's wait strategy).

Workers never give up on Redis: each failed attempt waits a random time up to
``base * 2**n``, capped at ``cap`` seconds (default 1 s, so a worker resumes
within about a second of Redis answering again). The delay-queue mover passes its
own, longer cap (:mod:`taskq.scheduler`).
"""

from __future__ import annotations

from tenacity import RetryCallState, wait_random_exponential


class Backoff:
    """Successive delays for one outage; :meth:`reset` once a call succeeds.

    Args:
        base: The first delay's upper bound, in seconds; each failure doubles it.
        cap: The largest upper bound, in seconds.
    """

    def __init__(self, base: float = 0.05, cap: float = 1.0) -> None:
        self._wait = wait_random_exponential(multiplier=base, max=cap)
        self._state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        self.failures += 1
        self._state.attempt_number = self.failures
        return float(self._wait(self._state))

    def reset(self) -> None:
        """Start over from ``base`` (the call succeeded)."""
        self.failures = 0
