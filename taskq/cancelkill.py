"""The supervisor's side of cancelling a run that holds the GIL (``taskq worker``).

A sync task stuck in one long C call holds the GIL: no thread of its process (its cancel
watch, its timeout watchdog) can run, so the process cannot act on a stop request
(:mod:`taskq.cancel`). The supervisor can: :class:`CancelKills` (a thread of the
supervisor) listens on the children's queues' cancel channels; for a run one of its
children holds (the run record's worker id is the child's), it notes a check due when the
run's cancel grace (``cancel_grace_seconds``) and the watchdog's margin have passed. If
the record still shows the same attempt running on that child then, the child is killed
as a timed-out one is (:class:`taskq.deadlines.Deadlines`), the run recorded Cancelled
(fenced by its attempt) and the child's other deliveries handed back. A run that stopped,
or that its own watchdog recorded, is left alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskq.protocol import HELD, RecordField

if TYPE_CHECKING:
    from taskq.app import App

log = logging.getLogger("taskq.deadlines")


@dataclass(frozen=True)
class CancelCheck:
    """A run asked to stop, held by a child: look again at ``due`` (monotonic)."""

    queue: str
    run_id: str
    attempt: int
    worker_id: str
    entry_id: bytes
    reason: str
    due: float


class CancelKills:
    """Listens for stop requests and keeps the checks due (thread-safe).

    Args:
        app: The app (loaded in the supervisor).
        queues: The physical queues the children consume.
        workers: The worker ids of the children now (``hello``).
        margin: Seconds past the grace, as for timeouts (the child's watchdog first).
    """

    def __init__(
        self, app: App, queues: list[str], workers: Callable[[], Iterable[str]], margin: float
    ) -> None:
        self.app = app
        self.queues = queues
        self.workers = workers
        self.margin = margin
        self._lock = threading.Lock()
        self._checks: list[CancelCheck] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-cancel-kills", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        keys = self.app.broker.keys
        channels = {keys.cancel_channel(q): q for q in self.queues}
        sub = self.app.broker.subscribe(list(channels))
        while not self._stop.is_set():
            try:
                data = sub.message(1.0)
                if data is not None:
                    self._asked(data.decode())
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("cancel listener: %s; retrying", exc)
                sub.close()
                self._stop.wait(1.0)
        sub.close()

    def _asked(self, run_id: str) -> None:
        """A run was asked to stop: note a check if one of the children holds it."""
        workers = set(self.workers())
        broker = self.app.broker
        for queue in self.queues:
            rec = broker.producer.run_record(queue, run_id)
            if not rec:
                continue
            if rec.get(RecordField.STATE) in HELD and rec.get(RecordField.WORKER) in workers:
                grace = self.app.settings.cancel_grace_seconds
                check = CancelCheck(
                    queue,
                    run_id,
                    int(rec.get(RecordField.ATTEMPT, 0)),
                    rec[RecordField.WORKER],
                    rec.get(RecordField.ENTRY, "").encode(),
                    rec.get(RecordField.CANCEL, "cancelled"),
                    time.monotonic() + grace + self.margin,
                )
                with self._lock:
                    self._checks.append(check)
            return

    def next_due(self) -> float | None:
        """When the soonest check is due (monotonic), if any."""
        with self._lock:
            return min((c.due for c in self._checks), default=None)

    def due(self) -> list[CancelCheck]:
        """The checks due now, taken off the list; each still held as it was asked."""
        now = time.monotonic()
        with self._lock:
            ready = [c for c in self._checks if c.due <= now]
            self._checks = [c for c in self._checks if c.due > now]
        out = []
        for c in ready:
            rec = self.app.broker.producer.run_record(c.queue, c.run_id)
            same = rec.get(RecordField.WORKER) == c.worker_id and rec.get(
                RecordField.ATTEMPT
            ) == str(c.attempt)
            if rec.get(RecordField.STATE) in HELD and same:
                out.append(c)
        return out
