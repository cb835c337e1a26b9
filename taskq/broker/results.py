"""The broker's result reads: wait for one run's outcome, peek at many, wait for any."""

from __future__ import annotations

from collections.abc import Sequence

from taskq.broker.connection import BrokerCore, _fields, _now, _s
from taskq.errors import RedisFullError

#: States an event names once the run's result list has been written (same script).
_FINAL = frozenset({"Completed", "Cached", "Failed", "Cancelled"})


class Results(BrokerCore):
    """Blocking and non-blocking reads of runs' result lists (never polled on a timer)."""

    def wait_result(self, queue: str, run_id: str, timeout: float | None) -> bytes | None:
        """Block until the run's outcome exists (BLMOVE of the one-element list onto itself).

        Waits in slices no longer than ``block_seconds`` so a socket timeout never
        cuts a healthy wait; nothing is polled on a timer. While Redis is full
        (maxmemory, noeviction) it refuses BLMOVE, and the wait is :meth:`wait_any`'s
        read-only one instead.

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
            try:
                value = self.execute("BLMOVE", key, key, "LEFT", "LEFT", f"{max(left, 0.001):.3f}")
            except RedisFullError:
                # A full Redis refuses BLMOVE (it may write); the read-only wait still works.
                self.wait_any(queue, [run_id], left)
                value = self.execute("LINDEX", key, 0)
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

        Read-only: nothing is written to a result key, so a waiter killed (or cut
        off) mid-wait cannot take a result from anyone, and every key keeps its TTL.
        The ``finish`` and ``dead`` scripts write a run's outcome and its final-state
        event in one script, so once such an event for a watched run is visible its
        result exists. The events stream's last id is read in the same round trip as,
        and before, the peek at the results; then XREAD blocks for events after it.
        The stream is capped, so the caller re-reads everything now and then
        (an event trimmed before it was read is covered by that).
        """
        if not run_ids:
            return None
        events = self.keys.events(queue)
        keys = {rid: self.keys.result(queue, rid) for rid in run_ids}
        head, *peeks = self.send(
            [("XREVRANGE", events, "+", "-", "COUNT", 1)]
            + [("LINDEX", key, 0) for key in keys.values()]
        )
        for rid, raw in zip(keys, peeks, strict=True):
            if raw is not None and not isinstance(raw, Exception):
                return rid
        last = _s(head[0][0]) if isinstance(head, list) and head else "0-0"
        deadline = _now() + timeout
        while True:
            left = min(self.settings.block_seconds, deadline - _now())
            if left <= 0:
                return None
            block = max(1, int(left * 1000))
            reply = self.execute("XREAD", "COUNT", 1000, "BLOCK", block, "STREAMS", events, last)
            ended: list[str] = []
            for _, entries in reply or ():
                for eid, flat in entries:
                    last = _s(eid)
                    fields = _fields(flat)
                    rid = _s(fields.get(b"r", b""))
                    if rid in keys and _s(fields.get(b"s", b"")) in _FINAL:
                        ended.append(rid)
            if ended:
                for rid, raw in zip(ended, self.peek_results(queue, ended), strict=True):
                    if raw is not None:
                        return rid
