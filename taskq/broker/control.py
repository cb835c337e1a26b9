"""Control of runs from outside them: cancel (``cancel.lua``), and the reads a worker
makes to learn which of its running runs were asked to stop."""

from __future__ import annotations

from collections.abc import Sequence

from taskq import scripts
from taskq.broker.connection import Connection, text
from taskq.protocol import CancelReply, RecordField


class Control:
    """Cancel calls.

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys

    def cancel(
        self, queue: str, run_id: str, outcome: bytes, reason: str, ttl: float | None
    ) -> CancelReply:
        """Cancel run ``run_id`` on ``queue`` (see ``cancel.lua``): ``outcome`` is stored
        if it ends here (it had not started); a running one is asked to stop."""
        k = self.keys
        keys = [k.run(queue, run_id), k.result(queue, run_id), k.events(queue)]
        args = [
            self.conn.settings.events_maxlen,
            run_id,
            outcome,
            self.conn.ttl_ms(ttl),
            reason[:1000],
            k.cancel_channel(queue),
        ]
        return CancelReply(int(self.conn.call(scripts.CANCEL, keys, args)))

    def progress(
        self, queue: str, run_id: str, attempt: int, fraction: float, message: str
    ) -> bool:
        """Record attempt ``attempt``'s progress report (``progress.lua``, fenced); True
        if recorded."""
        k = self.keys
        keys = [k.run(queue, run_id), k.events(queue)]
        args = [self.conn.settings.events_maxlen, run_id, attempt, f"{fraction:.4g}", message]
        return int(self.conn.call(scripts.PROGRESS, keys, args)) == 1

    def rate_slots(
        self, queue: str, bucket: str, interval_ms: int, held: Sequence[int], late_ms: int
    ) -> tuple[int, list[int]]:
        """Start slots of a rate-limit bucket for deliveries that hold slot ``held[i]``
        (server ms; 0: none): ``(now, milliseconds from now to each one's slot)``, 0 to
        start now (``rate.lua``)."""
        key = [self.keys.rate(queue, bucket)]
        got = self.conn.call(scripts.RATE, key, [interval_ms, late_ms, *held])
        return int(got[0]), [int(x) for x in got[1:]]

    def take_slots(
        self, queue: str, bucket: str, limit: int, lease_ms: int, run_ids: Sequence[str]
    ) -> list[bool]:
        """Take a concurrency slot of ``bucket`` for each run (``conc.lua``): whether it
        has one (False: the key is full)."""
        got = self.conn.call(
            scripts.CONC, [self.keys.conc(queue, bucket)], [limit, lease_ms, *run_ids]
        )
        return [int(x) == 1 for x in got]

    def renew_slots(self, queue: str, held: Sequence[tuple[str, str]], lease_ms: int) -> int:
        """Extend the leases of ``(bucket, run id)`` slots on ``queue`` (one hash tag)."""
        if not held:
            return 0
        keys = [self.keys.conc(queue, bucket) for bucket, _ in held]
        return int(self.conn.call(scripts.CONC_RENEW, keys, [lease_ms, *(r for _, r in held)]))

    def release_slot(self, queue: str, bucket: str, run_id: str) -> None:
        """Give back ``run_id``'s concurrency slot of ``bucket``."""
        self.conn.execute("ZREM", self.keys.conc(queue, bucket), run_id)

    def server_ms(self) -> int:
        """The Redis server's clock, Unix ms (schedules fire on it)."""
        sec, usec = self.conn.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def last_tick(self, queue: str, task_name: str) -> int | None:
        """The last tick of ``task_name``'s schedule fired (None: never)."""
        got = self.conn.execute("HGET", self.keys.schedules(queue), task_name)
        return None if got is None else int(got)

    def record_tick(self, queue: str, task_name: str, tick_ms: int) -> bool:
        """Record that tick ``tick_ms`` fired (``sched_tick.lua``: never moves back)."""
        keys = [self.keys.schedules(queue)]
        return int(self.conn.call(scripts.SCHED_TICK, keys, [task_name, tick_ms])) == 1

    def requests(self, runs: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each ``(queue, run id)``, the reason it was asked to stop, or None (one
        pipelined round trip)."""
        if not runs:
            return []
        field = RecordField.CANCEL.value
        replies = self.conn.send([("HGET", self.keys.run(q, rid), field) for q, rid in runs])
        return [text(r) if isinstance(r, bytes) else None for r in replies]
