"""A queue's events with task names, filtered, newest history then live: what
``taskq events [--follow]`` prints (and a dashboard can stream).

A partitioned queue's partitions are read in turn (each is its own hash tag): the
history is merged in time order, and a follower blocks on each partition for its
share of ``block_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass

from taskq.broker import Broker
from taskq.runview import SCAN_ENTRIES, NamedEvent, name_events

#: Runs whose task names a follower remembers (it forgets them all past this).
CACHE_RUNS = 100_000
PAGE = 500


@dataclass(frozen=True)
class EventFilter:
    """Which events to keep: of runs of ``task`` (exactly), entering ``state`` (any case)."""

    task: str | None = None
    state: str | None = None

    def __call__(self, ev: NamedEvent) -> bool:
        if self.task is not None and ev.task != self.task:
            return False
        return self.state is None or ev.state.lower() == self.state.lower()

    @property
    def everything(self) -> bool:
        """Whether it keeps every event."""
        return self.task is None and self.state is None


def latest_events(
    broker: Broker, queues: Sequence[str], count: int, keep: EventFilter
) -> tuple[list[NamedEvent], dict[str, str], dict[str, str | None]]:
    """The newest ``count`` kept events over ``queues``, oldest first (looking back at
    most ``SCAN_ENTRIES`` stream entries per queue).

    Returns:
        The events, per queue the id to follow from, and the task-name cache.
    """
    cache: dict[str, str | None] = {}
    found: list[NamedEvent] = []
    lasts = dict.fromkeys(queues, "0-0")
    for q in queues:
        before: str | None = None
        kept: list[NamedEvent] = []
        scanned = 0
        while len(kept) < count and scanned < SCAN_ENTRIES:
            raw, before, n = broker.inspect.events_before(q, before, PAGE)
            scanned += n
            if raw and lasts[q] == "0-0":
                lasts[q] = raw[0][0]
            kept += [ev for ev in name_events(broker, q, raw, cache) if keep(ev)]
            if before is None:
                break
        found += kept[:count]
    found.sort(key=lambda ev: _stream_id(ev.id))
    return found[-count:], lasts, cache


def follow_events(
    broker: Broker,
    queues: Sequence[str],
    lasts: MutableMapping[str, str],
    keep: EventFilter,
    cache: MutableMapping[str, str | None],
) -> Iterator[NamedEvent]:
    """Kept events after ``lasts`` (per queue), forever, blocking on Redis between them."""
    block = broker.settings.block_seconds / len(queues)
    while True:
        for q in queues:
            raw = broker.inspect.events(q, lasts[q], 1000, block)
            if len(cache) > CACHE_RUNS:
                cache.clear()
            for ev in name_events(broker, q, raw, cache):
                lasts[q] = ev.id
                if keep(ev):
                    yield ev


def _stream_id(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)
