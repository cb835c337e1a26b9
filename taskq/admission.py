"""Admission: turning a worker's stream entries into started deliveries.

Each entry is checked before anything of it runs: its payload verified (signature,
size) and decoded within the message limits, its task looked up. What cannot run
is dead-lettered with the reason; a run of a task this worker does not know is
handed back for a worker that does (a rolling deploy), for a while. The rest is
started in one ``start`` script call per stream, whose :class:`StartKind` per entry
says what to do with it: run it, resume its flow, drop a duplicate of an ended run
(telling its flow again), dead-letter a poison run, or drop one taken over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskq.app import App
from taskq.broker import Entry, delay_mark
from taskq.concurrency import wait_ms as conc_wait_ms
from taskq.delivery import Delivery
from taskq.errors import MessageError, UnknownTaskError
from taskq.flows.deadline import limit_of, time_left
from taskq.flows.flow import Flow
from taskq.flows.resume import notify_dead, renotify
from taskq.message import Message, decode_message, encode_message, peek_run_id
from taskq.partitions import logical_queue
from taskq.protocol import RECORD_TASK_MAX_BYTES, EntryField, MetaKey, ParkReply, StartKind

if TYPE_CHECKING:
    from taskq.metrics import Metrics

# The engine's logger: what a worker logs about a run stays under one name.
log = logging.getLogger("taskq.engine")

#: Task names this process has warned about (a rolling deploy): one warning each.
_warned_unknown: set[str] = set()

#: Kinds whose delivery now holds an attempt (or resumes a flow) and must run.
_RUNS = frozenset({StartKind.STARTED, StartKind.RESUMED, StartKind.RETRYING, StartKind.RECOVERED})

_PAYLOAD, _RUN = EntryField.PAYLOAD.encode(), EntryField.RUN.encode()


#: How late (ms) a run may come back to the rate-limit slot it was given and still have it
#: (a mover delayed, a worker down); later, it is given a new one. A retry carries the slot
#: of its first start too: that slot is long past by then, so the retry is checked again.
RATE_SLOT_LATE_MS = 5_000


def _held_slot(d: Delivery) -> int:
    """The rate-limit slot ``d`` was given when it was deferred (server ms; 0: none)."""
    slot = d.message.meta.get(MetaKey.RATE_SLOT)
    return slot if isinstance(slot, int) and slot > 0 else 0


class Admission:
    """Decodes, checks and starts the entries a worker read.

    Args:
        app: The app whose registry names the runnable tasks.
        worker_id: Recorded on every run this admits.
    """

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.broker = app.broker
        self.worker_id = worker_id
        #: Set by a burst worker: the delay-queue members it handed back for another
        #: worker, per queue (it does not wait for those to come due).
        self.parked: dict[str, set[bytes]] | None = None
        #: The worker's metrics (None: off; see :mod:`taskq.metrics`).
        self.metrics: Metrics | None = None

    def admit(self, entries: Sequence[Entry], fresh: bool = True) -> list[Delivery]:
        """Decode a batch, dead-letter what cannot run, start the rest in one call per queue.

        ``fresh`` entries come from ``XREADGROUP >`` (first deliveries, so their
        delivery count is not looked up); reclaimed ones are checked against
        ``max_deliveries``. Returns the deliveries that now hold an attempt (or
        resume a flow) and must run.
        """
        by_lane: dict[tuple[str, int], list[Delivery]] = {}
        for queue, eid, fields, level in entries:
            d = self._decode(queue, eid, fields, level)
            if d is not None:
                by_lane.setdefault((queue, level), []).append(d)
        admitted: list[Delivery] = []
        for (queue, level), batch in by_lane.items():
            if any(d.task.options.rate is not None for d in batch):
                batch = self._rate_limit(batch)
            if any(d.task.options.concurrency is not None for d in batch):
                batch = self._take_slots(batch)
            if batch:
                admitted.extend(self._start(queue, level, batch, fresh))
        return admitted

    def _take_slots(self, batch: list[Delivery]) -> list[Delivery]:
        """The deliveries of ``batch`` that may start now: each of a limited task with a
        concurrency slot of its key; the others wait in the delay queue a little (see
        :mod:`taskq.concurrency`)."""
        now: list[Delivery] = []
        asking: dict[tuple[str, str], list[Delivery]] = {}
        for d in batch:
            conc = d.task.options.concurrency
            if conc is None:
                now.append(d)
            else:
                bucket = conc.bucket(d)
                home = self.app.spread.pick(logical_queue(d.queue), bucket)
                asking.setdefault((home, bucket), []).append(d)
        lease_ms = round(self.app.settings.lease_seconds * 1000)
        for (home, bucket), ds in asking.items():
            conc = ds[0].task.options.concurrency
            assert conc is not None
            got = self.broker.control.take_slots(
                home, bucket, conc.limit, lease_ms, [d.run_id for d in ds]
            )
            for d, ok in zip(ds, got, strict=True):
                if ok:
                    d.conc_slot = (home, bucket)
                    now.append(d)
                else:
                    tries = d.message.meta.get(MetaKey.CONC_WAITS, 0)
                    tries = tries if isinstance(tries, int) else 0
                    wait = conc_wait_ms(tries, self.app.settings.lease_seconds)
                    more = {MetaKey.CONC_WAITS.value: tries + 1}
                    self._defer(d, wait, None, more, "concurrency limit")
        return now

    def _rate_limit(self, batch: list[Delivery]) -> list[Delivery]:
        """The deliveries of ``batch`` that may start now; the others, whose rate-limit
        slot is later, go back to the delay queue due at it (see :mod:`taskq.ratelimits`)."""
        now: list[Delivery] = []
        asking: dict[str, list[Delivery]] = {}
        for d in batch:
            rate = d.task.options.rate
            if rate is None:
                now.append(d)
            else:
                asking.setdefault(rate.bucket(d), []).append(d)
        for bucket, ds in asking.items():
            rate = ds[0].task.options.rate
            assert rate is not None
            home = self.app.spread.pick(logical_queue(ds[0].queue), bucket)
            held = [_held_slot(d) for d in ds]
            at, waits = self.broker.control.rate_slots(
                home, bucket, rate.interval_ms, held, RATE_SLOT_LATE_MS
            )
            for d, wait in zip(ds, waits, strict=True):
                if wait <= 0:
                    now.append(d)
                else:
                    self._defer(d, wait, at + wait)
        return now

    def _defer(
        self,
        d: Delivery,
        wait_ms: int,
        slot_ms: int | None,
        more: dict[str, Any] | None = None,
        why: str = "rate limit",
    ) -> None:
        """Put ``d`` back in the delay queue for ``wait_ms``, carrying its rate-limit slot
        (if any) and the fields of ``more`` in its meta."""
        meta = dict(d.message.meta)
        if slot_ms is not None:
            meta[MetaKey.RATE_SLOT.value] = slot_ms
        meta.update(more or {})
        msg = Message(d.run_id, d.message.task, d.message.args, d.message.kwargs, meta)
        payload = self.broker.signer.sign(encode_message(msg, self.broker.limits))
        got = self.broker.consumer.defer(
            d.queue, d.entry_id, d.run_id, wait_ms, payload, d.level, why
        )
        if got == 2:
            log.warning("run %s is running: its stale delivery was left alone", d.run_id)

    def _start(self, queue: str, level: int, batch: list[Delivery], fresh: bool) -> list[Delivery]:
        """Start one stream's batch (``start.lua``); the deliveries that must run."""
        started, now_ms, dues = self.broker.consumer.start_timed(
            queue,
            self.worker_id,
            [
                (
                    d.entry_id,
                    d.run_id,
                    0 if fresh else d.task.options.max_deliveries,
                    str(d.message.meta.get(MetaKey.NAME, "")),
                )
                for d in batch
            ],
            level,
            [_recorded_task(d.message.task) for d in batch],
        )
        if self.metrics is not None:
            self.metrics.started(batch, started, now_ms, dues)
        runs, duplicates = [], []
        for d, (kind, attempt, deliveries) in zip(batch, started, strict=True):
            if kind not in _RUNS and d.conc_slot is not None:  # not started: give it back
                self.broker.control.release_slot(*d.conc_slot, d.run_id)
                d.conc_slot = None
            d.attempt = attempt
            d.resumed, d.retry_start = kind is StartKind.RESUMED, kind is StartKind.RETRYING
            d.recovered = kind is StartKind.RECOVERED
            if d.resumed and isinstance(d.task, Flow) and (limit := limit_of(d)) is not None:
                # Its limit covers the whole attempt: what is left of it (one read).
                d.time_left = time_left(self.broker, d, limit)
            if kind in _RUNS:
                runs.append(d)
            elif kind is StartKind.LOST:
                log.warning("run %s: delivery %s was taken over; dropped", d.run_id, d.entry_id)
            elif kind is StartKind.POISON:
                self._poison(d, attempt, deliveries)
            else:
                log.info("run %s ended or runs from another entry; this one dropped", d.run_id)
                renotify(self.broker, d)
                duplicates.append(d.entry_id)
        if duplicates:
            self.broker.consumer.ack(queue, duplicates, level)
        return runs

    def _poison(self, d: Delivery, attempt: int, deliveries: int) -> None:
        """Dead-letter a run delivered more than ``max_deliveries`` times."""
        reason = (
            f"delivered {deliveries} times, more than max_deliveries="
            f"{d.task.options.max_deliveries} (the task may crash its worker)"
        )
        notify_dead(self.broker, d.message, reason, attempt)
        fields = {_PAYLOAD: d.payload, _RUN: d.run_id.encode()}
        self._dead(d.queue, d.entry_id, fields, reason, d.run_id, d.level, "max_deliveries")

    def _decode(
        self, queue: str, eid: bytes, fields: dict[bytes, bytes], level: int
    ) -> Delivery | None:
        payload = fields.get(_PAYLOAD)
        if payload is None:
            reason = f"entry has no '{EntryField.PAYLOAD}' payload field"
            self._dead(queue, eid, fields, reason, self._entry_run_id(fields), level, "malformed")
            return None
        limits = self.broker.limits
        oversize = len(payload) > limits.max_bytes + 64
        try:
            if oversize:  # before the MAC is computed
                size, limit = len(payload), limits.max_bytes
                raise MessageError(f"payload of {size} bytes exceeds the {limit} byte limit")
            body = self.broker.signer.verify(payload)
        except MessageError as exc:
            why = "malformed" if oversize else "signature"
            self._dead(queue, eid, fields, str(exc), self._entry_run_id(fields), level, why)
            return None
        try:
            msg = decode_message(body, limits)
        except MessageError as exc:
            # A trusted payload that breaks a limit: its run fails, so nobody waits for it.
            rid = peek_run_id(body) or self._entry_run_id(fields, trusted=True)
            self._dead(queue, eid, fields, str(exc), rid, level, "malformed")
            return None
        try:
            task = self.app.get_task(msg.task)
        except UnknownTaskError as exc:
            self._unknown_task(queue, eid, fields, msg, str(exc), level)
            return None
        return Delivery(queue, eid, payload, msg, task, level=level)

    def _unknown_task(
        self,
        queue: str,
        eid: bytes,
        fields: dict[bytes, bytes],
        msg: Message,
        reason: str,
        level: int,
    ) -> None:
        """A run of a task this worker does not know: in a rolling deploy a newer worker
        may know it, so hand it back (``park.lua``) until ``unknown_task_grace`` is
        spent; then, or when the run has no record, dead-letter it with the reason."""
        payload = fields[_PAYLOAD]
        grace = self.app.settings.unknown_task_grace
        if grace > 0:
            code, waited = self.broker.consumer.park(
                queue, self.worker_id, eid, msg.run_id, payload, level
            )
            if code == ParkReply.PARKED:
                if msg.task not in _warned_unknown:
                    _warned_unknown.add(msg.task)
                    log.warning(
                        "%s: handing its runs back for a worker that knows it "
                        "(for up to unknown_task_grace=%g s each)",
                        reason,
                        grace,
                    )
                if self.parked is not None:
                    self.parked.setdefault(queue, set()).add(delay_mark(level) + payload)
                return
            if code != ParkReply.EXPIRED:
                return  # ended (its duplicate acked), or no longer ours
            if waited >= 0:
                reason += f" (waited {waited / 1000:.0f} s for a worker that knows it)"
        notify_dead(self.broker, msg, reason)
        self._dead(queue, eid, fields, reason, msg.run_id, level, "unknown_task")

    def _entry_run_id(self, fields: dict[bytes, bytes], trusted: bool = False) -> str | None:
        """The entry's run id field: always when nothing is signed here, else only beside
        a payload that verified (``trusted``). That field is outside the MAC: an unsigned,
        tampered or foreign entry could name any run, so its run is left alone."""
        raw = fields.get(_RUN)
        if raw is None or not (trusted or not self.broker.signer.enabled):
            return None
        if not 0 < len(raw) <= 256:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _dead(
        self,
        queue: str,
        eid: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        run_id: str | None = None,
        level: int = 0,
        why: str = "malformed",
    ) -> None:
        """Dead-letter an entry; ``why`` is its reason's class (a metrics label:
        :data:`taskq.metrics.DEAD_REASONS`)."""
        log.warning("dead-lettering entry %s on queue %s: %s", eid.decode(), queue, reason)
        self.broker.consumer.dead_letter(queue, eid, fields, reason, run_id, level)
        if self.metrics is not None:
            self.metrics.dead_letter(queue, why)


def _recorded_task(name: str) -> str:
    """The task name ``start.lua`` records on the run: none when longer than
    ``RECORD_TASK_MAX_BYTES`` (it would make the record a big hash table)."""
    return name if len(name.encode()) <= RECORD_TASK_MAX_BYTES else ""
