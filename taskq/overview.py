"""The operator's read model: queues, workers and runs, as ``taskq info``, ``taskq runs``,
``taskq run`` and the dashboard show them.

Pure reads (no click, no rich), each bounded so that it stays fast with 100,000 runs
in the events streams: counts are ``XLEN`` / ``XPENDING`` / ``ZCARD``; throughput
reads at most :data:`THROUGHPUT_ENTRIES` entries of each events stream; recent runs
at most :data:`taskq.runview.SCAN_ENTRIES` per queue. Every function takes a
:class:`taskq.broker.Broker` (``App(...).broker``). Every dataclass has ``as_json()``
(plain JSON types, times as Unix milliseconds), which ``--json`` prints.

A partitioned queue is one :class:`QueueInfo` (its partitions summed); runs and
events name their physical queue (the partition), which :func:`run_detail` accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskq.broker import Broker
from taskq.partitions import logical_queue
from taskq.presence import STALE_INTERVALS
from taskq.protocol import FINAL, PRIORITIES, EventField
from taskq.queues import grouped, physical
from taskq.rundetail import AttemptInfo, RunDetail, flow_children, locate, run_detail
from taskq.runview import NamedEvent, RunSummary, named_events, recent_runs

__all__ = [
    "THROUGHPUT_ENTRIES",
    "AttemptInfo",
    "LevelInfo",
    "NamedEvent",
    "QueueInfo",
    "RunDetail",
    "RunSummary",
    "WorkerInfo",
    "flow_children",
    "locate",
    "named_events",
    "queue_info",
    "recent_runs",
    "run_detail",
    "worker_info",
]

#: Events-stream entries (of up to 16 runs each) read per queue for its throughput;
#: when the window holds more, the rate is measured over the span they cover.
THROUGHPUT_ENTRIES = 500


@dataclass(frozen=True)
class LevelInfo:
    """One priority level of one queue (of a partitioned queue: summed over partitions)."""

    level: int
    backlog: int
    in_flight: int

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QueueInfo:
    """One logical queue.

    Attributes:
        queue: Its name.
        partitions: Its physical queues (``[queue]`` when not partitioned).
        levels: Level 0 and every other level with entries (backlog or in flight);
            a worker creates all ten levels' streams, so "has a stream" says nothing.
        backlog: Entries no worker has read yet (or handed back), all levels.
        in_flight: Entries read by a worker and not acked (XPENDING).
        delayed: Delay-queue members (retries waiting, ``delay=``, deferrals).
        dead: Dead-letter entries.
        consumers_alive: Worker processes with a fresh heartbeat that serve it.
        throughput_per_s: Runs that reached a final state per second over the last
            ``window_s`` (from the events streams).
        window_s: The window.
    """

    queue: str
    partitions: list[str]
    levels: list[LevelInfo]
    backlog: int
    in_flight: int
    delayed: int
    dead: int
    consumers_alive: int
    throughput_per_s: float
    window_s: float

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process, from its heartbeat (:mod:`taskq.presence`).

    Attributes:
        worker_id: Its id (``host-pid-random``; its consumer name).
        host, pid: Where it runs.
        queues: The logical queues it serves.
        slots: Its concurrency.
        busy: Runs it was executing at its last heartbeat.
        started_ms: When it started (server clock; 0 if it did not say).
        last_heartbeat_ms: Its last heartbeat (server clock).
        alive: The heartbeat is at most ``STALE_INTERVALS`` intervals old.
        physical_queues: The physical queues it consumes (a partitioned queue's
            partitions) (added).
        heartbeat_age_ms: How old the last heartbeat was when read (server clock)
            (added).
    """

    worker_id: str
    host: str
    pid: int
    queues: list[str]
    slots: int
    busy: int
    started_ms: int
    last_heartbeat_ms: int
    alive: bool
    physical_queues: list[str]
    heartbeat_age_ms: int

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def worker_info(broker: Broker) -> list[WorkerInfo]:
    """Every worker process in the registry (alive or stale, until pruned), by host and pid."""
    now, entries = broker.workers.entries()
    out = []
    for wid, beat, e in entries:
        physical_queues = [str(q) for q in e.get("queues", [])]
        interval = int(e.get("interval_ms", 5000))
        age = max(0, now - beat)
        out.append(
            WorkerInfo(
                wid,
                str(e.get("host", "?")),
                int(e.get("pid", 0)),
                list(dict.fromkeys(logical_queue(q) for q in physical_queues)),
                int(e.get("slots", 0)),
                int(e.get("busy", 0)),
                int(e.get("started_ms") or 0),
                beat,
                age <= STALE_INTERVALS * interval,
                physical_queues,
                age,
            )
        )
    out.sort(key=lambda w: (w.host, w.pid, w.worker_id))
    return out


def queue_info(
    broker: Broker, queues: Sequence[str] | None = None, *, window_s: float = 60.0
) -> list[QueueInfo]:
    """Per logical queue its counts, live consumers and recent throughput.

    Two round trips for the counts and the events (each pipelined over every
    partition), and one for the worker registry.

    Args:
        queues: The queues to show; None: every queue under the prefix, found by a
            SCAN of the keyspace (as ``taskq queues`` does), which grows with the
            number of keys: a caller that polls should pass its queues.
        window_s: The throughput window, seconds.
    """
    if queues is None:
        groups = grouped(broker.inspect.queue_names())
    else:
        groups = {q: physical(broker, q) for q in queues}
    names = [n for ns in groups.values() for n in ns]
    counts = dict(zip(names, broker.inspect.level_counts(names), strict=True))
    since = broker.inspect.server_ms() - round(window_s * 1000)
    ended = dict(zip(names, _ended(broker, names, since, window_s), strict=True))
    workers = [w for w in worker_info(broker) if w.alive]
    out = []
    for q, ns in groups.items():
        per_level = [0] * PRIORITIES, [0] * PRIORITIES
        delayed = dead = 0
        for n in ns:
            c = counts[n]
            for level, (backlog, in_flight) in enumerate(zip(c.waiting, c.pending, strict=True)):
                per_level[0][level] += backlog
                per_level[1][level] += in_flight
            delayed, dead = delayed + c.delayed, dead + c.dead
        levels = [
            LevelInfo(level, per_level[0][level], per_level[1][level])
            for level in range(PRIORITIES)
            if level == 0 or per_level[0][level] or per_level[1][level]
        ]
        alive = sum(1 for w in workers if set(w.physical_queues) & set(ns))
        out.append(
            QueueInfo(
                q,
                list(ns),
                levels,
                sum(per_level[0]),
                sum(per_level[1]),
                delayed,
                dead,
                alive,
                round(sum(ended[n] for n in ns), 3),
                window_s,
            )
        )
    return out


def _ended(broker: Broker, names: Sequence[str], since_ms: int, window_s: float) -> list[float]:
    """Per physical queue, runs that reached a final state per second since ``since_ms``."""
    out = []
    for events in broker.inspect.events_since(names, since_ms, THROUGHPUT_ENTRIES):
        n = sum(1 for _, f in events if f.get(EventField.STATE) in FINAL)
        span = window_s
        ids = {eid for eid, _ in events}
        if len(ids) >= THROUGHPUT_ENTRIES:  # the window holds more: rate over what was read
            newest, oldest = (int(e.partition("-")[0]) for e in (events[0][0], events[-1][0]))
            span = max(0.001, (newest - oldest) / 1000)
        out.append(n / span if span > 0 else 0.0)
    return out
