"""The producer's role: enqueue runs, read their records, wait for their results."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

from taskq import scripts
from taskq.backoff import Backoff
from taskq.broker import topology
from taskq.broker.connection import Connection, fields_of, now, text
from taskq.broker.delay import delay_mark
from taskq.errors import RedisFullError, RedisUnavailableError
from taskq.partitions import logical_queue
from taskq.protocol import EVENT_RUN_SEP, FINAL, EventField, RecordField
from taskq.signing import Signer

log = logging.getLogger("taskq.producer")

T = TypeVar("T")

#: Runs per enqueue script call; bigger batches go out as one pipeline of calls.
ENQUEUE_BATCH = 500

#: Event fields read by :meth:`Producer.wait_any`, as the stream entries spell them.
_EVENT_RUN, _EVENT_STATE = EventField.RUN.encode(), EventField.STATE.encode()


class Producer:
    """Enqueueing and result waits (blocking reads, never polled on a timer).

    Args:
        conn: The connection layer.
        signer: Signs every payload enqueued.
    """

    def __init__(self, conn: Connection, signer: Signer) -> None:
        self.conn = conn
        self.keys = conn.keys
        self.settings = conn.settings
        self.signer = signer

    def enqueue(
        self,
        queue: str,
        runs: Sequence[tuple[str, bytes, str]],
        level: int = 0,
        task: str = "",
    ) -> list[int]:
        """Enqueue ``(run_id, payload, due)`` triples; per run an ``EnqueueReply`` code
        (1 ADDED, 0 KNOWN: already known).

        ``due`` is ``''`` (now), ``'d<ms>'`` (after a delay, server clock) or
        ``'a<ms>'`` (absolute Unix ms). Batches of ``ENQUEUE_BATCH`` runs go in one
        script call each, and all the calls in one round trip. ``level`` is the runs'
        priority (0-9); ``task`` the task they all run, named on their Pending /
        Scheduled events (every enqueue call is of one task).
        """
        return self._send(list(self._enqueue_calls(queue, runs, level, task)))

    def enqueue_once(
        self,
        queue: str,
        key: str,
        run: tuple[str, bytes, str],
        ttl: float,
        level: int = 0,
        task: str = "",
    ) -> str:
        """Enqueue one ``(run_id, payload, due)`` under an idempotency key held ``ttl``
        seconds (``enqueue.lua``, atomically): the id of the run that holds the key, this
        one's, or the first one's if another run took it within ``ttl`` (then nothing
        is enqueued)."""
        [(keys, args)] = list(self._enqueue_calls(queue, [run], level, task))
        keys.append(self.keys.idempotency(queue, key))
        args.append(max(1, round(ttl * 1000)))
        [reply] = self._send([(keys, args)])
        return text(reply) if isinstance(reply, bytes) else run[0]

    def _send(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """The enqueue calls in one round trip, then ``WAIT`` for the replicas (once per
        queue written) when ``wait_replicas`` asks, retried through a failover."""

        def send() -> list[Any]:
            replies = self.conn.call_many(scripts.ENQUEUE, calls)
            if self.settings.wait_replicas:
                for stream in dict.fromkeys(keys[0] for keys, _ in calls):
                    self._wait_replicas(stream)
            return replies

        return [n for reply in self._through_failover(send) for n in reply]

    def _wait_replicas(self, key: str) -> None:
        """Block until ``wait_replicas`` replicas hold what this connection wrote to
        ``key``'s server (Redis ``WAIT``), or raise."""
        s = self.settings
        wanted, limit = s.wait_replicas, s.wait_replicas_timeout
        got = int(self.conn.wait_replicas(key, wanted, limit))
        if got < wanted:
            raise RedisUnavailableError(
                f"only {got} of {wanted} replica(s) of Redis at {self.conn.url} acknowledged "
                f"the submit within {limit:g} s (wait_replicas)"
            )

    def enqueue_stream(
        self,
        queue: str,
        runs: Iterable[tuple[str, bytes, str]],
        level: int = 0,
        task: str = "",
    ) -> list[int]:
        """Like :meth:`enqueue`, but each batch is sent as soon as it is built.

        Redis runs batch *k* while the caller builds batch *k+1*; every reply is
        read at the end (one wait instead of one per batch).
        """
        if self.conn.topology.kind != topology.SINGLE or self.settings.wait_replicas:
            return self.enqueue(queue, list(runs), level, task)  # retried whole on a failover
        calls = self._enqueue_calls(queue, runs, level, task)
        return [n for reply in self.conn.call_stream(scripts.ENQUEUE, calls) for n in reply]

    def _through_failover(self, send: Callable[[], T]) -> T:
        """``send()``, retried on Cluster or Sentinel while Redis is unavailable, for up
        to ``failover_timeout`` seconds. Only for calls safe to repeat: an enqueue (each
        run's record is created once, so a repeated call adds nothing twice) and a
        result wait (it moves the one-element result list onto itself)."""
        limit = self.settings.failover_timeout
        if self.conn.topology.kind == topology.SINGLE or limit <= 0:
            return send()
        deadline = now() + limit
        backoff = Backoff(0.05, 1.0)
        while True:
            try:
                return send()
            except RedisUnavailableError as exc:
                delay = backoff.next()
                if now() + delay > deadline:
                    raise
                log.warning("%s; retrying in %.2f s (a failover?)", exc, delay)
                time.sleep(delay)

    def enqueue_parts(
        self,
        parts: Iterable[tuple[str, Sequence[tuple[str, bytes, str]]]],
        level: int = 0,
        task: str = "",
    ) -> list[int]:
        """:meth:`enqueue_stream` of runs split over several queues (a partitioned queue's
        partitions): ``(queue, runs)`` pairs, one bulk call per ``ENQUEUE_BATCH`` runs of
        each queue (each call's keys are of one queue), all sent as one stream of calls.

        Returns:
            Per run an ``EnqueueReply`` code, in the order of ``parts``.
        """
        calls = itertools.chain.from_iterable(
            self._enqueue_calls(queue, runs, level, task) for queue, runs in parts
        )
        if self.conn.topology.kind != topology.SINGLE or self.settings.wait_replicas:
            return self._send(list(calls))  # retried whole through a failover
        return [n for reply in self.conn.call_stream(scripts.ENQUEUE, calls) for n in reply]

    def _enqueue_calls(
        self, queue: str, runs: Iterable[tuple[str, bytes, str]], level: int, task: str
    ) -> Iterator[tuple[list[str], list[Any]]]:
        """The ``enqueue`` script calls for ``runs`` (all of ``task``), one per
        ``ENQUEUE_BATCH``, built lazily."""
        k = self.keys
        head = [k.stream(queue, level), k.events(queue), k.delayed(queue)]
        fixed: list[Any] = [
            self.settings.events_maxlen,
            k.wake_channel(queue),
            delay_mark(level),
            task,
        ]
        sign = self.signer.sign
        it = iter(runs)
        while chunk := list(itertools.islice(it, ENQUEUE_BATCH)):
            args = list(fixed)
            for rid, payload, due in chunk:
                args += (rid, sign(payload), due)
            yield head + [k.run(queue, rid) for rid, _, _ in chunk], args

    def run_record(self, queue: str, run_id: str) -> dict[str, str]:
        """The run's state record as text (empty when unknown or expired)."""
        flat = self.conn.execute("HGETALL", self.keys.run(queue, run_id))
        record = {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        record.pop(RecordField.PAYLOAD, None)  # a suspended flow's payload: binary, internal
        return {f: v.decode(errors="replace") for f, v in record.items()}

    def find_run(self, run_id: str, queue: str | None = None) -> str | None:
        """The queue holding ``run_id``'s record, found by SCAN (None if none does).

        ``queue``: only a record of that logical queue (itself or one of its partitions).
        """
        for key in self.conn.scan(self.keys.run_pattern(run_id)):
            found = self.keys.queue_of_run_key(key)
            if queue is None or logical_queue(found) == queue:
                return found
        return None

    def holder(self, queues: Sequence[str], run_id: str) -> str | None:
        """Which of ``queues`` holds ``run_id``'s record: one ``EXISTS`` per queue, all in
        one round trip (None: none does)."""
        replies = self.conn.send([("EXISTS", self.keys.run(q, run_id)) for q in queues])
        for queue, exists in zip(queues, replies, strict=True):
            if int(self.conn.check(exists)):
                return queue
        return None

    def wait_result(self, queue: str, run_id: str, timeout: float | None) -> bytes | None:
        """Block until the run's outcome exists (BLMOVE of the one-element list onto itself).

        Waits in slices no longer than ``block_seconds`` so a socket timeout never
        cuts a healthy wait; nothing is polled on a timer. While Redis is full
        (maxmemory, noeviction) it refuses BLMOVE, and the wait is :meth:`wait_any`'s
        read-only one instead.

        Returns:
            The outcome payload, or None when ``timeout`` ran out.
        """
        key = self.keys.result(queue, run_id)
        block = self.settings.block_seconds
        deadline = None if timeout is None else now() + timeout
        while True:
            left = block if deadline is None else min(block, deadline - now())
            if left <= 0:
                value: bytes | None = self.conn.execute("LINDEX", key, 0)
                return value
            command = ("BLMOVE", key, key, "LEFT", "LEFT", f"{max(left, 0.001):.3f}")
            try:
                value = self._through_failover(partial(self.conn.execute, *command))
            except RedisFullError:
                # A full Redis refuses BLMOVE (it may write); the read-only wait still works.
                self.wait_any(queue, [run_id], left)
                value = self.conn.execute("LINDEX", key, 0)
            if value is not None:
                return value

    def peek_results(self, queue: str, run_ids: Sequence[str]) -> list[bytes | None]:
        """Outcomes of many runs in one round trip (None for runs not finished)."""
        if not run_ids:
            return []
        replies = self.conn.send([("LINDEX", self.keys.result(queue, rid), 0) for rid in run_ids])
        return [None if isinstance(r, Exception) else r for r in replies]

    def wait_any(self, queue: str, run_ids: Sequence[str], timeout: float) -> str | None:
        """Block until one of the runs has an outcome; return its id (None on timeout).

        Read-only: nothing is written to a result key, so a waiter killed (or cut
        off) mid-wait cannot take a result from anyone, and every key keeps its TTL.
        The ``finish`` and ``dead`` scripts write a run's outcome and its final-state
        event in one script, so once such an event for a watched run is visible its
        result exists. The events stream's last id is read in the same round trip as,
        and before, the peek at the results; then XREAD blocks for events after it.
        The stream is capped, so the caller re-reads everything now and then
        (an event trimmed before it was read is covered by that).
        """
        if not run_ids:
            return None
        events = self.keys.events(queue)
        keys = {rid: self.keys.result(queue, rid) for rid in run_ids}
        head, *peeks = self.conn.send(
            [("XREVRANGE", events, "+", "-", "COUNT", 1)]
            + [("LINDEX", key, 0) for key in keys.values()]
        )
        for rid, raw in zip(keys, peeks, strict=True):
            if raw is not None and not isinstance(raw, Exception):
                return rid
        last = text(head[0][0]) if isinstance(head, list) and head else "0-0"
        deadline = now() + timeout
        while True:
            left = min(self.settings.block_seconds, deadline - now())
            if left <= 0:
                return None
            block = max(1, int(left * 1000))
            reply = self.conn.execute(
                "XREAD", "COUNT", 1000, "BLOCK", block, "STREAMS", events, last
            )
            ended: list[str] = []
            for _, entries in reply or ():
                for eid, flat in entries:
                    last = text(eid)
                    fields = fields_of(flat)
                    # A final state's event is written after the run's result list (same
                    # script); a batch entry names several runs.
                    if text(fields.get(_EVENT_STATE, b"")) in FINAL:
                        runs = text(fields.get(_EVENT_RUN, b"")).split(EVENT_RUN_SEP)
                        ended += [rid for rid in runs if rid in keys]
            if ended:
                for rid, raw in zip(ended, self.peek_results(queue, ended), strict=True):
                    if raw is not None:
                        return rid
