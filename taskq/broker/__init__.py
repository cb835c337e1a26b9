"""The broker: every state transition of a run, one Lua script call each.

Connections, raw commands and error translation live in :mod:`taskq.broker_core`;
flow calls in :mod:`taskq.broker_flows`; delay-queue calls in :mod:`taskq.broker_delay`;
read-only inspection in
:mod:`taskq.broker_inspect`; waiting for results in :mod:`taskq.broker_results`.
Everything above these modules sees
:class:`~taskq.errors.RedisUnavailableError` and :class:`~taskq.errors.BrokerError`,
never a redis-py exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

from taskq import scripts
from taskq.broker.connection import Entry, Subscription, _fields, _is_noscript, _s
from taskq.broker.delay import DelayCalls, delay_mark
from taskq.broker.flows import FlowCalls
from taskq.broker.inspection import Inspection
from taskq.broker.results import Results
from taskq.keys import GROUP, LEVELS_SERVED
from taskq.message import Limits

__all__ = ["ENQUEUE_BATCH", "Broker", "Entry", "Subscription", "delay_mark"]

#: Runs per enqueue script call; bigger batches go out as one pipeline of calls.
ENQUEUE_BATCH = 500


class Broker(FlowCalls, Inspection, Results, DelayCalls):
    """Redis access for one process: the transitions, on top of the core's plumbing."""

    @cached_property
    def limits(self) -> Limits:
        """The message limits of these settings: producers encode within them."""
        s = self.settings
        return Limits(s.max_message_bytes, s.max_depth, s.max_args)

    # -- producer side ------------------------------------------------------------------

    def enqueue(
        self, queue: str, runs: Sequence[tuple[str, bytes, str]], level: int = 0
    ) -> list[int]:
        """Enqueue ``(run_id, payload, due)`` triples; per run 1 if added, 0 if already known.

        ``due`` is ``''`` (now), ``'d<ms>'`` (after a delay, server clock) or
        ``'a<ms>'`` (absolute Unix ms). Batches of ``ENQUEUE_BATCH`` runs go in one
        script call each, and all the calls in one round trip. ``level`` is the runs'
        priority (0-9).
        """
        k = self.keys
        head = [k.stream(queue, level), k.events(queue), k.delayed(queue)]
        fixed: list[Any] = [self.settings.events_maxlen, k.wake_channel(queue), delay_mark(level)]
        calls = []
        for i in range(0, len(runs), ENQUEUE_BATCH):
            chunk = runs[i : i + ENQUEUE_BATCH]
            args = list(fixed)
            for rid, payload, due in chunk:
                args += (rid, self.signer.sign(payload), due)
            calls.append((head + [k.run(queue, rid) for rid, _, _ in chunk], args))
        out: list[int] = []
        for reply in self.call_many(scripts.ENQUEUE, calls):
            out.extend(reply)
        return out

    def enqueue_stream(
        self, queue: str, runs: Iterable[tuple[str, bytes, str]], level: int = 0
    ) -> list[int]:
        """Like :meth:`enqueue`, but each batch is sent as soon as it is built.

        Redis runs batch *k* while the caller builds batch *k+1*; every reply is
        read at the end (one wait instead of one per batch).
        """
        conn = self._wire()
        if conn is None:
            return self.enqueue(queue, list(runs), level)
        k = self.keys
        head = [k.stream(queue, level), k.events(queue), k.delayed(queue)]
        fixed: list[Any] = [self.settings.events_maxlen, k.wake_channel(queue), delay_mark(level)]
        commands: list[tuple[Any, ...]] = []
        batch: list[tuple[str, bytes, str]] = []

        sign = self.signer.sign

        def flush() -> None:
            args = list(fixed)
            for rid, payload, due in batch:
                args += (rid, sign(payload), due)
            keys = head + [k.run(queue, rid) for rid, _, _ in batch]
            cmd = self._evalsha(scripts.ENQUEUE, keys, args)
            commands.append(cmd)
            with self.translate():
                conn.send([cmd])
            batch.clear()

        for run in runs:
            batch.append(run)
            if len(batch) == ENQUEUE_BATCH:
                flush()
        if batch:
            flush()
        with self.translate():
            replies = conn.receive(len(commands))
        if any(_is_noscript(r) for r in replies):
            self.execute("SCRIPT", "LOAD", scripts.load(scripts.ENQUEUE).source)
            redo = [i for i, r in enumerate(replies) if _is_noscript(r)]
            for i, reply in zip(redo, self.send([commands[i] for i in redo]), strict=True):
                replies[i] = reply
        out: list[int] = []
        for reply in replies:
            if isinstance(reply, Exception):
                with self.translate():
                    raise reply
            out.extend(reply)
        return out

    def retry(
        self,
        queue: str,
        entry_id: bytes,
        run_id: str,
        attempt: int,
        delay: float,
        payload: bytes,
        error: tuple[str, str],
        deadline: float | None,
        level: int = 0,
    ) -> int:
        """Ack a failed attempt and schedule the next one ``delay`` seconds from now.

        The next attempt keeps the priority ``level`` the delivery came with.

        Returns:
            1 scheduled; 0 fenced off (the attempt no longer holds the run);
            2 refused because the retry would come due after ``deadline``.
        """
        k = self.keys
        keys = [k.stream(queue, level), k.events(queue), k.delayed(queue), k.run(queue, run_id)]
        args = [
            GROUP,
            self.settings.events_maxlen,
            entry_id,
            run_id,
            attempt,
            round(delay * 1000),
            delay_mark(level) + payload,
            error[0],
            error[1][:1000],
            -1 if deadline is None else int(deadline * 1000),
            k.wake_channel(queue),
        ]
        return int(self.call(scripts.RETRY, keys, args))

    def run_record(self, queue: str, run_id: str) -> dict[str, str]:
        """The run's state record as text (empty when unknown or expired)."""
        flat = self.execute("HGETALL", self.keys.run(queue, run_id))
        record = {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        record.pop("p", None)  # a suspended flow's payload: binary, internal
        return {f: v.decode(errors="replace") for f, v in record.items()}

    # -- worker side --------------------------------------------------------------------

    def ensure_group(self, queue: str, again: bool = False) -> None:
        """Create the consumer group (and stream) of each of the queue's priority levels.

        Created at id 0, so runs enqueued before any worker existed are delivered.
        ``again``: forget that they were made (Redis lost them) and make them anew.
        """
        if again:
            self._groups.discard(queue)
        if queue in self._groups:
            return
        # One script (groups.lua), which may run on a full Redis: XGROUP CREATE alone may not.
        self.call(scripts.GROUPS, list(self.keys.streams(queue)), [GROUP])
        self._groups.add(queue)

    def read(
        self, queues: Sequence[str], consumer: str, count: int, block: float | None
    ) -> list[Entry]:
        """New deliveries for ``consumer`` from ``queues``, highest priority first.

        First one ``fetch`` script call takes up to ``count`` entries, priority 9 of
        every queue first, then 8, and so on (strict priority, FIFO within a level).
        When that finds nothing and ``block`` is given, one XREADGROUP blocks on
        every priority stream at once for up to ``block`` seconds. On Redis >= 7.2
        that read may return up to ``count`` entries from *each* stream that
        received some; the caller gives back what it has no slot for
        (:meth:`release`).

        Args:
            block: Seconds to block when nothing is ready; None returns at once.
        """
        lanes, names = self._lanes(queues)
        out = self._fetched(lanes, self.call(scripts.FETCH, names, [GROUP, consumer, count]))
        if out or block is None:
            return out
        by_name = dict(zip(names, lanes, strict=True))
        cmd: list[Any] = ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count]
        cmd += ["BLOCK", max(1, int(block * 1000)), "STREAMS", *names, *([">"] * len(names))]
        for stream, entries in self.execute(*cmd) or ():
            q, level = by_name[_s(stream)]
            out += [(q, eid, _fields(fields), level) for eid, fields in entries]
        out.sort(key=lambda e: -e[3])
        return out

    def _lanes(self, queues: Sequence[str]) -> tuple[list[tuple[str, int]], list[str]]:
        """``(queue, level)`` in the order they are served, and their stream keys."""
        lanes = [(q, level) for level in LEVELS_SERVED for q in queues]
        return lanes, [self.keys.stream(q, level) for q, level in lanes]

    @staticmethod
    def _fetched(lanes: Sequence[tuple[str, int]], flat: Sequence[Any]) -> list[Entry]:
        """Entries from a ``fetch`` script reply."""
        out: list[Entry] = []
        for i in range(0, len(flat), 3):
            q, level = lanes[int(flat[i]) - 1]
            out.append((q, flat[i + 1], _fields(flat[i + 2]), level))
        return out

    def release(self, consumer: str, entries: Sequence[Entry]) -> int:
        """Give back unstarted deliveries this consumer read but cannot run now.

        Each goes, untouched, to the end of its stream (``release.lua``).
        """
        by_lane: dict[tuple[str, int], list[bytes]] = {}
        for q, eid, _, level in entries:
            by_lane.setdefault((q, level), []).append(eid)
        calls = [
            ([self.keys.stream(q, level)], [GROUP, consumer, *ids])
            for (q, level), ids in by_lane.items()
        ]
        return sum(int(n) for n in self.call_many(scripts.RELEASE, calls))

    def start(
        self,
        queue: str,
        worker: str,
        deliveries: Sequence[tuple[bytes, str, int, str]],
        level: int = 0,
    ) -> list[tuple[int, int, int]]:
        """Start ``(entry_id, run_id, max_deliveries, run_name)`` deliveries in one script call.

        Returns:
            Per delivery ``(kind, attempt, deliveries)``; kind 1 started, 2 resumed,
            0 duplicate of an ended run, 3 poison (see ``scripts/start.lua``).
        """
        k = self.keys
        keys = [k.stream(queue, level), k.events(queue)]
        keys += [k.run(queue, d[1]) for d in deliveries]
        args: list[Any] = [GROUP, self.settings.events_maxlen, worker]
        for eid, rid, maxdel, name in deliveries:
            args += (eid, rid, maxdel, name)
        flat = self.call(scripts.START, keys, args)
        return [(int(flat[i]), int(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]

    def ack(self, queue: str, entry_ids: Sequence[bytes], level: int = 0) -> None:
        """Ack and delete deliveries (idempotent)."""
        stream = self.keys.stream(queue, level)
        for reply in self.send([("XACK", stream, GROUP, *entry_ids), ("XDEL", stream, *entry_ids)]):
            if isinstance(reply, Exception):
                with self.translate():
                    raise reply

    def handback(
        self,
        queue: str,
        consumer: str,
        deliveries: Sequence[tuple[bytes, str, int, bytes]],
        reason: str,
        level: int = 0,
    ) -> int:
        """Return ``(entry_id, run_id, attempt, payload)`` deliveries for immediate redelivery."""
        if not deliveries:
            return 0
        k = self.keys
        keys = [k.stream(queue, level), k.events(queue)] + [
            k.run(queue, rid) for _, rid, _, _ in deliveries
        ]
        args: list[Any] = [GROUP, self.settings.events_maxlen, consumer, reason]
        for eid, rid, attempt, payload in deliveries:
            args += (eid, rid, attempt, payload)
        return int(self.call(scripts.HANDBACK, keys, args))

    def renew(
        self, queue: str, consumer: str, entry_ids: Sequence[bytes], level: int = 0
    ) -> list[bytes]:
        """Extend this consumer's leases; return the ids it no longer holds."""
        if not entry_ids:
            return []
        stream = self.keys.stream(queue, level)
        lost = self.call(scripts.RENEW, [stream], [GROUP, consumer, *entry_ids])
        return list(lost)

    def reclaim(self, queue: str, consumer: str, min_idle: float, count: int) -> list[Entry]:
        """Take over deliveries idle longer than ``min_idle`` seconds (expired leases).

        One pipelined round trip asks every priority stream of the queue whether it
        has a delivery idle that long (``XPENDING ... IDLE``); only those streams are
        then reclaimed, highest level first, with XAUTOCLAIM looped until its cursor
        returns to 0-0 or ``count`` entries are claimed. Entries deleted meanwhile
        are dropped from the pending list by Redis.
        """
        idle = max(1, int(min_idle * 1000))
        streams = [(level, self.keys.stream(queue, level)) for level in LEVELS_SERVED]
        probes = self.send([("XPENDING", s, GROUP, "IDLE", idle, "-", "+", 1) for _, s in streams])
        out: list[Entry] = []
        for (level, stream), probe in zip(streams, probes, strict=True):
            if isinstance(probe, Exception):
                if "NOGROUP" in str(probe):  # no worker made this level's group yet
                    continue
                with self.translate():
                    raise probe
            cursor: Any = "0-0"
            while probe and len(out) < count:
                cursor, claimed, _deleted = self.execute(
                    "XAUTOCLAIM", stream, GROUP, consumer, idle, cursor, "COUNT", count - len(out)
                )
                out += [(queue, eid, _fields(f), level) for eid, f in claimed if f is not None]
                if cursor in (b"0-0", "0-0"):
                    break
        return out

    def finish_args(
        self,
        queue: str,
        entry_id: bytes,
        run_id: str,
        attempt: int,
        state: str,
        outcome: bytes,
        error: tuple[str, str] | None = None,
        ttl: float | None = None,
        ack: bool = True,
        cache: tuple[str, float | None] | None = None,
        flow: tuple[str, int] | None = None,
        level: int = 0,
    ) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV of a ``finish`` script call (see :meth:`finish`).

        Records a final outcome and acks, fenced by ``attempt``.

        ``ack=False`` leaves the delivery pending (a flow child, acked after its
        flow is notified). ``cache=(key, expiration)`` also stores a Completed
        outcome under that cache key and releases the key's lock. ``flow``: ``(id,
        priority level)`` of the flow this run is a child of, when that flow is on the
        same queue; it is notified in the same script. ``level``: the delivery's
        priority level."""
        k = self.keys
        keys = [k.stream(queue, level), k.events(queue), k.run(queue, run_id)]
        keys.append(k.result(queue, run_id))
        etype, emsg = error or ("", "")
        args = [
            GROUP,
            self.settings.events_maxlen,
            entry_id,
            run_id,
            attempt,
            state,
            outcome,
            self._ttl_ms(ttl),
            etype,
            emsg[:1000],
            "" if ack else "1",
        ]
        if cache is not None:
            keys += [k.cache(queue, cache[0]), k.cache_lock(queue, cache[0])]
            args.append(-1 if cache[1] is None else int(cache[1] * 1000))
        else:
            args.append("")
        if flow is not None:  # a child of a flow on this queue: notify it in this call
            fid, flow_level = flow
            keys += [
                k.stream(queue, flow_level),
                k.run(queue, fid),
                k.flow_results(queue, fid),
                k.flow_order(queue, fid),
                k.flow_wait(queue, fid),
                k.flow_ping(queue, fid),
            ]
            args += ["flow", fid]
        return keys, args

    def finish(
        self,
        queue: str,
        entry_id: bytes,
        run_id: str,
        attempt: int,
        state: str,
        outcome: bytes,
        error: tuple[str, str] | None = None,
        ttl: float | None = None,
        ack: bool = True,
        cache: tuple[str, float | None] | None = None,
        flow: tuple[str, int] | None = None,
        level: int = 0,
    ) -> bool:
        """Record a final outcome and ack, fenced by ``attempt``; False if fenced off.

        The arguments are those of :meth:`finish_args`.
        """
        call = self.finish_args(
            queue, entry_id, run_id, attempt, state, outcome, error, ttl, ack, cache, flow, level
        )
        return bool(self.call(scripts.FINISH, *call))

    def finish_and_read(
        self,
        finishes: Sequence[tuple[Sequence[str], Sequence[Any]]],
        queues: Sequence[str],
        consumer: str,
        count: int,
    ) -> tuple[list[bool | Exception], list[Entry]]:
        """Run ``finish`` calls (from :meth:`finish_args`) and a non-blocking fetch of up
        to ``count`` new deliveries, all in one round trip.

        Returns:
            Per finish True (recorded), False (fenced off) or the error it raised; and
            the deliveries read, as :meth:`read` returns them.
        """
        lanes, names = self._lanes(queues)
        calls = [(scripts.FINISH, k, a) for k, a in finishes]
        calls.append((scripts.FETCH, names, [GROUP, consumer, count]))
        replies = self.call_mixed(calls)
        *done, fetched = replies
        if isinstance(fetched, Exception):
            with self.translate():
                raise fetched
        results = [r if isinstance(r, Exception) else bool(r) for r in done]
        return results, self._fetched(lanes, fetched)

    def cache_get(self, queue: str, key: str) -> bytes | None:
        """The cached outcome under ``key``, if any."""
        value: bytes | None = self.execute("GET", self.keys.cache(queue, key))
        return value

    def cache_lock(self, queue: str, key: str, run_id: str, ttl: float) -> str | None:
        """Take the key's lock for ``run_id``; None if taken, else the holder's run id."""
        lock = self.keys.cache_lock(queue, key)
        got = self.send([("SET", lock, run_id, "NX", "PX", int(ttl * 1000)), ("GET", lock)])
        if got[0] is not None and not isinstance(got[0], Exception):
            return None
        holder = got[1]
        return None if holder is None else _s(holder)

    def dead_letter(
        self,
        queue: str,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        run_id: str | None = None,
        level: int = 0,
    ) -> None:
        """Copy a delivery to the dead-letter stream with ``reason``, then ack and delete it.

        A ``run_id`` run that has not ended ends Failed (``DeadLettered``), its outcome
        reporting the attempts its record counts (built in ``dead.lua``)."""
        k = self.keys
        keys = [k.stream(queue, level), k.dead(queue), k.events(queue)]
        if run_id:
            keys += [k.run(queue, run_id), k.result(queue, run_id)]
        args: list[Any] = [
            GROUP,
            self.settings.events_maxlen,
            entry_id,
            reason,
            run_id or "",
            self._ttl_ms(None),
        ]
        for f, v in fields.items():
            args += (f, v)
        self.call(scripts.DEAD, keys, args)
