"""The consumer's role: fetch deliveries, start, finish, retry, renew, reclaim, hand
back, release, dead-letter and park them, and the task cache's calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskq import scripts
from taskq.broker import finishing
from taskq.broker.blocking import BlockingReads
from taskq.broker.connection import Connection, Entry, fields_of, text
from taskq.broker.delay import PARK_FIRST_MS, PARK_LONGEST_MS, delay_mark
from taskq.keys import GROUP, LEVELS_SERVED
from taskq.partitions import slot_of
from taskq.protocol import FLOW_CHILD, KEEP_PENDING, FinishReply, ParkReply, RetryReply, StartKind

#: ``start.lua``'s kind codes (Lua integers) to their names, without an enum call per run.
_START_KINDS = {kind.value: kind for kind in StartKind}
#: ``start.lua`` started no retry (the common batch): no list made for its due times.
_NO_DUES: tuple[int, ...] = ()


@dataclass(frozen=True)
class FinishCall:
    """One ``finish`` script call, made by :meth:`Consumer.finish_call`.

    The engine makes it and the worker may batch it with its next fetch; only this
    package reads its fields.

    Attributes:
        keys: The script's KEYS.
        args: The script's ARGV.
    """

    keys: tuple[str, ...]
    args: tuple[Any, ...]


class Consumer:
    """Script calls on a queue's streams for workers (each one transition).

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys
        self.settings = conn.settings
        self._made: set[str] = set()
        self._turn = 0
        self._blocking = BlockingReads(conn.execute)
        self._lanes_of: dict[tuple[str, ...], tuple[list[tuple[str, int]], list[str]]] = {}

    def ensure_group(self, queue: str, again: bool = False) -> None:
        """Create the consumer group (and stream) of each of the queue's priority levels.

        Created at id 0, so runs enqueued before any worker existed are delivered.
        ``again``: forget that they were made (Redis lost them) and make them anew.
        """
        if again:
            self._made.discard(queue)
        if queue in self._made:
            return
        # One script (groups.lua), which may run on a full Redis: XGROUP CREATE alone may not.
        self.conn.call(scripts.GROUPS, list(self.keys.streams(queue)), [GROUP])
        self._made.add(queue)

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

        On a Redis Cluster a script or a read can only name one slot's keys, so the
        queues are grouped by slot (queues whose names share a slot share a group):
        one ``fetch`` call per group, from a group that turns round robin, until
        ``count`` are taken (strict priority holds within a group), and one blocking
        read per group, each on a thread (:mod:`taskq.broker.blocking`).

        Args:
            block: Seconds to block when nothing is ready; None returns at once.
        """
        groups = self._groups(queues)
        out = self._collect()
        out += self._fetch(groups, consumer, count - len(out))
        if out or block is None:
            return out
        if len(groups) == 1:
            return self._entries([self.conn.execute(*_block(consumer, count, block, groups[0][1]))])
        cmds = {tuple(names): _block(consumer, count, block, names) for _, names in groups}
        return self._entries(self._blocking.wait(cmds, block))

    def stop_reading(self, consumer: str, timeout: float) -> int:
        """Give back what blocking reads still in flight take (Cluster only), waiting up
        to ``timeout`` seconds for them; how many entries were given back."""
        if not self._blocking:
            return 0
        entries = self._entries(self._blocking.drain(timeout))
        return self.release(consumer, entries) if entries else 0

    def _groups(self, queues: Sequence[str]) -> list[tuple[list[tuple[str, int]], list[str]]]:
        """The lanes (and stream keys) of ``queues`` per slot, the next group first."""
        if not self.conn.is_cluster:
            return [self._lanes(queues)]
        by_slot: dict[int, list[str]] = {}
        for q in queues:
            by_slot.setdefault(slot_of(q), []).append(q)
        groups = [self._lanes(qs) for qs in by_slot.values()]
        turn = self._turn % len(groups)
        self._turn += 1
        return groups[turn:] + groups[:turn]

    def _fetch(
        self,
        groups: Sequence[tuple[list[tuple[str, int]], list[str]]],
        consumer: str,
        count: int,
    ) -> list[Entry]:
        """``fetch`` calls, one group after another, until ``count`` entries are taken."""
        out: list[Entry] = []
        for lanes, names in groups:
            if len(out) >= count:
                break
            flat = self.conn.call(scripts.FETCH, names, [GROUP, consumer, count - len(out)])
            out += self._fetched(lanes, flat)
        return out

    def _collect(self) -> list[Entry]:
        """Entries blocking reads of earlier calls took since (Cluster only)."""
        return self._entries(self._blocking.ready()) if self._blocking else []

    def _entries(self, replies: Sequence[Any]) -> list[Entry]:
        """Entries of XREADGROUP replies, highest level first."""
        out: list[Entry] = []
        for reply in replies:
            for stream, entries in reply or ():
                q, level = self.keys.lane_of_stream(text(stream))
                out += [(q, eid, fields_of(fields), level) for eid, fields in entries]
        out.sort(key=lambda e: -e[3])
        return out

    def _lanes(self, queues: Sequence[str]) -> tuple[list[tuple[str, int]], list[str]]:
        """``(queue, level)`` in the order they are served, and their stream keys (made
        once per set of queues: the fetch loop asks every round)."""
        made = self._lanes_of.get(tuple(queues))
        if made is None:
            lanes = [(q, level) for level in LEVELS_SERVED for q in queues]
            made = lanes, [self.keys.stream(q, level) for q, level in lanes]
            self._lanes_of[tuple(queues)] = made
        return made

    @staticmethod
    def _fetched(lanes: Sequence[tuple[str, int]], flat: Sequence[Any]) -> list[Entry]:
        """Entries from a ``fetch`` script reply."""
        out: list[Entry] = []
        for i in range(0, len(flat), 3):
            q, level = lanes[int(flat[i]) - 1]
            out.append((q, flat[i + 1], fields_of(flat[i + 2]), level))
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
        return sum(int(n) for n in self.conn.call_many(scripts.RELEASE, calls))

    def start(
        self,
        queue: str,
        worker: str,
        deliveries: Sequence[tuple[bytes, str, int, str]],
        level: int = 0,
        tasks: Sequence[str] | None = None,
    ) -> list[tuple[StartKind, int, int]]:
        """Start ``(entry_id, run_id, max_deliveries, run_name)`` deliveries in one script call.

        ``tasks``: each delivery's task name, recorded on its run (``k``) with each new
        attempt (none: ``''``).

        Returns:
            Per delivery ``(kind, attempt, deliveries)``, as ``scripts/start.lua`` says.
        """
        return self.start_timed(queue, worker, deliveries, level, tasks)[0]

    def start_timed(
        self,
        queue: str,
        worker: str,
        deliveries: Sequence[tuple[bytes, str, int, str]],
        level: int = 0,
        tasks: Sequence[str] | None = None,
    ) -> tuple[list[tuple[StartKind, int, int]], int, Sequence[int]]:
        """:meth:`start`, with the server time the attempts started (ms) and, for each
        delivery started ``RETRYING`` in order, the due time its retry waited for (ms;
        -1 if none was recorded)."""
        k = self.keys
        keys = [k.stream(queue, level), k.events(queue)]
        keys += [k.run(queue, d[1]) for d in deliveries]
        args: list[Any] = [GROUP, self.settings.events_maxlen, worker]
        names = tasks if tasks is not None else [""] * len(deliveries)
        for (eid, rid, maxdel, name), task in zip(deliveries, names, strict=True):
            args += (eid, rid, maxdel, name, task)
        flat = self.conn.call(scripts.START, keys, args)
        n = 3 * len(deliveries)
        out = range(0, n, 3)
        kinds = [(_START_KINDS[flat[i]], int(flat[i + 1]), int(flat[i + 2])) for i in out]
        return kinds, int(flat[n]), flat[n + 1 :] if len(flat) > n + 1 else _NO_DUES

    def ack(self, queue: str, entry_ids: Sequence[bytes], level: int = 0) -> None:
        """Ack and delete deliveries (idempotent)."""
        stream = self.keys.stream(queue, level)
        self.conn.call(scripts.ACK, [stream], [GROUP, *entry_ids])

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
        return int(self.conn.call(scripts.HANDBACK, keys, args))

    def renew(
        self, queue: str, consumer: str, entry_ids: Sequence[bytes], level: int = 0
    ) -> list[bytes]:
        """Extend this consumer's leases; return the ids it no longer holds."""
        if not entry_ids:
            return []
        stream = self.keys.stream(queue, level)
        lost = self.conn.call(scripts.RENEW, [stream], [GROUP, consumer, *entry_ids])
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
        probes = self.conn.send(
            [("XPENDING", s, GROUP, "IDLE", idle, "-", "+", 1) for _, s in streams]
        )
        out: list[Entry] = []
        for (level, stream), probe in zip(streams, probes, strict=True):
            if isinstance(probe, Exception):
                if "NOGROUP" in str(probe):  # no worker made this level's group yet
                    continue
                self.conn.check(probe)
            cursor: Any = "0-0"
            while probe and len(out) < count:
                cursor, claimed, _deleted = self.conn.execute(
                    "XAUTOCLAIM", stream, GROUP, consumer, idle, cursor, "COUNT", count - len(out)
                )
                out += [(queue, eid, fields_of(f), level) for eid, f in claimed if f is not None]
                if cursor in (b"0-0", "0-0"):
                    break
        return out

    def finish_call(
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
    ) -> FinishCall:
        """A ``finish`` script call, to send with :meth:`finish`, :meth:`finish_many` or
        :meth:`finish_and_read`.

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
            self.conn.ttl_ms(ttl),
            etype,
            emsg[:1000],
            "" if ack else KEEP_PENDING,
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
            args += [FLOW_CHILD, fid]
        return FinishCall(tuple(keys), tuple(args))

    def finish(self, call: FinishCall) -> bool:
        """Send one ``finish`` call; False if fenced off (the attempt no longer holds the run)."""
        return _recorded(self.conn.call(scripts.FINISH, call.keys, call.args))

    def finish_many(self, calls: Sequence[FinishCall]) -> list[bool | Exception]:
        """Send ``finish`` calls in one round trip; per call True (recorded), False (fenced
        off) or the error it raised (each call is its own script, so one failing does
        not undo another)."""
        grouped, carried = finishing.group([(c.keys, c.args) for c in calls])
        replies = finishing.spread(self.conn.call_mixed(grouped), carried, len(calls))
        return [r if isinstance(r, Exception) else _recorded(r) for r in replies]

    def finish_and_read(
        self,
        finishes: Sequence[FinishCall],
        queues: Sequence[str],
        consumer: str,
        count: int,
    ) -> tuple[list[bool | Exception], list[Entry]]:
        """Run ``finish`` calls (from :meth:`finish_call`) and a non-blocking fetch of up
        to ``count`` new deliveries, all in one round trip.

        Returns:
            Per finish True (recorded), False (fenced off) or the error it raised; and
            the deliveries read, as :meth:`read` returns them.
        """
        (lanes, names), *others = self._groups(queues)
        calls, carried = finishing.group([(c.keys, c.args) for c in finishes])
        calls.append((scripts.FETCH, names, [GROUP, consumer, count]))
        *done, fetched = self.conn.call_mixed(calls)
        replies = finishing.spread(done, carried, len(finishes))
        results = [r if isinstance(r, Exception) else _recorded(r) for r in replies]
        out = self._fetched(lanes, self.conn.check(fetched))
        if others and len(out) < count:  # a Cluster: the other slots' queues, one by one
            out += self._fetch(others, consumer, count - len(out))
        return results, out

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
    ) -> RetryReply:
        """Ack a failed attempt and schedule the next one ``delay`` seconds from now.

        The next attempt keeps the priority ``level`` the delivery came with.

        Returns:
            SCHEDULED; FENCED (the attempt no longer holds the run); or PAST_DEADLINE,
            refused because the retry would come due after ``deadline``.
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
        return RetryReply(int(self.conn.call(scripts.RETRY, keys, args)))

    def defer(
        self,
        queue: str,
        entry_id: bytes,
        run_id: str,
        delay_ms: int,
        payload: bytes,
        level: int = 0,
        why: str = "rate limit",
    ) -> int:
        """Put a delivery that may not start yet back in the delay queue, due in
        ``delay_ms`` (``defer.lua``; ``why`` goes in its event): 1 deferred, 0 acked only
        (it had ended), 2 left alone (it is running)."""
        k = self.keys
        keys = [k.stream(queue, level), k.events(queue), k.delayed(queue), k.run(queue, run_id)]
        args = [
            GROUP,
            self.settings.events_maxlen,
            entry_id,
            run_id,
            delay_ms,
            delay_mark(level) + payload,
            k.wake_channel(queue),
            why,
        ]
        return int(self.conn.call(scripts.DEFER, keys, args))

    def retry_now(
        self,
        queue: str,
        run_id: str,
        attempt: int,
        error: tuple[str, str],
        deadline: float | None,
    ) -> RetryReply:
        """Record a failed attempt and start the next one at once, Retrying, on the
        delivery this worker holds (``retry_now.lua``): a retry with no delay.

        Returns:
            SCHEDULED (attempt ``attempt + 1`` is running); FENCED (the attempt no
            longer holds the run); or PAST_DEADLINE (starting now passes ``deadline``).
        """
        k = self.keys
        keys = [k.run(queue, run_id), k.events(queue)]
        args = [
            self.settings.events_maxlen,
            run_id,
            attempt,
            error[0],
            error[1][:1000],
            -1 if deadline is None else int(deadline * 1000),
        ]
        return RetryReply(int(self.conn.call(scripts.RETRY_NOW, keys, args)))

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
            self.conn.ttl_ms(None),
            level,
        ]
        for f, v in fields.items():
            args += (f, v)
        self.conn.call(scripts.DEAD, keys, args)

    def park(
        self,
        queue: str,
        consumer: str,
        entry_id: bytes,
        run_id: str,
        payload: bytes,
        level: int = 0,
    ) -> tuple[ParkReply, int]:
        """Hand a delivery whose task this worker does not know back through the delay
        queue, due in 1 s (doubling per hand-back, at most 10 s), while the run has
        waited less than ``unknown_task_grace``.

        Returns:
            ``(code, waited_ms)`` as ``park.lua`` says: PARKED handed back; EXPIRED
            not (grace spent, or no record: waited -1), dead-letter it; ENDED the run
            had ended (the duplicate is acked); LOST no longer this consumer's.
        """
        k = self.keys
        keys = [k.stream(queue, level), k.delayed(queue), k.run(queue, run_id)]
        grace_ms = round(self.settings.unknown_task_grace * 1000)
        args = [GROUP, consumer, entry_id, delay_mark(level) + payload, grace_ms]
        args += [PARK_FIRST_MS, PARK_LONGEST_MS, k.wake_channel(queue)]
        code, waited = self.conn.call(scripts.PARK, keys, args)
        return ParkReply(int(code)), int(waited)


def _recorded(reply: Any) -> bool:
    """Whether a ``finish`` reply says the outcome was recorded (else fenced off)."""
    return int(reply) == FinishReply.RECORDED


def _block(consumer: str, count: int, block: float, names: Sequence[str]) -> tuple[Any, ...]:
    """A blocking XREADGROUP of new entries on the streams ``names``."""
    head = ("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "BLOCK")
    return (*head, max(1, int(block * 1000)), "STREAMS", *names, *([">"] * len(names)))
