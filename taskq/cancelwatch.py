"""How a worker learns that runs it is running were asked to stop (``app.cancel``).

``cancel.lua`` records the request on the run ('cx') and publishes the run id on its
queue's cancel channel. :class:`CancelWatch`, a thread of each worker process, is
subscribed to the channels of the worker's queues: on a message, and every
``lease / 3`` seconds anyway (a message published while it was reconnecting, or a run
asked to stop whose worker was lost and which this worker took over), it reads the
requests of every run it holds in one pipelined round trip and hands each new one to
the worker (:meth:`taskq.Worker` tells an ``async`` run by cancelling its asyncio task,
and the timeout watchdog ends a sync one after ``cancel_grace_seconds``). Runs nobody
cancels cost nothing here but that periodic read of the held runs' records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from taskq.broker import Broker
from taskq.delivery import Delivery
from taskq.errors import TaskqError

log = logging.getLogger("taskq.cancel")


class CancelWatch:
    """Marks held deliveries asked to stop and tells ``on_request``.

    Args:
        broker: Redis access.
        queues: The (physical) queues the worker consumes.
        held: The deliveries the worker holds now.
        on_request: Called (on this thread) for each delivery newly asked to stop,
            after its ``cancel_reason`` and ``cancel_at`` are set.
        interval: Seconds between reads when no message comes.
    """

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        held: Callable[[], Sequence[Delivery]],
        on_request: Callable[[Delivery], None],
        interval: float,
    ) -> None:
        self.broker = broker
        self.channels = [broker.keys.cancel_channel(q) for q in queues]
        self.held = held
        self.on_request = on_request
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-cancel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        sub = self.broker.subscribe(self.channels)
        try:
            while not self._stop.is_set():
                try:
                    sub.wait(min(self.interval, 1.0))
                    if not self._stop.is_set():
                        self.check()
                except Exception as exc:  # Redis away, or its connections closed at exit
                    if self._stop.is_set():
                        break
                    level = logging.WARNING if isinstance(exc, TaskqError) else logging.ERROR
                    log.log(level, "cancel watch: %s; retrying", exc, exc_info=level > 30)
                    sub.close()
                    self._stop.wait(1.0)
        finally:
            sub.close()

    def check(self) -> list[Delivery]:
        """Read the requests of the held runs; mark and report the new ones."""
        ds = [d for d in self.held() if d.cancel_reason is None]
        if not ds:
            return []
        reasons = self.broker.control.requests([(d.queue, d.run_id) for d in ds])
        found = []
        for d, reason in zip(ds, reasons, strict=True):
            if reason is not None:
                d.cancel_reason, d.cancel_at = reason, time.monotonic()
                log.info("run %s was asked to stop: %s", d.run_id, reason)
                self.on_request(d)
                found.append(d)
        return found
