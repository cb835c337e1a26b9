"""The worker's slots: the deliveries it holds and the runs it has in flight.

A delivery is held (and its lease renewed) from admission until its outcome is
recorded; it is in flight, taking one of ``concurrency`` slots, while its task runs.
A run whose outcome waits in the outbox is no longer in flight but still held. A
sync run that overran its timeout is abandoned: its slot is freed although its
thread may still be running it. One condition guards all of it, and is what the
fetch loop and the shutdown wait on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from taskq.delivery import Delivery

#: A delivery's key: (queue, priority level, entry id); entry ids are per stream.
Key = tuple[str, int, bytes]


def key_of(d: Delivery) -> Key:
    """The key the worker holds ``d`` under."""
    return (d.queue, d.level, d.entry_id)


class Slots:
    """What one worker holds and runs.

    Args:
        concurrency: Most runs in flight at once.
        stopping: Set once the worker stops (waits for a slot end then).
    """

    def __init__(self, concurrency: int, stopping: threading.Event) -> None:
        self.concurrency = concurrency
        self._stopping = stopping
        self.cond = threading.Condition()
        self.inflight = 0
        #: Runs that ended here (recorded, deferred or timed out).
        self.processed = 0
        self._held: dict[Key, Delivery] = {}
        self._started: dict[Key, float] = {}
        self._abandoned: set[Key] = set()

    def wake(self) -> None:
        """Wake whoever waits on the slots (a stop request)."""
        with self.cond:
            self.cond.notify_all()

    def held_ids(self) -> list[Key]:
        """The keys of every delivery held (whose leases are renewed)."""
        with self.cond:
            return list(self._held)

    def held(self) -> list[Delivery]:
        """Every delivery held and still running here (not abandoned, not deferred)."""
        with self.cond:
            return [
                d for key, d in self._held.items() if key not in self._abandoned and not d.deferred
            ]

    def cancel_overdue(self, grace: float) -> list[Delivery]:
        """Held deliveries asked to stop more than ``grace`` seconds ago, still running."""
        now = time.monotonic()
        return [d for d in self.held() if d.cancel_reason is not None and now - d.cancel_at > grace]

    def busy(self) -> bool:
        """Whether runs are in flight."""
        with self.cond:
            return self.inflight > 0

    def has_free(self) -> bool:
        """Whether a slot is free now."""
        with self.cond:
            return self.inflight < self.concurrency

    def wait_free(self) -> int:
        """Block until a slot is free; how many are (0 once stopping)."""
        with self.cond:
            while self.inflight >= self.concurrency and not self._stopping.is_set():
                self.cond.wait()
            return 0 if self._stopping.is_set() else self.concurrency - self.inflight

    def take(self, d: Delivery) -> float:
        """Hold ``d`` and count it in flight; its start (monotonic seconds)."""
        key = key_of(d)
        with self.cond:
            self.inflight += 1
            self._held[key] = d
            self._started[key] = started = time.monotonic()
        return started

    def restart(self, d: Delivery) -> bool:
        """``d`` goes on as a new attempt on the same slot (a retry with no delay): its
        clock starts again. False, changing nothing, if its slot was given up (its
        attempt timed out meanwhile)."""
        key = key_of(d)
        with self.cond:
            if key in self._abandoned or key not in self._started:
                return False
            self._started[key] = time.monotonic()
            return True

    def done(self, d: Delivery) -> None:
        """``d``'s run ended; free its slot (unless its timeout freed it already)."""
        key = key_of(d)
        with self.cond:
            self._started.pop(key, None)
            if key in self._abandoned:  # its slot was freed when it timed out
                self._abandoned.discard(key)
                return
            if not d.deferred:  # a deferred one stays held (leased) until recorded
                self._held.pop(key, None)
            self.inflight -= 1
            self.processed += 1
            self.cond.notify_all()

    def release(self, recorded: Sequence[Delivery]) -> None:
        """Stop holding (and leasing) deliveries whose outcomes were recorded."""
        with self.cond:
            for d in recorded:
                self._held.pop(key_of(d), None)

    def overdue(
        self, runs_here: Callable[[Delivery], bool], limit_of: Callable[[Delivery], float | None]
    ) -> list[Delivery]:
        """Running deliveries ``runs_here`` (on a task thread) past their time limit."""
        now = time.monotonic()
        with self.cond:
            return [
                d
                for key, d in self._held.items()
                if key not in self._abandoned
                and not d.deferred  # its outcome is in the outbox
                and runs_here(d)
                and (limit := limit_of(d)) is not None
                and now - self._started.get(key, now) > limit
            ]

    def abandon(self, d: Delivery) -> list[Delivery]:
        """Free the slot of a run that timed out (its thread may still run it); the
        other deliveries held."""
        key = key_of(d)
        with self.cond:
            self._abandoned.add(key)
            self._held.pop(key, None)
            self.inflight -= 1
            self.processed += 1
            self.cond.notify_all()
            return list(self._held.values())

    def unfinished(self) -> list[Delivery]:
        """Held deliveries whose outcomes are not waiting in the outbox."""
        with self.cond:
            return [d for d in self._held.values() if not d.deferred]

    def stuck(self) -> bool:
        """Whether threads are held by timed-out runs (never to be joined)."""
        with self.cond:
            return bool(self._abandoned)

    def wait_idle(self, deadline: float, hurry: threading.Event) -> None:
        """Wait until nothing is in flight, ``deadline`` (monotonic) passes or ``hurry``."""
        with self.cond:
            while self.inflight > 0 and not hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.1))
