"""Leases: a running delivery is renewed by its worker; an expired one is reclaimed.

A delivery's lease is its idle time in the group's pending list. The keeper
thread renews this worker's in-flight ids every lease/3 (``renew.lua``), from a
thread of its own so that a task holding the GIL delays it by at most a switch
interval. Every worker reclaims deliveries idle past the lease (XAUTOCLAIM)
every half lease; the ``start`` script then records the lost attempt Crashed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskq.broker import Broker, Entry
from taskq.errors import TaskqError

if TYPE_CHECKING:
    from taskq.metrics import Metrics

log = logging.getLogger("taskq.leases")


class LeaseKeeper:
    """Renews the leases of ``held()`` deliveries until ``stop()``.

    Args:
        broker: Redis access.
        consumer: This worker's consumer name.
        lease: Lease length in seconds.
        held: Returns ``(queue, priority level, entry_id)`` of the deliveries to keep.
        held_slots: Returns the concurrency slots those runs hold, ``{home queue:
            [(key, run id)]}``, renewed with them (see :mod:`taskq.concurrency`).
        on_tick: Called after each renewal round (the worker's registry heartbeat,
            :mod:`taskq.presence`), so that needs no thread of its own.
    """

    def __init__(
        self,
        broker: Broker,
        consumer: str,
        lease: float,
        held: Callable[[], Sequence[tuple[str, int, bytes]]],
        held_slots: Callable[[], dict[str, list[tuple[str, str]]]] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.consumer = consumer
        self.lease = lease
        self.held = held
        self.held_slots = held_slots
        self.on_tick = on_tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-lease", daemon=True)
        self._last_reclaim = 0.0
        self.lost = 0
        #: The worker's metrics (None: off; see :mod:`taskq.metrics`).
        self.metrics: Metrics | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            by_lane: dict[tuple[str, int], list[bytes]] = {}
            for q, level, eid in self.held():
                by_lane.setdefault((q, level), []).append(eid)
            for (q, level), ids in by_lane.items():
                try:
                    lost = self.broker.consumer.renew(q, self.consumer, ids, level)
                except TaskqError as exc:
                    log.warning("lease renewal failed: %s", exc)
                    continue
                for eid in lost:
                    self.lost += 1
                    log.warning("another worker took %s on %s; this attempt will be fenced", eid, q)
            # The concurrency slots of the runs held here go on with their leases.
            for home, slots in (self.held_slots() if self.held_slots else {}).items():
                try:
                    self.broker.control.renew_slots(home, slots, round(self.lease * 1000))
                except TaskqError as exc:
                    log.warning("concurrency slot renewal failed: %s", exc)
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception:  # the leases must go on whatever the heartbeat does
                    log.exception("the lease thread's tick failed")

    def reclaim(self, queues: Sequence[str], free: int) -> list[Entry]:
        """Take over deliveries whose lease expired, at most every half lease."""
        now = time.monotonic()
        if free <= 0 or now - self._last_reclaim < self.lease / 2:
            return []
        self._last_reclaim = now
        out: list[Entry] = []
        for q in queues:
            got = self.broker.consumer.reclaim(q, self.consumer, self.lease, free - len(out))
            if got and self.metrics is not None:
                self.metrics.reclaimed(q, len(got))
            out += got
            if len(out) >= free:
                break
        if out:
            log.warning("reclaimed %d delivery(ies) whose lease expired", len(out))
        return out
