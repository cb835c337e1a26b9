"""Hard timeouts for ``taskq worker``: enforced from outside the process running the task.

A worker process's own watchdog is a thread: while a task holds the GIL (a long C
loop, a catastrophic regex) it cannot run, so the timeout would be recorded only
when the task returns. So each worker process (the child) reports every run that
has a time limit to the supervisor over a pipe:

* ``("hello", worker_id)`` once, before it reads anything;
* ``("start", key, run_id, attempt, queue, level, entry_id, deadline)`` when a
  timed run starts, ``deadline`` on ``time.monotonic()`` (system-wide on Linux);
* ``("end", key)`` when it ends.

Runs without a limit are not reported, so they cost nothing. When a deadline plus
:data:`MARGIN` passes and the run is still reported running, the supervisor
(:class:`Deadlines`) SIGKILLs that process, records the run ``TaskTimeoutError``
itself (fenced by the attempt, so it retries per the task's policy, and a race
with the child's own watchdog records it once), hands the process's other
deliveries back for immediate redelivery, and restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskq.app import App, load_app
from taskq.cancelkill import CancelCheck, CancelKills
from taskq.delivery import Delivery
from taskq.engine import Engine
from taskq.errors import MessageError, TaskqError, UnknownTaskError
from taskq.keys import GROUP, LEVELS_SERVED
from taskq.message import PAYLOAD_FIELD, decode_message
from taskq.protocol import RecordField

if TYPE_CHECKING:
    from taskq.metrics import Metrics

log = logging.getLogger("taskq.deadlines")

#: Seconds past a run's deadline before its process is killed: the child's own
#: watchdog (every 0.1 s) records it first whenever the GIL lets it.
MARGIN = 0.5

#: Most pending deliveries of a killed process handed back per priority stream.
HANDBACK_LIMIT = 10_000

Key = tuple[str, int, bytes]


@dataclass(frozen=True)
class TimedRun:
    """A run a child reported running with a deadline."""

    run_id: str
    attempt: int
    queue: str
    level: int
    entry_id: bytes
    deadline: float


class Reporter:
    """The child's end: sends timed runs' starts and ends to the supervisor.

    Args:
        conn: The write end of the child's pipe.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # runs start and end on many threads

    def send(self, message: tuple[Any, ...]) -> None:
        """Send one message; a supervisor that is gone is not this process's problem
        here (its death is noticed on the parent sentinel)."""
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(message)

    def hello(self, worker_id: str) -> None:
        self.send(("hello", worker_id))

    def timed(self, d: Delivery, deadline: float | None) -> None:
        """Worker hook: ``d`` started with ``deadline``, or (``None``) ended."""
        key = (d.queue, d.level, d.entry_id)
        if deadline is None:
            self.send(("end", key))
        else:
            self.send(("start", key, d.run_id, d.attempt, d.queue, d.level, d.entry_id, deadline))


