"""Reading the per-queue events stream: the live story of every run.

The state record, not this stream, is the truth: the stream is capped
(``events_maxlen``, approximate) and meant for CLIs, dashboards and tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from taskq.broker import Broker
from taskq.protocol import EventField


@dataclass(frozen=True)
class Event:
    """One state transition."""

    id: str
    run_id: str
    state: str
    attempt: int
    error_type: str = ""
    error_message: str = ""

    def __str__(self) -> str:
        err = f"  {self.error_type}: {self.error_message}" if self.error_type else ""
        return f"{self.id}  {self.run_id}  {self.state:<13} attempt={self.attempt}{err}"


def _event(eid: str, f: dict[str, str]) -> Event:
    state, attempt = f.get(EventField.STATE, ""), int(f.get(EventField.ATTEMPT, 0))
    et, em = f.get(EventField.ERROR_TYPE, ""), f.get(EventField.ERROR_MESSAGE, "")
    return Event(eid, f.get(EventField.RUN, ""), state, attempt, et, em)


def read_events(
    broker: Broker, queue: str, after: str = "0-0", count: int = 1000, block: float | None = None
) -> list[Event]:
    """Events of ``queue`` after stream id ``after``, oldest first."""
    return [_event(eid, f) for eid, f in broker.inspect.events(queue, after, count, block)]


def follow(broker: Broker, queue: str, after: str) -> Iterator[Event]:
    """Yield events after ``after`` forever, blocking on Redis between them."""
    last = after
    while True:
        for ev in read_events(broker, queue, last, 1000, broker.settings.block_seconds):
            last = ev.id
            yield ev


def recent_events(broker: Broker, queue: str, count: int) -> list[Event]:
    """The last ``count`` events of ``queue``, oldest first (what ``taskq events`` shows first)."""
    return [_event(eid, f) for eid, f in broker.inspect.recent_events(queue, count)]
