"""The delay-queue mover: runs inside every worker process, no extra daemon.

It promotes due runs from ``taskq:{q}:delayed`` to the stream with the
``promote`` script (at most ``batch`` per call, server clock, exactly once even
with many movers), then sleeps until the earliest remaining due time — which
the script reports on the server's clock, so the worker's wall clock never
matters — or until a wake-up: the scripts that add a new earliest member
``PUBLISH`` on the queue's wake channel, which a second thread listens to.

A retry therefore starts within milliseconds of its due time and never before it.

When Redis fails, both threads back off with :class:`taskq.backoff.Backoff` (capped, jittered
exponential): each wait is random up to 0.1 s, 0.2 s, 0.4 s, ... capped at 5 s
(``BACKOFF_BASE`` / ``BACKOFF_CAP``), the old fixed doubling as the upper bound; the jitter
keeps the movers of many workers from retrying in step after an outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from taskq.backoff import Backoff
from taskq.broker import Broker
from taskq.errors import TaskqError

log = logging.getLogger("taskq.scheduler")

#: Longest sleep when nothing is scheduled (a safety net; wake-ups come by pub/sub).
IDLE_SECONDS = 30.0

#: Upper bounds (seconds) of the first and the largest wait while Redis fails; a longer cap than
#: a worker's fetch backoff (1 s): a late mover only delays delayed runs, it loses nothing.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0


class Mover:
    """Promotes due runs of ``queues`` until ``stop`` is set.

    Args:
        broker: Redis access.
        queues: Queues whose delay queues this mover serves.
        batch: Most members moved per script call.
        stop: An event that stops the mover when set.
    """

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        *,
        batch: int = 100,
        stop: threading.Event | None = None,
    ) -> None:
        self.broker = broker
        self.queues = list(queues)
        self.batch = batch
        self.stop_event = stop or threading.Event()
        self._wake = threading.Event()
        self.moved = 0
        self._threads: list[threading.Thread] = []
        self.on_error: Callable[[BaseException], None] = lambda exc: None

    def start(self) -> None:
        """Start the mover and the wake-up listener threads (daemons)."""
        for target, name in ((self._run, "taskq-mover"), (self._listen, "taskq-mover-wake")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the mover thread. The listener, blocked in a pub/sub read, notices
        the stop within ``block_seconds`` on its own; nothing waits for it."""
        if self._threads:
            self._threads[0].join(timeout)

    def promote_once(self) -> float | None:
        """Promote everything due now; return seconds until the next due run (None: none)."""
        wait: float | None = None
        for q in self.queues:
            while True:
                moved, next_due, now = self.broker.delay.promote(q, self.batch)
                self.moved += moved
                if moved < self.batch:
                    break
            if next_due >= 0:
                left = max(0.0, (next_due - now) / 1000)
                wait = left if wait is None else min(wait, left)
        return wait

    def _run(self) -> None:
        backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)
        while not self.stop_event.is_set():
            self._wake.clear()  # before promoting: a wake-up during it is not lost
            try:
                wait = self.promote_once()
                backoff.reset()
            except TaskqError as exc:
                delay = backoff.next()
                log.warning("delay-queue mover: %s; retrying in %.2f s", exc, delay)
                self.on_error(exc)
                self.stop_event.wait(delay)
                continue
            self._wake.wait(IDLE_SECONDS if wait is None else wait)

    def _listen(self) -> None:
        channels = [self.broker.keys.wake_channel(q) for q in self.queues]
        sub = self.broker.subscribe(channels)
        backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)
        try:
            while not self.stop_event.is_set():
                try:
                    if sub.wait(self.broker.settings.block_seconds):
                        self._wake.set()
                    backoff.reset()
                except Exception as exc:  # a closed pool surfaces as TypeError in redis-py
                    if self.stop_event.is_set():
                        return
                    delay = backoff.next()
                    log.warning("delay-queue wake-ups: %s; retrying in %.2f s", exc, delay)
                    self.stop_event.wait(delay)
        finally:
            sub.close()