class _Child:
    """What the supervisor knows of one worker process."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.open = True
        self.worker_id: str | None = None
        self.runs: dict[Key, TimedRun] = {}


class Deadlines:
    """The supervisor's end: tracks every child's timed runs and enforces them.

    Args:
        app_spec: The app the children run (loaded here on the first kill).
        redis_url: Its Redis URL override, as the children get it.
        queues: The queues the children consume (default: every queue of the app).
    """

    def __init__(self, app_spec: str, redis_url: str | None, queues: Iterable[str] = ()) -> None:
        self.app_spec = app_spec
        self.redis_url = redis_url
        self.queues = list(queues)
        self._children: dict[int, _Child] = {}
        self._engine: Engine | None = None
        self._cancels: CancelKills | None = None
        self.kills = 0
        #: The pool's metrics, recorded for the outcomes recorded here (None: off).
        self.metrics: Metrics | None = None

    def watch_cancels(self) -> None:
        """Start listening for stop requests of the children's runs (see
        :mod:`taskq.cancelkill`); a failure to load the app is logged, not raised."""
        try:
            app = self._engine_now().app
        except TaskqError as exc:
            log.error("cannot load %s to watch cancels: %s", self.app_spec, exc)
            return
        workers = lambda: [c.worker_id for c in self._children.values() if c.worker_id]  # noqa: E731
        queues = app.physical_queues(self.queues or None)
        self._cancels = CancelKills(app, queues, workers, MARGIN)
        self._cancels.start()

    def close(self) -> None:
        if self._cancels is not None:
            self._cancels.stop()

    # -- bookkeeping --------------------------------------------------------------------

    def attach(self, slot: int, conn: Any) -> None:
        """Follow the child in ``slot`` through the read end of its pipe."""
        self.detach(slot)
        self._children[slot] = _Child(conn)

    def detach(self, slot: int) -> None:
        child = self._children.pop(slot, None)
        if child is not None:
            child.conn.close()

    def connections(self) -> list[Any]:
        """Pipes worth waiting on (those not at end of file)."""
        return [c.conn for c in self._children.values() if c.open]

    def receive(self) -> None:
        """Read every message waiting on the pipes."""
        for child in self._children.values():
            self._drain(child)

    def _drain(self, child: _Child) -> None:
        try:
            while child.open and child.conn.poll():
                self._handle(child, child.conn.recv())
        except (EOFError, OSError):
            child.open = False

    @staticmethod
    def _handle(child: _Child, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "hello":
            child.worker_id = msg[1]
        elif kind == "start":
            _, key, run_id, attempt, queue, level, entry_id, deadline = msg
            child.runs[key] = TimedRun(run_id, attempt, queue, level, entry_id, deadline)
        elif kind == "end":
            child.runs.pop(msg[1], None)

    def timeout(self, bound: float) -> float:
        """``bound``, shortened so a wait ends when the next run becomes overdue."""
        due = [r.deadline + MARGIN for c in self._children.values() for r in c.runs.values()]
        if self._cancels is not None and (check := self._cancels.next_due()) is not None:
            due.append(check)
        if not due:
            return bound
        return max(0.0, min(bound, min(due) - time.monotonic()))

    # -- enforcement --------------------------------------------------------------------

    def enforce(self, processes: Mapping[int, Any]) -> list[int]:
        """Kill, record and hand back every child with an overdue run; the slots killed."""
        killed = []
        now = time.monotonic()
        for slot, child in list(self._children.items()):
            p = processes.get(slot)
            if p is None or not self._overdue(child, now):
                continue
            self._drain(child)  # it may have just ended in time
            if not self._overdue(child, now) or not p.is_alive():
                continue
            p.kill()
            p.join()
            self._drain(child)  # what it sent before it died
            overdue = [r for r in child.runs.values() if r.deadline + MARGIN <= now]
            if not overdue:
                continue  # ended between our look and the kill: only hand the rest back
            self.kills += 1
            killed.append(slot)
            log.warning(
                "worker process %d (pid %s) killed: run(s) %s overran their timeout",
                slot,
                p.pid,
                ", ".join(r.run_id for r in overdue),
            )
            self._settle(child, overdue)
        for check in self._cancels.due() if self._cancels is not None else []:
            self._kill_for_cancel(processes, check, killed)
        return killed

    def _kill_for_cancel(
        self, processes: Mapping[int, Any], check: CancelCheck, killed: list[int]
    ) -> None:
        """A run asked to stop still runs on a child past its grace: kill the child, record
        the run Cancelled (fenced by its attempt) and hand the child's other runs back."""
        slot = next((s for s, c in self._children.items() if c.worker_id == check.worker_id), None)
        p = processes.get(slot) if slot is not None else None
        if slot is None or p is None or not p.is_alive():
            return
        p.kill()
        p.join()
        child = self._children[slot]
        self._drain(child)
        self.kills += 1
        killed.append(slot)
        log.warning(
            "worker process %d (pid %s) killed: run %s did not stop within its cancel grace",
            slot,
            p.pid,
            check.run_id,
        )
        try:
            engine = self._engine_now()
            skip: set[Key] = set()
            for level in LEVELS_SERVED:
                d = self._delivery(engine, check.queue, level, check.entry_id)
                if d is not None:
                    d.attempt = check.attempt
                    engine.handle_cancel(d, check.reason)
                    skip.add((check.queue, level, check.entry_id))
                    break
            child.runs.clear()
            if child.worker_id is not None:
                self._hand_back(engine.app, child.worker_id, skip)
        except TaskqError as exc:
            log.warning("could not settle the cancel of %s: %s", check.run_id, exc)

    @staticmethod
    def _overdue(child: _Child, now: float) -> bool:
        return any(r.deadline + MARGIN <= now for r in child.runs.values())

    def _settle(self, child: _Child, overdue: list[TimedRun]) -> None:
        """Record the overrun runs timed out, then hand the dead process's other
        deliveries back (each step on its own: a failure leaves the rest to leases)."""
        try:
            engine = self._engine_now()
        except TaskqError as exc:
            log.error("cannot load %s to record the timeouts: %s", self.app_spec, exc)
            return
        for run in overdue:
            try:
                self._record_timeout(engine, run)
            except TaskqError as exc:
                log.warning("could not record the timeout of %s: %s", run.run_id, exc)
        child.runs.clear()
        if child.worker_id is not None:
            skip = {(r.queue, r.level, r.entry_id) for r in overdue}
            try:
                self._hand_back(engine.app, child.worker_id, skip)
            except TaskqError as exc:
                log.warning("hand-back failed (%s); the lease will bring the runs back", exc)

    def _engine_now(self) -> Engine:
        if self._engine is None:
            app = load_app(self.app_spec)
            app.configure(redis_url=self.redis_url)
            self._engine = Engine(app)
            self._engine.metrics = self.metrics
        return self._engine

    def _record_timeout(self, engine: Engine, run: TimedRun) -> None:
        d = self._delivery(engine, run.queue, run.level, run.entry_id)
        if d is None:
            return  # its entry is gone: the run was recorded (and acked) meanwhile
        d.attempt = run.attempt  # the fence: a second recording changes nothing
        engine.handle_timeout(d)

    @staticmethod
    def _delivery(engine: Engine, queue: str, level: int, entry_id: bytes) -> Delivery | None:
        """The delivery of a stream entry, decoded as the engine decodes it."""
        broker = engine.broker
        found = broker.execute("XRANGE", broker.keys.stream(queue, level), entry_id, entry_id)
        if not found:
            return None
        flat = found[0][1]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        payload = fields.get(PAYLOAD_FIELD)
        if payload is None:
            return None
        try:
            msg = decode_message(broker.signer.verify(payload), broker.limits)
            task = engine.app.get_task(msg.task)
        except (MessageError, UnknownTaskError) as exc:  # the child admitted it, so unlikely
            log.warning("entry %r cannot be decoded here: %s", entry_id, exc)
            return None
        return Delivery(queue, entry_id, payload, msg, task, level=level)

    def _hand_back(self, app: App, consumer: str, skip: set[Key]) -> None:
        """Hand back every delivery ``consumer`` still holds, for immediate redelivery
        (``handback.lua`` checks ownership by consumer name)."""
        engine = self._engine_now()
        broker = app.broker
        for queue in app.physical_queues(self.queues):
            for level in LEVELS_SERVED:
                stream = broker.keys.stream(queue, level)
                try:
                    pending = broker.execute(
                        "XPENDING", stream, GROUP, "-", "+", HANDBACK_LIMIT, consumer
                    )
                except TaskqError as exc:
                    if "NOGROUP" in str(exc):
                        continue
                    raise
                items = []
                for eid, *_ in pending:
                    d = (
                        None
                        if (queue, level, eid) in skip
                        else self._delivery(engine, queue, level, eid)
                    )
                    if d is not None:
                        items.append((eid, d.run_id, self._attempt(app, d, consumer), d.payload))
                if items:
                    n = broker.consumer.handback(
                        queue, consumer, items, "its worker was killed", level
                    )
                    log.warning("handed back %d run(s) of killed worker %s", n, consumer)

    @staticmethod
    def _attempt(app: App, d: Delivery, consumer: str) -> int:
        """The attempt the dead worker held (0 if it had not started the run)."""
        rec = app.broker.producer.run_record(d.queue, d.run_id)
        held = rec.get(RecordField.WORKER) == consumer
        if held and rec.get(RecordField.ENTRY) == d.entry_id.decode():
            return int(rec.get(RecordField.ATTEMPT, 0))
        return 0
