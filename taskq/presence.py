"""A worker process's presence in the worker registry: its heartbeat in Redis.

Every worker process publishes an entry (``heartbeat.lua``, one script call per
interval, never per run): its host, pid, queues, concurrency (slots), the runs it
is executing, when it started and the interval itself. The call is made from the
lease keeper's thread (:mod:`taskq.leases`), every ``lease_seconds / 3`` (5 s by
default), so it costs no thread of its own. Times are the **server's** (Redis
``TIME``, ms), so hosts with skewed clocks agree on who is alive.

- An entry is **alive** while its last heartbeat is at most :data:`STALE_INTERVALS`
  intervals old (15 s by default); an older one is shown, not alive.
- An entry older than :data:`PRUNE_INTERVALS` intervals (100 s by default; at least
  :data:`PRUNE_MIN_MS`) is removed by the next heartbeat of any worker, so a
  SIGKILLed worker's entry goes away by itself; the registry's keys expire when no
  worker beats at all.
- A worker that stops cleanly withdraws its entry as it exits.

A failed heartbeat (Redis away) is logged at DEBUG and retried at the next
interval: the worker never stops for it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence

from taskq.broker import Broker
from taskq.errors import TaskqError

log = logging.getLogger("taskq.presence")

#: Heartbeat intervals after which an entry is not alive.
STALE_INTERVALS = 3
#: Heartbeat intervals after which an entry is pruned (and its lower bound, ms).
PRUNE_INTERVALS = 20
PRUNE_MIN_MS = 60_000


def prune_ms(interval: float) -> int:
    """How old (ms) an entry of a worker beating every ``interval`` s gets before pruning."""
    return max(PRUNE_MIN_MS, round(PRUNE_INTERVALS * interval * 1000))


class Presence:
    """Publishes one worker process's entry.

    Args:
        broker: Redis access.
        worker_id: The worker's id (its consumer name).
        queues: The physical queues it consumes.
        slots: Its concurrency.
        busy: Returns how many runs it is executing now.
        interval: Seconds between heartbeats.
    """

    def __init__(
        self,
        broker: Broker,
        worker_id: str,
        queues: Sequence[str],
        slots: int,
        busy: Callable[[], int],
        interval: float,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.queues = list(queues)
        self.slots = slots
        self.busy = busy
        self.interval = interval
        self.started_ms: int | None = None
        self._host, self._pid = socket.gethostname(), os.getpid()
        # A beat from the lease keeper's thread must not land after the withdrawal.
        self._lock = threading.Lock()
        self._withdrawn = False

    def beat(self) -> None:
        """Publish the entry now (the first beat records the start time); nothing once
        withdrawn."""
        with self._lock:
            if not self._withdrawn:
                self._beat()

    def _beat(self) -> None:
        entry = {
            "host": self._host,
            "pid": self._pid,
            "queues": self.queues,
            "slots": self.slots,
            "busy": self.busy(),
            "started_ms": self.started_ms,
            "interval_ms": round(self.interval * 1000),
        }
        try:
            now = self.broker.workers.beat(self.worker_id, entry, prune_ms(self.interval))
        except TaskqError as exc:
            log.debug("heartbeat failed: %s", exc)
            return
        if self.started_ms is None:
            self.started_ms = now
            self._beat()  # once more, with the start time (only on the first beat)

    def withdraw(self) -> None:
        """Remove the entry (a clean stop); later beats publish nothing."""
        with self._lock:
            self._withdrawn = True
        try:
            self.broker.workers.beat(self.worker_id, None, prune_ms(self.interval))
        except TaskqError as exc:
            log.debug("withdrawing the heartbeat failed: %s", exc)
