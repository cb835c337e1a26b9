"""The dead-letter role: read a queue's dead-letter stream, requeue entries
(``requeue.lua``) and purge them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskq import scripts
from taskq.broker.connection import Connection, fields_of, text
from taskq.protocol import RequeueReply


class DeadLetters:
    """Dead-letter entries of a queue (one physical queue per call).

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys

    def page(
        self, queue: str, after: str | None, count: int, until: str = "+"
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        """Up to ``count`` entries after entry id ``after`` (None: from the oldest), up
        to entry id ``until`` included."""
        start = "-" if after is None else f"({after}"
        raw = self.conn.execute("XRANGE", self.keys.dead(queue), start, until, "COUNT", count)
        return [(text(eid), fields_of(flat)) for eid, flat in raw or ()]

    def newest(self, queue: str, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """The newest ``count`` entries, newest first."""
        raw = self.conn.execute("XREVRANGE", self.keys.dead(queue), "+", "-", "COUNT", count)
        return [(text(eid), fields_of(flat)) for eid, flat in raw or ()]

    def entries(
        self, queue: str, entry_ids: Sequence[str]
    ) -> list[tuple[str, dict[bytes, bytes]] | None]:
        """The entries of these ids (None for one not there), in one round trip."""
        key = self.keys.dead(queue)
        replies = self.conn.send([("XRANGE", key, eid, eid) for eid in entry_ids])
        out: list[tuple[str, dict[bytes, bytes]] | None] = []
        for eid, reply in zip(entry_ids, replies, strict=True):
            ok = not isinstance(reply, Exception) and bool(reply)
            out.append((eid, fields_of(reply[0][1])) if ok else None)
        return out

    def requeue(
        self, queue: str, items: Sequence[tuple[str, str, str, int]]
    ) -> list[tuple[RequeueReply, str]]:
        """Requeue ``(entry_id, run_id, task, level)`` entries in one script call (each
        entry atomically; see ``requeue.lua``): per entry its reply and, when it ended
        otherwise, its run's state."""
        if not items:
            return []
        k = self.keys
        keys = [k.dead(queue), k.events(queue)]
        args: list[Any] = [self.conn.settings.events_maxlen]
        for eid, rid, task, level in items:
            keys += [k.stream(queue, level), k.run(queue, rid), k.result(queue, rid)]
            args += (eid, rid, task)
        flat = self.conn.call(scripts.REQUEUE, keys, args)
        return [(RequeueReply(int(flat[i])), text(flat[i + 1])) for i in range(0, len(flat), 2)]

    def purge(self, queue: str, entry_ids: Sequence[str]) -> int:
        """Delete entries; how many were there."""
        if not entry_ids:
            return 0
        return int(self.conn.execute("XDEL", self.keys.dead(queue), *entry_ids))
