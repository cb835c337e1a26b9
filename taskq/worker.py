"""One worker process: fetch deliveries, run up to ``concurrency`` at once, record outcomes.

Sync tasks (and flow bodies) run on a thread pool; ``async def`` tasks run on one
event loop in a thread of its own. The fetch loop asks Redis only for as many
entries as there are free slots, so nothing is prefetched into memory that
another worker could have run. Every worker process also runs a delay-queue
mover (:mod:`taskq.scheduler`) and a lease keeper (:mod:`taskq.leases`).

In burst mode the worker exits once a read finds nothing, nothing is in flight
and the delay queues are empty (it waits for scheduled runs and retries to come
due, blocking on Redis). While runs are in flight it keeps reading with short
blocking reads, so the children a running flow enqueues start at once; it never
sleeps waiting for work.

Stopping (:meth:`Worker.stop`, SIGTERM): fetching stops, running tasks get
``grace`` seconds, then the unfinished ones are handed back in one script per
queue for immediate redelivery. A second stop ends the grace period at once.

Redis outages: every loop reconnects forever with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from taskq.app import App
from taskq.backoff import Backoff
from taskq.engine import Delivery, Engine
from taskq.errors import TaskqError
from taskq.flow import Flow
from taskq.leases import LeaseKeeper
from taskq.message import new_run_id
from taskq.scheduler import Mover
from taskq.threads import TaskThreads

log = logging.getLogger("taskq.worker")

#: Exit code of a worker process replaced because a task overran its timeout.
EXIT_TIMEOUT = 70

#: How long a burst worker with runs in flight blocks on an empty stream (seconds).
BURST_BLOCK = 0.05


def make_worker_id() -> str:
    """``host-pid-random``: unique per process start, readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}-{new_run_id()[:6]}"


