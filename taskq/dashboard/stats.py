"""Throughput and start latency, computed from the events the feed reads (no Redis reads
of their own), in bounded memory.

- **Throughput**: runs that reached a final state (Completed, Cached, Failed, Cancelled)
  per second, by the time of their final event (its stream id: the server's clock).
- **Start latency** (enqueue to start): for a run whose ``Pending`` event the feed saw,
  the time of its first ``Running`` event minus the time of that ``Pending`` event, both
  from their events-stream ids (server time). A run enqueued before the dashboard
  started (or whose Pending event fell out of the :data:`TRACKED` newest) is not
  measured. A delayed run (``delay=``) becomes Pending when it comes due, so its
  latency counts from then, not from its submit.

Both are kept per second for the last :data:`WINDOW_S` seconds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskq.protocol import FINAL, StateName
from taskq.runview import NamedEvent

#: Seconds of per-second figures kept.
WINDOW_S = 600
#: Runs whose Pending time is remembered until they start.
TRACKED = 50_000

_FAILED = frozenset({StateName.FAILED, StateName.CANCELLED})


@dataclass
class Second:
    """The figures of one second."""

    t: int  # Unix seconds
    completed: int = 0
    failed: int = 0
    started: int = 0
    latency_sum_ms: int = 0
    latency_max_ms: int = 0
    latencies: list[int] = field(default_factory=list)  # at most _PER_SECOND, for quantiles

    def as_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "t": self.t,
            "completed": self.completed,
            "failed": self.failed,
            "started": self.started,
            "latency_avg_ms": self.latency_sum_ms / self.started if self.started else None,
            "latency_p50_ms": lat[len(lat) // 2] if lat else None,
            "latency_max_ms": self.latency_max_ms if self.started else None,
        }


_PER_SECOND = 200


class Stats:
    """Per-second throughput and start latency; :meth:`add` is the feed's listener."""

    def __init__(self, window_s: int = WINDOW_S, tracked: int = TRACKED) -> None:
        self.window_s = window_s
        self.tracked = tracked
        self._seconds: OrderedDict[int, Second] = OrderedDict()
        self._pending: OrderedDict[str, int] = OrderedDict()  # run id -> Pending time (ms)
        self._lock = threading.Lock()

    def add(self, events: Sequence[NamedEvent]) -> None:
        """Count ``events`` (one events-stream entry's)."""
        with self._lock:
            for ev in events:
                self._add(ev)

    def _add(self, ev: NamedEvent) -> None:
        if ev.state == StateName.PENDING:
            if ev.run_id not in self._pending:
                self._pending[ev.run_id] = ev.time_ms
                if len(self._pending) > self.tracked:
                    self._pending.popitem(last=False)
            return
        if ev.state in FINAL:
            sec = self._second(ev.time_ms // 1000)
            if ev.state in _FAILED:
                sec.failed += 1
            else:
                sec.completed += 1
            self._pending.pop(ev.run_id, None)
        elif ev.state == StateName.RUNNING:
            queued = self._pending.pop(ev.run_id, None)
            if queued is not None:
                sec = self._second(ev.time_ms // 1000)
                wait = max(0, ev.time_ms - queued)
                sec.started += 1
                sec.latency_sum_ms += wait
                sec.latency_max_ms = max(sec.latency_max_ms, wait)
                if len(sec.latencies) < _PER_SECOND:
                    sec.latencies.append(wait)

    def _second(self, t: int) -> Second:
        sec = self._seconds.get(t)
        if sec is None:
            sec = self._seconds[t] = Second(t)
            if len(self._seconds) > 1 and t < next(reversed(self._seconds)):
                self._seconds = OrderedDict(sorted(self._seconds.items()))
            newest = next(reversed(self._seconds))
            while self._seconds and next(iter(self._seconds)) <= newest - self.window_s:
                self._seconds.popitem(last=False)
            if t not in self._seconds:  # older than the window
                return Second(t)
        return sec

    def series(self) -> list[dict[str, Any]]:
        """The kept seconds, oldest first (seconds with nothing are absent)."""
        with self._lock:
            return [s.as_json() for s in self._seconds.values()]

    def tracked_runs(self) -> int:
        """Runs whose Pending time is held (at most :attr:`tracked`)."""
        with self._lock:
            return len(self._pending)
