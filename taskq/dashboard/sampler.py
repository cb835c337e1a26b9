"""Queue depth over time: a thread samples every watched queue's counts every few
seconds, in ONE pipelined round trip per sample (``XLEN`` and ``XPENDING`` of each
priority stream, ``ZCARD`` of the delay queue, ``XLEN`` of the dead letters:
:meth:`~taskq.broker.inspection.Inspection.queue_counts`), into a bounded ring.

A partitioned queue's partitions are summed into their logical queue. Which queues are
watched is :class:`Watched`'s business: the ``--queue`` names, or those found under the
prefix (a ``SCAN``, at start and then every :data:`RESCAN_S` seconds, never per request).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from taskq.broker import Broker
from taskq.broker.inspection import QueueCounts
from taskq.errors import TaskqError
from taskq.partitions import logical_queue
from taskq.queues import physical

log = logging.getLogger("taskq.dashboard")

#: Samples kept (15 minutes at the default 2 s).
SAMPLES = 450
#: Seconds between two SCANs for queues, when no --queue was given.
RESCAN_S = 300.0


class Watched:
    """The physical queues the dashboard watches.

    Args:
        broker: Redis access.
        queues: The logical queues named on the command line (each partition of a
            partitioned one is watched); empty: every queue under the prefix.
    """

    def __init__(self, broker: Broker, queues: Sequence[str] = ()) -> None:
        self.broker = broker
        self.named = list(queues)
        self._names: list[str] = []
        self._scanned = 0.0
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The physical queues watched now (found again when due)."""
        with self._lock:
            due = not self._names or time.monotonic() - self._scanned >= RESCAN_S
            if due:
                self._names = self._find()
                self._scanned = time.monotonic()
            return list(self._names)

    def _find(self) -> list[str]:
        if self.named:
            out: list[str] = []
            for q in self.named:
                out += [n for n in physical(self.broker, q) if n not in out]
            return out
        found = self.broker.inspect.queue_names()
        return found or [self.broker.settings.default_queue]

    def logical(self) -> list[str]:
        """The logical queues watched, sorted."""
        return sorted({logical_queue(n) for n in self.names()})


class Sampler:
    """Samples the depth of the watched queues every ``interval`` seconds.

    Args:
        broker: Redis access.
        watched: The queues.
        interval: Seconds between samples.
        keep: Samples kept.
    """

    def __init__(
        self, broker: Broker, watched: Watched, interval: float = 2.0, keep: int = SAMPLES
    ) -> None:
        self.broker = broker
        self.watched = watched
        self.interval = interval
        self._ring: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.round_trips = 0

    def start(self) -> None:
        """Take a first sample now, then one every ``interval`` seconds in a thread."""
        self.sample()
        threading.Thread(target=self._run, name="taskq-dashboard-sampler", daemon=True).start()

    def stop(self) -> None:
        """Stop sampling (within one interval)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except TaskqError as exc:
                log.warning("depth sampler: %s", exc)
            except Exception:  # the sampler must outlive it, but say what
                if not self._stop.is_set():
                    log.exception("depth sampler: unexpected error")

    def sample(self) -> dict[str, Any]:
        """Take one sample (one round trip), keep it and return it."""
        names = self.watched.names()
        counts = self.broker.inspect.queue_counts(names)
        self.round_trips += 1
        per: dict[str, QueueCounts] = {}
        for name, c in zip(names, counts, strict=True):
            q = logical_queue(name)
            per[q] = per[q] + c if q in per else c
        got = {"t_ms": int(time.time() * 1000), "queues": {q: asdict(c) for q, c in per.items()}}
        with self._lock:
            self._ring.append(got)
        return got

    def samples(self) -> list[dict[str, Any]]:
        """The kept samples, oldest first."""
        with self._lock:
            return list(self._ring)
