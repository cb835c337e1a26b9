"""The broker's result reads: wait for one run's outcome, peek at many, wait for any."""

from __future__ import annotations

from collections.abc import Sequence

from taskq.broker_core import BrokerCore, _now, _s


class Results(BrokerCore):
    """Blocking and non-blocking reads of runs' result lists (never polled on a timer)."""

    def wait_result(self, queue: str, run_id: str, timeout: float | None) -> bytes | None:
        """Block until the run's outcome exists (BLMOVE of the one-element list onto itself).

        Waits in slices no longer than ``block_seconds`` so a socket timeout never
        cuts a healthy wait; nothing is polled on a timer.

        Returns:
            The outcome payload, or None when ``timeout`` ran out.
        """
        key = self.keys.result(queue, run_id)
        block = self.settings.block_seconds
        deadline = None if timeout is None else _now() + timeout
        while True:
            left = block if deadline is None else min(block, deadline - _now())
            if left <= 0:
                value: bytes | None = self.execute("LINDEX", key, 0)
                return value
            value = self.execute("BLMOVE", key, key, "LEFT", "LEFT", f"{max(left, 0.001):.3f}")
            if value is not None:
                return value

    def peek_results(self, queue: str, run_ids: Sequence[str]) -> list[bytes | None]:
        """Outcomes of many runs in one round trip (None for runs not finished)."""
        if not run_ids:
            return []
        replies = self.send([("LINDEX", self.keys.result(queue, rid), 0) for rid in run_ids])
        return [None if isinstance(r, Exception) else r for r in replies]

    def wait_any(self, queue: str, run_ids: Sequence[str], timeout: float) -> str | None:
        """Block until one of the runs has an outcome; return its id (None on timeout).

        BLPOP takes the element, so it is pushed straight back: other waiters on
        the same run are woken by that push.
        """
        if not run_ids:
            return None
        keys = {self.keys.result(queue, rid): rid for rid in run_ids}
        got = self.execute("BLPOP", *keys, f"{max(timeout, 0.001):.3f}")
        if got is None:
            return None
        key, value = got
        self.execute("LPUSH", key, value)
        return keys[_s(key)]