class Worker:
    """Consumes the given queues in this process.

    Args:
        app: The app whose tasks run here.
        queues: Queues to consume; within a priority level, earlier ones are served
            first. Default: every queue of the app.
        concurrency: Most tasks running at once in this process.
        burst: Exit once the queues are drained.
        grace: Seconds to let running tasks finish after a stop request.
        replace_on_timeout: When a sync task overruns ``timeout_seconds``, hand the
            other runs back and exit this process (the supervisor replaces it), since
            a thread cannot be killed. False (in-process use): abandon the thread and
            free its slot.
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str] | None = None,
        *,
        concurrency: int = 8,
        burst: bool = False,
        grace: float = 30.0,
        replace_on_timeout: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.app = app
        self.queues = list(queues or app.queues())
        self.concurrency = concurrency
        self.burst = burst
        self.grace = grace
        self.replace_on_timeout = replace_on_timeout
        self.id = make_worker_id()
        self.engine = Engine(app, self.id, can_block=self._has_free_slot)
        self._inflight = 0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._exited = threading.Event()
        self._threads = TaskThreads(concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        # Deliveries are keyed (queue, priority level, entry id): ids are per stream.
        self._held: dict[tuple[str, int, bytes], Delivery] = {}
        self._started: dict[tuple[str, int, bytes], float] = {}
        self._abandoned: set[tuple[str, int, bytes]] = set()
        self.processed = 0
        self.timed_out = 0
        self.handed_back = 0
        self.mover = Mover(app.broker, self.queues)
        self.leases = LeaseKeeper(app.broker, self.id, app.settings.lease_seconds, self._held_ids)

    # -- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop fetching; running tasks get ``grace`` seconds. A second call ends the grace."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Consume until stopped (or drained, in burst mode), then shut down."""
        self._retrying(self._prepare)
        log.info("worker %s consuming %s (concurrency %d)", self.id, self.queues, self.concurrency)
        self.mover.start()
        self.leases.start()
        watchdog = threading.Thread(target=self._watch_timeouts, name="taskq-timeouts", daemon=True)
        watchdog.start()
        try:
            self._consume()
        finally:
            self.mover.stop()
            self._shutdown()
            self.leases.stop()
            self._exited.set()
            self.mover.join(timeout=5)

    def _prepare(self) -> None:
        for q in self.queues:
            self.app.broker.ensure_group(q)
        for warning in self.app.broker.server_warnings():
            log.warning("%s", warning)

    def _retrying(self, step: Any) -> Any:
        """Run ``step()`` until Redis answers (or the worker stops), backing off between tries."""
        backoff = Backoff()
        while True:
            try:
                return step()
            except TaskqError as exc:
                delay = backoff.next()
                log.warning("%s; retrying in %.2f s", exc, delay)
                if self._stopping.wait(delay) and self._hurry.is_set():
                    raise

    # -- the loop -----------------------------------------------------------------------

    def _consume(self) -> None:
        backoff = Backoff()
        while not self.stopping:
            try:
                if self._step() is False:
                    return
                backoff.reset()
            except TaskqError as exc:
                delay = backoff.next()
                log.warning("fetching: %s; retrying in %.2f s", exc, delay)
                self._stopping.wait(delay)

    def _step(self) -> bool | None:
        """One fetch; False when a burst worker is drained."""
        broker = self.app.broker
        free = self._wait_for_slot()
        if free == 0:
            return None
        # Blocking reads are capped at half a lease, so expired leases are checked in time.
        # A burst worker with runs in flight blocks briefly: a running flow may be about to
        # enqueue children (XREADGROUP wakes the moment it does); idle, it does not block.
        block: float | None = min(self.app.settings.block_seconds, self.leases.lease / 2)
        if self.burst:
            block = BURST_BLOCK if self._busy() else None
        entries = self.leases.reclaim(self.queues, free)
        fresh = not entries
        if fresh:
            entries = broker.read(self.queues, self.id, free, block)
        if not entries and self.burst and not self._busy():
            # Drained, unless runs wait in the delay queue: then block on the stream,
            # which the mover feeds when they come due. A run the mover moved between
            # the read above and the count is in the stream now: one more read settles it.
            wait = broker.delayed_count(self.queues) > 0
            entries = broker.read(
                self.queues, self.id, free, self.app.settings.block_seconds if wait else None
            )
            if not entries and not wait:
                return False
        if len(entries) > free:  # a blocking read over several priority streams
            broker.release(self.id, entries[free:])
            entries = entries[:free]
        admitted = self.engine.admit(entries, fresh) if entries else []
        if self.stopping:  # read after a stop: give these straight back
            self._hand_back(admitted, "worker stopping")
            return None
        for d in admitted:
            self._dispatch(d)
        return None

    def _has_free_slot(self) -> bool:
        """Whether a flow blocking inline could see its children run here."""
        with self._cond:
            return self._inflight < self.concurrency

    def _wait_for_slot(self) -> int:
        with self._cond:
            while self._inflight >= self.concurrency and not self.stopping:
                self._cond.wait()
            return 0 if self.stopping else self.concurrency - self._inflight

    def _busy(self) -> bool:
        with self._cond:
            return self._inflight > 0

    # -- running ------------------------------------------------------------------------

    def _held_ids(self) -> list[tuple[str, int, bytes]]:
        with self._cond:
            return list(self._held)

    def _dispatch(self, d: Delivery) -> None:
        key = (d.queue, d.level, d.entry_id)
        with self._cond:
            self._inflight += 1
            self._held[key] = d
            self._started[key] = time.monotonic()
        if d.task.is_async and not isinstance(d.task, Flow):
            fut = asyncio.run_coroutine_threadsafe(self.engine.run_async(d), self._event_loop())
            fut.add_done_callback(lambda f: self._done(d, f))
        else:
            self._threads.submit(lambda: self._run_sync(d))

    def _run_sync(self, d: Delivery) -> None:
        try:
            self.engine.run(d)
        except Exception:
            log.exception("recording the outcome of run %s failed", d.run_id)
        finally:
            self._done(d, None)

    def _done(self, d: Delivery, fut: Any) -> None:
        if fut is not None and fut.exception() is not None:
            log.error("recording an async outcome failed: %r", fut.exception())
        key = (d.queue, d.level, d.entry_id)
        with self._cond:
            self._started.pop(key, None)
            if key in self._abandoned:  # its slot was freed when it timed out
                self._abandoned.discard(key)
                return
            self._held.pop(key, None)
            self._inflight -= 1
            self.processed += 1
            self._cond.notify_all()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, name="taskq-async", daemon=True)
            t.start()
            self._loop, self._loop_thread = loop, t
        return self._loop

    # -- timeouts -----------------------------------------------------------------------

    def _watch_timeouts(self) -> None:
        """Every 0.1 s, end sync attempts that ran past ``timeout_seconds``.

        (Async tasks time out inside the engine, with ``asyncio.wait_for``.)
        """
        while not self._exited.wait(0.1):
            now = time.monotonic()
            with self._cond:
                overdue = [
                    (key, d)
                    for key, d in self._held.items()
                    if key not in self._abandoned
                    and not (d.task.is_async and not isinstance(d.task, Flow))
                    and (limit := self.engine.timeout_of(d)) is not None
                    and now - self._started.get(key, now) > limit
                ]
            for key, d in overdue:
                self._time_out(key, d)

    def _time_out(self, key: tuple[str, int, bytes], d: Delivery) -> None:
        self.timed_out += 1
        log.warning("run %s overran its timeout; recording it timed out", d.run_id)
        try:
            self.engine.handle_timeout(d)
        except TaskqError as exc:
            log.warning(
                "could not record the timeout of %s: %s (its lease will bring it back)",
                d.run_id,
                exc,
            )
        with self._cond:
            self._abandoned.add(key)
            self._held.pop(key, None)
            self._inflight -= 1
            self.processed += 1
            self._cond.notify_all()
            others = list(self._held.values())
        if not self.replace_on_timeout:
            self._threads.add_thread()  # the stuck job keeps its thread; the freed slot needs one
        if self.replace_on_timeout:
            # The stuck thread cannot be killed: hand the other runs back and let the
            # supervisor start a fresh process.
            self._hand_back(others, "worker replaced after a task timed out")
            logging.shutdown()
            os._exit(EXIT_TIMEOUT)

    # -- shutdown -----------------------------------------------------------------------

    def _hand_back(self, deliveries: Sequence[Delivery], reason: str) -> None:
        by_lane: dict[tuple[str, int], list[Delivery]] = {}
        for d in deliveries:
            by_lane.setdefault((d.queue, d.level), []).append(d)
        for (q, level), ds in by_lane.items():
            items = [(d.entry_id, d.run_id, d.attempt, d.payload) for d in ds]
            try:
                self.handed_back += self.app.broker.handback(q, self.id, items, reason, level)
            except TaskqError as exc:
                log.warning("hand-back failed (%s); the lease will bring the runs back", exc)

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.grace
        with self._cond:
            while self._inflight > 0 and not self._hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
            unfinished = list(self._held.values())
        if unfinished:
            log.warning("handing back %d unfinished run(s) for redelivery", len(unfinished))
            self._hand_back(unfinished, "worker shut down before it finished")
        with self._cond:
            stuck = bool(self._abandoned)  # threads held by timed-out runs: never joined
        self._threads.shutdown(wait=not unfinished and not stuck)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
