"""The read-only inspection role: events, run logs, dead letters, queue sizes and names,
server settings, what a timed-out result wait can report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskq.broker.connection import Connection, fields_of, text
from taskq.broker.logs import LogLine, parse_line
from taskq.errors import TaskqError
from taskq.keys import GROUP
from taskq.protocol import EventField, RecordField, split_event


class Inspection:
    """Reads for the CLI, dashboards and tests; nothing here changes state.

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys
        self.settings = conn.settings

    def queue_names(self) -> list[str]:
        """The queues that have a stream (task, events or dead-letter) under this prefix, sorted.

        Found by SCAN (``TYPE stream``); the name is the key's hash tag.
        """
        head = f"{self.keys.prefix}:{{"
        found = set()
        for name in self.conn.scan(f"{head}*}}:*", "STREAM"):
            found.add(name[len(head) : name.index("}:", len(head))])
        return sorted(found)

    def events(
        self, queue: str, after: str = "0-0", count: int = 1000, block: float | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Events after ``after`` (an events-stream id), oldest first."""
        block_ms = None if block is None else max(1, int(block * 1000))
        reply = self.conn.xread({self.keys.events(queue): after}, count, block_ms)
        out = []
        for _, entries in reply or ():
            for eid, fields in entries:
                out += _per_run(eid, fields)
        return out

    def recent_events(self, queue: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """The newest ``count`` events-stream entries of ``queue``, oldest first (a batch
        entry gives one event per run)."""
        reply = self.conn.xrevrange(self.keys.events(queue), count)
        return [event for eid, fields in reversed(reply) for event in _per_run(eid, fields)]

    def run_events(self, queue: str, run_id: str) -> list[tuple[str, dict[str, str]]]:
        """Every event of ``run_id`` still in the queue's (capped) events stream."""
        out = []
        needle = run_id.encode()
        for eid, fields in self.conn.xrange(self.keys.events(queue)):
            if needle in fields.get(_EVENT_RUN, b""):  # the run, or a batch that may hold it
                out += [e for e in _per_run(eid, fields) if e[1][EventField.RUN] == run_id]
        return out

    def run_logs(self, queue: str, run_id: str) -> list[LogLine]:
        """The run's log lines (``get_run_logger()``, ``log_prints``, the engine's retry
        and failure messages), oldest first: at most the newest ``run_log_max_lines``;
        empty when it logged nothing or its log expired. One ``LRANGE``."""
        raw = self.conn.execute("LRANGE", self.keys.run_log(queue, run_id), 0, -1)
        return [parse_line(r) for r in raw or ()]

    def dead_entries(self, queue: str, count: int = 100) -> list[tuple[str, dict[bytes, bytes]]]:
        """The oldest ``count`` dead-lettered entries of a queue."""
        reply = self.conn.xrange(self.keys.dead(queue), count)
        return [(text(eid), fields) for eid, fields in reply]

    def queue_sizes(self, queue: str) -> tuple[int, int]:
        """(entries in the streams, entries pending in the group) for ``queue``, summed
        over its priority levels."""
        cmds: list[tuple[str, ...]] = []
        for stream in self.keys.streams(queue):
            cmds += [("XLEN", stream), ("XPENDING", stream, GROUP)]
        replies = self.conn.send(cmds)
        length = pending = 0
        for i in range(0, len(replies), 2):
            size, summary = replies[i], replies[i + 1]
            length += int(self.conn.check(size))
            if not isinstance(summary, Exception):  # NOGROUP: no worker made it yet
                pending += int(summary[0])
        return length, pending

    def queue_counts(self, queues: Sequence[str]) -> list[QueueCounts]:
        """Per queue its :class:`QueueCounts` (its :meth:`level_counts` summed over the
        levels), all read in one round trip."""
        return [
            QueueCounts(sum(c.waiting), sum(c.pending), c.delayed, c.dead)
            for c in self.level_counts(queues)
        ]

    def server_ms(self) -> int:
        """The server's clock (``TIME``), in Unix milliseconds."""
        sec, usec = self.conn.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def level_counts(self, queues: Sequence[str]) -> list[LevelCounts]:
        """Per queue its entries waiting and pending at each priority level, its delayed
        runs and its dead letters, all read in one round trip (the metrics' queue depth)."""
        cmds: list[tuple[str, ...]] = []
        for q in queues:
            for stream in self.keys.streams(q):
                cmds += [("XLEN", stream), ("XPENDING", stream, GROUP)]
            cmds += [("ZCARD", self.keys.delayed(q)), ("XLEN", self.keys.dead(q))]
        replies = self.conn.send(cmds)
        per = len(cmds) // len(queues) if queues else 0
        out = []
        for i, q in enumerate(queues):
            chunk = replies[i * per : (i + 1) * per]
            waiting: list[int] = []
            pending: list[int] = []
            for j in range(0, per - 2, 2):
                length = int(self.conn.check(chunk[j]))
                busy = 0 if isinstance(chunk[j + 1], Exception) else int(chunk[j + 1][0])
                waiting.append(length - busy)
                pending.append(busy)
            delayed, dead = (int(self.conn.check(r)) for r in chunk[-2:])
            out.append(LevelCounts(q, waiting, pending, delayed, dead))
        return out

    def events_since(
        self, queues: Sequence[str], since_ms: int, count: int
    ) -> list[list[tuple[str, dict[str, str]]]]:
        """Per queue its events from ``since_ms`` on, newest first, at most ``count``
        stream entries each (one per run of a batch entry); one round trip."""
        cmds = [
            ("XREVRANGE", self.keys.events(q), "+", f"{since_ms}-0", "COUNT", count) for q in queues
        ]
        return [self._entries(self.conn.check(r)) for r in self.conn.send(cmds)]

    def events_before(
        self, queue: str, before: str | None, count: int
    ) -> tuple[list[tuple[str, dict[str, str]]], str | None, int]:
        """A page of the queue's events, newest first: up to ``count`` stream entries
        older than the entry id ``before`` (None: from the newest).

        Returns:
            The events (one per run of a batch entry), the id to pass as ``before``
            for the next page (None when this was the last), and how many stream
            entries the page held.
        """
        end = "+" if before is None else f"({before}"
        raw = self.conn.execute("XREVRANGE", self.keys.events(queue), end, "-", "COUNT", count)
        events = self._entries(raw)
        last = text(raw[-1][0]) if raw and len(raw) == count else None
        return events, last, len(raw or ())

    @staticmethod
    def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
        out: list[tuple[str, dict[str, str]]] = []
        for eid, flat in raw or ():
            out += _per_run(eid, fields_of(flat))
        return out

    def run_fields(
        self, queue: str, run_ids: Sequence[str], fields: Sequence[str]
    ) -> list[list[str | None]]:
        """``fields`` of each run's record (None where absent), in one round trip."""
        if not run_ids:
            return []
        replies = self.conn.send([("HMGET", self.keys.run(queue, rid), *fields) for rid in run_ids])
        return [
            [None] * len(fields)
            if isinstance(r, Exception)
            else [None if v is None else text(v) for v in r]
            for r in replies
        ]

    def flow_sizes(self, queue: str, flow_ids: Sequence[str]) -> list[int]:
        """How many children of each flow ended (its fan-in order list), one round trip."""
        replies = self.conn.send([("LLEN", self.keys.flow_order(queue, f)) for f in flow_ids])
        return [0 if isinstance(r, Exception) else int(r) for r in replies]

    def stream_entry(self, queue: str, entry_id: str) -> dict[bytes, bytes] | None:
        """The fields of task-stream entry ``entry_id`` of ``queue``, at whichever
        priority level holds it (None: no longer in any); one round trip."""
        cmds = [("XRANGE", s, entry_id, entry_id) for s in self.keys.streams(queue)]
        for reply in self.conn.send(cmds):
            if not isinstance(reply, Exception) and reply:
                return fields_of(reply[0][1])
        return None

    def server_warnings(self) -> list[str]:
        """Settings of the Redis server that put queued work at risk (empty if fine or unknown)."""
        out = []
        try:
            aof_reply = self.conn.execute("CONFIG", "GET", "appendonly")
            policy_reply = self.conn.execute("CONFIG", "GET", "maxmemory-policy")
        except TaskqError:
            return []  # CONFIG may be denied to this user; nothing to say then
        aof = text(aof_reply[1]) if len(aof_reply) > 1 else None
        policy = text(policy_reply[1]) if len(policy_reply) > 1 else None
        if aof == "no":
            out.append(
                f"Redis at {self.conn.url} has appendonly no: a Redis restart loses queued work"
            )
        if policy and policy != "noeviction":
            out.append(
                f"Redis at {self.conn.url} has maxmemory-policy {policy}: under memory pressure "
                "it may evict queued work; use noeviction"
            )
        return out

    def wait_facts(self, queue: str, run_ids: Sequence[str]) -> WaitFacts:
        """The runs' states and whether workers read from ``queue``, in one round trip
        (for the message of a timed-out result wait).

        Reads each run's record state and ``XINFO CONSUMERS`` of every priority
        stream of the queue. A consumer's idle time is, on Redis 7.2 and later, the
        time since it last tried to read; on 7.0, since it was last given an entry.
        """
        cmds: list[tuple[str, ...]] = [
            ("HGET", self.keys.run(queue, rid), RecordField.STATE.value) for rid in run_ids
        ]
        cmds += [("XINFO", "CONSUMERS", stream, GROUP) for stream in self.keys.streams(queue)]
        replies = self.conn.send(cmds)
        n = len(run_ids)
        states = [None if r is None or isinstance(r, Exception) else text(r) for r in replies[:n]]
        has_group, idle_ms = False, None
        for reply in replies[n:]:
            if isinstance(reply, Exception):  # no such key, or NOGROUP: no worker made it
                continue
            has_group = True
            for flat in reply:
                info = {text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
                idle = int(info.get("idle", -1))
                if idle >= 0 and (idle_ms is None or idle < idle_ms):
                    idle_ms = idle
        return WaitFacts(states, has_group, None if idle_ms is None else idle_ms / 1000)


@dataclass(frozen=True)
class QueueCounts:
    """What a queue holds (summed over its priority levels), as ``taskq queues`` shows it.

    Attributes:
        waiting: Entries in its streams no worker has read yet (or that were handed back).
        pending: Entries read by a worker and not yet acked (running, or about to be).
        delayed: Runs in its delay queue (retries, ``delay=``, hand-backs).
        dead: Entries in its dead-letter stream.
    """

    waiting: int
    pending: int
    delayed: int
    dead: int

    def __add__(self, other: QueueCounts) -> QueueCounts:
        return QueueCounts(
            self.waiting + other.waiting,
            self.pending + other.pending,
            self.delayed + other.delayed,
            self.dead + other.dead,
        )


@dataclass(frozen=True)
class LevelCounts:
    """What one queue holds per priority level (:meth:`Inspection.level_counts`).

    Attributes:
        queue: The (physical) queue.
        waiting: Per level 0-9, entries no worker has read yet.
        pending: Per level 0-9, entries read by a worker and not yet acked.
        delayed: Runs in its delay queue.
        dead: Entries in its dead-letter stream.
    """

    queue: str
    waiting: list[int]
    pending: list[int]
    delayed: int
    dead: int


@dataclass(frozen=True)
class WaitFacts:
    """What :meth:`Inspection.wait_facts` found.

    Attributes:
        states: Each run's recorded state name (None: no record, unknown or expired).
        has_group: Some priority stream of the queue has the workers' consumer group.
        idle: Seconds since the queue's most recent consumer last read (None: none).
    """

    states: list[str | None]
    has_group: bool
    idle: float | None


_EVENT_RUN = EventField.RUN.encode()


def _per_run(eid: bytes | str, fields: dict[bytes, bytes]) -> list[tuple[str, dict[str, str]]]:
    """An events-stream entry as ``(id, fields)`` per run it tells (a batch tells several,
    under the same id)."""
    event = {text(f): text(v) for f, v in fields.items()}
    return [(text(eid), f) for f in split_event(event)]
