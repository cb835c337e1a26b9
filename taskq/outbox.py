"""The worker's outbox: finished runs whose ``finish`` call waits for the next fetch.

When a run's outcome is one script call and nobody needs to know at once whether it
was fenced off (no hooks), the engine may leave the call here instead of sending it;
the fetch loop then sends every waiting call with its next read, in one round trip
for many runs. The worker owns the outbox and hands it to the engine at
construction; the engine asks :meth:`Outbox.defer`, which marks the delivery it took
(``Delivery.deferred``) so the worker keeps it held, and leased, until recorded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from taskq.broker import Entry, FinishCall
from taskq.broker.consumer import Consumer
from taskq.delivery import Delivery
from taskq.errors import TaskqError

if TYPE_CHECKING:
    from taskq.metrics import Metrics

# The worker's logger: recording these outcomes is the fetch loop's work.
log = logging.getLogger("taskq.worker")


class Outbox:
    """Finish calls waiting to go out with the fetch loop's next read.

    Args:
        consumer: The consumer role that sends them.
        stopping: Set once the worker stops: calls are sent at once from then on.
    """

    def __init__(self, consumer: Consumer, stopping: threading.Event) -> None:
        self._consumer = consumer
        self._stopping = stopping
        self._lock = threading.Lock()
        self._calls: list[tuple[Delivery, FinishCall]] = []
        self._blocking = False  # the fetch loop is in (or entering) a blocking read
        #: The worker's metrics (None: off; see :mod:`taskq.metrics`).
        self.metrics: Metrics | None = None

    def __bool__(self) -> bool:
        """Whether calls wait here (an outcome not recorded yet may resume a flow)."""
        with self._lock:
            return bool(self._calls)

    def defer(self, d: Delivery, call: FinishCall) -> bool:
        """Keep a finished run's ``finish`` call for the next fetch; False (the caller
        sends it) while the fetch loop blocks on an empty stream or the worker stops."""
        with self._lock:
            if self._blocking or self._stopping.is_set():
                return False
            d.deferred = True
            self._calls.append((d, call))
            return True

    def start_blocking(self) -> bool:
        """Enter a blocking read unless calls wait (then False: read without blocking).
        While blocked, finishing runs record their outcomes themselves."""
        with self._lock:
            if self._calls:
                return False
            self._blocking = True
            return True

    def end_blocking(self) -> None:
        """Leave the blocking read: runs may defer their outcomes again."""
        with self._lock:
            self._blocking = False

    def _take(self) -> list[tuple[Delivery, FinishCall]]:
        with self._lock:
            taken, self._calls = self._calls, []
            return taken

    def commit(
        self, queues: Sequence[str], consumer: str, free: int
    ) -> tuple[list[Delivery], list[Entry]] | None:
        """Send the waiting calls and a fetch for ``free`` slots in one round trip.

        Returns:
            The deliveries recorded (no longer the worker's to hold) and the entries
            read; None when nothing waited. On a Redis error the calls stay here.
        """
        taken = self._take()
        if not taken:
            return None
        try:
            results, entries = self._consumer.finish_and_read(
                [call for _, call in taken], queues, consumer, free
            )
        except TaskqError:
            with self._lock:
                self._calls[:0] = taken
            raise
        return _recorded(taken, results, self.metrics), entries

    def flush(self) -> list[Delivery]:
        """Record every waiting outcome now (before a hand-back or an exit); the
        deliveries recorded, or given up to their leases."""
        taken = self._take()
        if not taken:
            return []
        try:
            results = self._consumer.finish_many([call for _, call in taken])
        except TaskqError as exc:
            log.warning(
                "recording %d outcome(s) failed: %s (leases bring them back)", len(taken), exc
            )
            results = [exc] * len(taken)
        return _recorded(taken, results, self.metrics)


def _recorded(
    taken: Sequence[tuple[Delivery, FinishCall]],
    results: Sequence[bool | Exception],
    metrics: Metrics | None,
) -> list[Delivery]:
    for (d, _), ok in zip(taken, results, strict=True):
        if isinstance(ok, Exception):
            log.error("recording the outcome of run %s failed: %s", d.run_id, ok)
            continue
        if not ok:
            log.warning("run %s attempt %d was fenced off; outcome dropped", d.run_id, d.attempt)
        if metrics is not None and d.outcome is not None:
            metrics.ended(d, d.outcome, ok)
    return [d for d, _ in taken]
