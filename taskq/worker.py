"""One worker process: fetch deliveries, run up to ``concurrency`` at once, record outcomes.

Sync tasks (and flow bodies) run on a thread pool; ``async def`` tasks run on one
event loop in a thread of its own. The fetch loop asks Redis only for as many
entries as there are free slots, so nothing is prefetched into memory that
another worker could have run. Every worker process also runs a delay-queue
mover (:mod:`taskq.scheduler`) and a lease keeper (:mod:`taskq.leases`).

In burst mode the worker exits once a read finds nothing, nothing is in flight
and nothing in the delay queues comes due within ``burst_wait`` seconds (it waits
for those runs, blocking on Redis, and logs what it leaves scheduled). While runs
are in flight it keeps reading with short blocking reads, so the children a running
flow enqueues start at once; it never sleeps waiting for work.

Stopping (:meth:`Worker.stop`, SIGTERM): fetching stops, running tasks get
``grace`` seconds, then the unfinished ones are handed back in one script per
queue for immediate redelivery. A second stop ends the grace period at once.

Redis outages: every loop reconnects forever with capped, jittered backoff. A
``NOGROUP`` reply means Redis lost its data: the groups are recreated, once, loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from taskq.admission import Admission
from taskq.app import App
from taskq.backoff import Backoff
from taskq.broker import Entry
from taskq.cancelwatch import CancelWatch
from taskq.delivery import Delivery
from taskq.engine import Engine
from taskq.errors import BrokerError, TaskqError
from taskq.flows.flow import Flow
from taskq.leases import LeaseKeeper
from taskq.outbox import Outbox
from taskq.partitions import logical_queue
from taskq.presence import Presence
from taskq.scheduler import Mover
from taskq.schedules import ScheduleRunner
from taskq.slots import Key, Slots, key_of
from taskq.threads import LoopThread, TaskThreads

if TYPE_CHECKING:
    from taskq.metrics import Metrics

log = logging.getLogger("taskq.worker")

#: Exit code of a worker process replaced because a task overran its timeout.
EXIT_TIMEOUT = 70

#: How long a burst worker with runs in flight blocks on an empty stream (seconds).
BURST_BLOCK = 0.05


def make_worker_id() -> str:
    """``host-pid-random``: unique per process start, readable in XINFO CONSUMERS. The
    random part is hex, so the pid is always the second-to-last ``-`` field."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """Consumes the given queues in this process.

    Args:
        app: The app whose tasks run here.
        queues: Queues to consume; within a priority level, earlier ones are served
            first. Default: every queue of the app. A partitioned queue stands for all
            its partitions (:meth:`taskq.App.physical_queues`).
        concurrency: Most tasks running at once in this process.
        burst: Exit once the queues are drained.
        burst_wait: In burst mode, wait for delay-queue runs (retries, delayed runs)
            due within this many seconds (server clock); later ones are left scheduled.
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
        burst_wait: float = 60.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if burst_wait < 0:
            raise ValueError("burst_wait must be at least 0")
        self.app = app
        #: The physical queues consumed: a partitioned queue's partitions, in order.
        self.queues = app.physical_queues(queues)
        self.concurrency = concurrency
        self.burst = burst
        self.burst_wait = burst_wait
        self.grace = grace
        self.replace_on_timeout = replace_on_timeout
        self.id = make_worker_id()
        self._stopping = threading.Event()
        self.slots = Slots(concurrency, self._stopping)
        self.admission = Admission(app, self.id)
        if burst:  # runs it hands back for another worker are not its to wait for
            self.admission.parked = {}
        self.outbox = Outbox(app.broker.consumer, self._stopping)
        # A flow blocking inline helps only while its children could run here.
        self.engine = Engine(
            app,
            self.outbox,
            can_block=self.slots.has_free,
            restart=self._restart,
            next_attempt=self._next_attempt,
        )
        self._hurry = threading.Event()
        self._consumed = threading.Event()  # the fetch loop has returned
        self._exited = threading.Event()
        self._threads = TaskThreads(concurrency)
        self._loop = LoopThread()
        self._async_tasks: dict[Key, asyncio.Task[None]] = {}  # running async runs (loop thread)
        self.timed_out = 0
        self.handed_back = 0
        #: Told each run with a time limit as it starts (its monotonic deadline) and
        #: ends (None): how ``taskq worker``'s supervisor enforces hard timeouts.
        self.report_deadline: Callable[[Delivery, float | None], None] | None = None
        self.mover = Mover(app.broker, self.queues)
        logical = {logical_queue(q) for q in self.queues}
        self.schedules = ScheduleRunner(
            app,
            [t for t in app.registry.values() if t.options.schedule and t.queue in logical],
        )
        #: This process's entry in the worker registry, beaten by the lease keeper.
        self.presence = Presence(
            app.broker,
            self.id,
            self.queues,
            concurrency,
            lambda: len(self.slots.held()),
            app.settings.lease_seconds / 3,
        )
        self.leases = LeaseKeeper(
            app.broker,
            self.id,
            app.settings.lease_seconds,
            self.slots.held_ids,
            self._held_slots,
            self.presence.beat,
        )
        self.cancels = CancelWatch(
            app.broker,
            self.queues,
            self.slots.held,
            self._asked_to_stop,
            app.settings.lease_seconds / 3,
        )
        #: Prometheus metrics (None: off; :meth:`use_metrics`).
        self.metrics: Metrics | None = None

    def use_metrics(self, metrics: Metrics) -> None:
        """Record this worker's metrics in ``metrics`` (see :mod:`taskq.metrics`)."""
        self.metrics = metrics
        self.admission.metrics = self.outbox.metrics = metrics
        self.engine.metrics = self.leases.metrics = metrics

    # -- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop fetching; running tasks get ``grace`` seconds. A second call ends the grace."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        self.slots.wake()

    def abort(self, reason: str) -> None:
        """Stop with no grace and hand every unfinished run back now, from any thread.

        For a process about to exit while its fetch loop may still be blocked in a
        read: the waiting outcomes are recorded first, then the rest is handed back
        for immediate redelivery (a second hand-back of the same runs is a no-op).
        """
        self.stop()
        self._hurry.set()
        # A read in flight may still take a run (another process's hand-back lands in
        # it at once): wait for the loop to see the stop, which hands such runs back.
        self._consumed.wait(self.app.settings.block_seconds + 1)
        self._flush()
        unfinished = self.slots.unfinished()
        if unfinished:
            log.warning("handing back %d unfinished run(s): %s", len(unfinished), reason)
            self._hand_back(unfinished, reason)

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stopping.is_set()

    @property
    def processed(self) -> int:
        """Runs that ended in this worker (recorded, deferred or timed out)."""
        return self.slots.processed

    def run(self) -> None:
        """Consume until stopped (or drained, in burst mode), then shut down."""
        self._retrying(self._prepare)
        log.info("worker %s consuming %s (concurrency %d)", self.id, self.queues, self.concurrency)
        self.presence.beat()
        self.mover.start()
        self.leases.start()
        self.cancels.start()
        self.schedules.start()
        watchdog = threading.Thread(target=self._watch_timeouts, name="taskq-timeouts", daemon=True)
        watchdog.start()
        try:
            self._consume()
        finally:
            self._consumed.set()
            self.mover.stop()
            self._shutdown()
            self.leases.stop()
            self.presence.withdraw()
            self.cancels.stop()
            self.schedules.stop()
            self._exited.set()
            self.mover.join(timeout=5)  # the cancel watch holds nothing: not waited for

    def _prepare(self) -> None:
        for q in self.queues:
            self.app.broker.consumer.ensure_group(q)
        for warning in self.app.broker.inspect.server_warnings():
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
                if isinstance(exc, BrokerError) and "NOGROUP" in str(exc):
                    self._retrying(self._regroup)
                    continue
                delay = backoff.next()
                log.warning("fetching: %s; retrying in %.2f s", exc, delay)
                self._stopping.wait(delay)

    def _regroup(self) -> None:
        """The consumer groups are gone (Redis lost its data): make them again, and say so."""
        for q in self.queues:
            self.app.broker.consumer.ensure_group(q, again=True)
        log.error(
            "the consumer groups of queues %s were missing: Redis lost its data (FLUSHALL, "
            "a restart without persistence, a failover to an empty replica); runs queued or "
            "running before are lost. Recreated the groups; carrying on.",
            self.queues,
        )

    def _step(self) -> bool | None:
        """One fetch; False when a burst worker is drained."""
        broker = self.app.broker
        free = self.slots.wait_free()
        if free == 0:
            return None
        # Expired leases first (at most every half lease), whatever else is going on.
        entries = self.leases.reclaim(self.queues, free)
        if entries:
            self._admit(entries, False)
            return None
        read_too = self._commit(free)
        if read_too is not None:  # outcomes recorded, new deliveries read, one round trip
            if read_too:
                self._admit(read_too, True)
            return None
        # Blocking reads are capped at half a lease, so expired leases are checked in time.
        # A burst worker with runs in flight blocks briefly: a running flow may be about to
        # enqueue children (XREADGROUP wakes the moment it does); idle, it does not block.
        block: float | None = min(self.app.settings.block_seconds, self.leases.lease / 2)
        if self.burst:
            block = BURST_BLOCK if self._busy() else None
        entries = self._read(free, block)
        fresh = True
        if not entries and self.burst and not self._busy():
            # Drained, unless runs in the delay queue come due within burst_wait: then
            # block on the stream, which the mover feeds when they come due. A run the
            # mover moved between the read above and the count is in the stream now:
            # one more read settles it. Runs due later are left scheduled.
            soon, later = broker.delay.delayed_within(
                self.queues, self.burst_wait, self.admission.parked
            )
            entries = self._read(free, self.app.settings.block_seconds if soon else None)
            if not entries and not soon:
                for q, n, due_in in later:
                    log.warning(
                        "burst: %d run(s) left scheduled on queue %r, next due in %.0f s",
                        n,
                        q,
                        due_in,
                    )
                return False
        if len(entries) > free:  # a blocking read over several priority streams
            broker.consumer.release(self.id, entries[free:])
            entries = entries[:free]
        if entries:
            self._admit(entries, fresh)
        return None

    def _admit(self, entries: Sequence[Entry], fresh: bool) -> None:
        admitted = self.admission.admit(entries, fresh)
        if self.stopping:  # read after a stop: give these straight back
            self._hand_back(admitted, "worker stopping")
            return
        coroutines: list[Delivery] = []
        for d in admitted:
            self._dispatch(d, coroutines)
        if coroutines:  # one wake-up of the event loop for the batch, not one per run
            self._loop.loop().call_soon_threadsafe(self._start_async, coroutines)

    def _read(self, free: int, block: float | None) -> list[Entry]:
        """Read new deliveries; never block while finished runs wait in the outbox."""
        if block is not None and not self.outbox.start_blocking():
            block = None
        try:
            return self.app.broker.consumer.read(self.queues, self.id, free, block)
        finally:
            if block is not None:
                self.outbox.end_blocking()

    # -- batched outcomes ---------------------------------------------------------------

    def _commit(self, free: int) -> list[Entry] | None:
        """Send the outbox with a fetch for ``free`` slots (one round trip); None when
        the outbox was empty."""
        got = self.outbox.commit(self.queues, self.id, free)
        if got is None:
            return None
        recorded, entries = got
        self.slots.release(recorded)
        return entries

    def _flush(self) -> None:
        """Record every outcome waiting in the outbox now (before a hand-back or an exit)."""
        self.slots.release(self.outbox.flush())

    def _busy(self) -> bool:
        """Runs in flight, or outcomes not recorded yet (one may resume a flow)."""
        return self.slots.busy() or bool(self.outbox)

    # -- running ------------------------------------------------------------------------

    def _dispatch(self, d: Delivery, coroutines: list[Delivery]) -> None:
        """Take a slot for ``d`` and run it: sync tasks (and flows) on a task thread now,
        ``async def`` tasks added to ``coroutines``, which the caller starts on the loop."""
        started = self.slots.take(d)
        if self.metrics is not None:
            self.metrics.running(d, 1)
        if self.report_deadline is not None and (limit := self.engine.timeout_of(d)) is not None:
            self.report_deadline(d, started + limit)
        if d.task.is_async and not isinstance(d.task, Flow):
            coroutines.append(d)
        else:
            self._threads.submit(lambda: self._run_sync(d))

    def _start_async(self, deliveries: Sequence[Delivery]) -> None:
        """On the event loop's thread: one task per delivery (kept referenced until done)."""
        loop = self._loop.loop()
        for d in deliveries:
            task = loop.create_task(self._run_async(d))
            self._async_tasks[key_of(d)] = task
            task.add_done_callback(partial(self._async_done, key_of(d)))

    def _async_done(self, key: Key, _task: asyncio.Task[None]) -> None:
        self._async_tasks.pop(key, None)

    async def _run_async(self, d: Delivery) -> None:
        try:
            await self.engine.run_async(d)
        except Exception:
            log.exception("recording the outcome of run %s failed", d.run_id)
        finally:
            self._done(d)

    def _run_sync(self, d: Delivery) -> None:
        try:
            self.engine.run(d)
        except Exception:
            log.exception("recording the outcome of run %s failed", d.run_id)
        finally:
            self._done(d)

    def _restart(self, d: Delivery) -> bool:
        """``d`` is about to go on as its next attempt in place (a retry with no delay):
        its time limit starts again, here and at the supervisor (which learns the new
        attempt's number from :meth:`_next_attempt`). False if its slot was given up, or
        the worker is stopping: the retry then goes through the delay queue, to a worker
        that is not."""
        if self._stopping.is_set() or not self.slots.restart(d):
            return False
        if self.report_deadline is not None and self.engine.timeout_of(d) is not None:
            self.report_deadline(d, None)
        return True

    def _next_attempt(self, d: Delivery) -> None:
        """``d`` now holds its next attempt (started in place)."""
        if self.report_deadline is not None and (limit := self.engine.timeout_of(d)) is not None:
            self.report_deadline(d, time.monotonic() + limit)

    def _held_slots(self) -> dict[str, list[tuple[str, str]]]:
        """The concurrency slots of the runs held here, per home queue (for renewal)."""
        out: dict[str, list[tuple[str, str]]] = {}
        for d in self.slots.held():
            if d.conc_slot is not None:
                out.setdefault(d.conc_slot[0], []).append((d.conc_slot[1], d.run_id))
        return out

    def _done(self, d: Delivery) -> None:
        if d.conc_slot is not None:  # the body returned: its key's slot is free again
            try:
                self.app.broker.control.release_slot(*d.conc_slot, d.run_id)
            except TaskqError as exc:
                log.warning("slot of %s not given back (%s): its lease frees it", d.run_id, exc)
            d.conc_slot = None
        if self.report_deadline is not None and self.engine.timeout_of(d) is not None:
            self.report_deadline(d, None)
        if self.metrics is not None:
            self.metrics.running(d, -1)
        self.slots.done(d)

    # -- timeouts -----------------------------------------------------------------------

    def _watch_timeouts(self) -> None:
        """Every 0.1 s, end sync attempts that ran past ``timeout_seconds``.

        (Async tasks time out inside the engine, with ``asyncio.timeout``.)
        """
        while not self._exited.wait(0.1):
            for d in self.slots.overdue(_on_thread, self.engine.timeout_of):
                self._time_out(d)
            for d in self.slots.cancel_overdue(self.app.settings.cancel_grace_seconds):
                self._cancel_out(d)

    def _asked_to_stop(self, d: Delivery) -> None:
        """``d`` was asked to stop (:mod:`taskq.cancelwatch`): an ``async`` run gets
        ``CancelledError`` now; a sync one reads :func:`taskq.cancel_requested` and is
        ended by the watchdog after ``cancel_grace_seconds``."""
        task = self._async_tasks.get(key_of(d))
        if task is not None:
            self._loop.loop().call_soon_threadsafe(task.cancel)

    def _cancel_out(self, d: Delivery) -> None:
        """A run asked to stop is still running after its grace: record it Cancelled
        (fenced by its attempt: if it ended meanwhile, its own end stands) and free its
        slot, as for a timeout; its thread may go on running it."""
        reason = d.cancel_reason or "cancelled"
        log.warning("run %s did not stop within its cancel grace; recording it Cancelled", d.run_id)
        if self.report_deadline is not None and self.engine.timeout_of(d) is not None:
            self.report_deadline(d, None)
        try:
            self.engine.handle_cancel(d, reason)
        except TaskqError as exc:
            log.warning("could not record the cancel of %s: %s", d.run_id, exc)
        self.slots.abandon(d)
        if _on_thread(d):
            self._threads.add_thread()  # the stuck job keeps its thread; the slot needs one

    def _time_out(self, d: Delivery) -> None:
        self.timed_out += 1
        if self.report_deadline is not None:
            self.report_deadline(d, None)  # recorded here: the supervisor need not
        log.warning("run %s overran its timeout; recording it timed out", d.run_id)
        try:
            self.engine.handle_timeout(d)
        except TaskqError as exc:
            log.warning(
                "could not record the timeout of %s: %s (its lease will bring it back)",
                d.run_id,
                exc,
            )
        others = self.slots.abandon(d)
        if not self.replace_on_timeout:
            self._threads.add_thread()  # the stuck job keeps its thread; the freed slot needs one
        if self.replace_on_timeout:
            # The stuck thread cannot be killed: record the waiting outcomes, hand the
            # other runs back and let the supervisor start a fresh process.
            self._flush()
            others = [o for o in others if not o.deferred]
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
                self.handed_back += self.app.broker.consumer.handback(
                    q, self.id, items, reason, level
                )
            except TaskqError as exc:
                log.warning("hand-back failed (%s); the lease will bring the runs back", exc)

    def _shutdown(self) -> None:
        # On a Cluster, blocking reads of other slots may still be in flight: what they
        # take is given back at once rather than left to the lease.
        with contextlib.suppress(TaskqError):
            self.app.broker.consumer.stop_reading(self.id, self.app.settings.block_seconds)
        self.slots.wait_idle(time.monotonic() + self.grace, self._hurry)
        self._flush()
        unfinished = self.slots.unfinished()
        if unfinished:
            log.warning("handing back %d unfinished run(s) for redelivery", len(unfinished))
            self._hand_back(unfinished, "worker shut down before it finished")
        # Threads held by timed-out runs are never joined.
        self._threads.shutdown(wait=not unfinished and not self.slots.stuck())
        self._loop.stop()


def _on_thread(d: Delivery) -> bool:
    """Whether ``d`` runs on a task thread (async tasks time out inside the engine)."""
    return not (d.task.is_async and not isinstance(d.task, Flow))
