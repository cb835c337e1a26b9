"""The worker registry's role: each worker process's heartbeat entry (``heartbeat.lua``),
and the read of every entry for ``taskq info`` and dashboards."""

from __future__ import annotations

import json
from typing import Any

from taskq import scripts
from taskq.broker.connection import Connection, text


class WorkerRegistry:
    """Heartbeats of worker processes (see :mod:`taskq.presence`).

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys

    def beat(self, worker_id: str, entry: dict[str, Any] | None, prune_ms: int) -> int:
        """Publish ``entry`` for ``worker_id`` (None: withdraw it), pruning entries older
        than ``prune_ms``; one script call. Returns the server time (ms) of the beat."""
        keys = [self.keys.workers_seen(), self.keys.workers_info()]
        body = "" if entry is None else json.dumps(entry, separators=(",", ":"))
        return int(self.conn.call(scripts.HEARTBEAT, keys, [worker_id, body, prune_ms]))

    def entries(self) -> tuple[int, list[tuple[str, int, dict[str, Any]]]]:
        """The server time (ms) and every entry: ``(worker id, last heartbeat ms, entry)``,
        oldest heartbeat first, in one round trip (an entry that is not JSON is ``{}``)."""
        seen, info, now = self.conn.send(
            [
                ("ZRANGE", self.keys.workers_seen(), 0, -1, "WITHSCORES"),
                ("HGETALL", self.keys.workers_info()),
                ("TIME",),
            ]
        )
        seen, info, now = self.conn.check(seen), self.conn.check(info), self.conn.check(now)
        bodies = {text(info[i]): info[i + 1] for i in range(0, len(info), 2)}
        out = []
        for i in range(0, len(seen), 2):
            wid = text(seen[i])
            try:
                entry = json.loads(bodies.get(wid) or b"{}")
            except ValueError:
                entry = {}
            out.append((wid, int(float(seen[i + 1])), entry if isinstance(entry, dict) else {}))
        return int(now[0]) * 1000 + int(now[1]) // 1000, out
