"""The flows' role: suspend, notify, reset, and reading a flow's fan-in keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskq import scripts
from taskq.broker.connection import Connection, text
from taskq.keys import GROUP
from taskq.protocol import NotifyReply, ResetReply, SuspendReply


class Flows:
    """Script calls and reads on a flow's hash tag (see :mod:`taskq.flows`).

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys
        self.settings = conn.settings

    def suspend(
        self,
        queue: str,
        entry_id: bytes,
        flow_id: str,
        attempt: int,
        payload: bytes,
        waiting: Sequence[str],
        mode: str,
        seq: int,
        child_queues: Sequence[str],
        ttl: float | None = None,
        level: int = 0,
    ) -> SuspendReply:
        """Suspend a flow until its children end: SUSPENDED, SATISFIED already, or FENCED.

        ``level`` is the flow delivery's priority level (its resume goes back there).
        """
        k = self.keys
        keys = [
            k.stream(queue, level),
            k.events(queue),
            k.run(queue, flow_id),
            k.flow_results(queue, flow_id),
            k.flow_wait(queue, flow_id),
        ]
        args: list[Any] = [GROUP, self.settings.events_maxlen, entry_id, flow_id, attempt]
        args += [payload, mode, self.conn.ttl_ms(ttl), seq, ",".join(child_queues), level]
        args += waiting
        return SuspendReply(int(self.conn.call(scripts.SUSPEND, keys, args)))

    def notify(
        self,
        queue: str,
        flow_id: str,
        child_id: str,
        outcome: bytes,
        ttl: float | None = None,
        level: int = 0,
    ) -> bool:
        """Tell flow ``flow_id`` (on ``queue``, priority ``level``) that a child ended; True
        if that resumed it."""
        k = self.keys
        keys = [
            k.stream(queue, level),
            k.events(queue),
            k.run(queue, flow_id),
            k.flow_results(queue, flow_id),
            k.flow_order(queue, flow_id),
            k.flow_wait(queue, flow_id),
            k.flow_ping(queue, flow_id),
        ]
        args: list[Any] = [
            self.settings.events_maxlen,
            flow_id,
            child_id,
            outcome,
            self.conn.ttl_ms(ttl),
        ]
        return int(self.conn.call(scripts.NOTIFY, keys, args)) == NotifyReply.RESUMED

    def expire(self, queue: str, flow_id: str, attempt: int, level: int = 0) -> bool:
        """Resume flow ``flow_id`` if it still waits for its children in ``attempt``
        (``flow_expire.lua``): its time limit ran out. True if it was resumed."""
        k = self.keys
        keys = [
            k.stream(queue, level),
            k.events(queue),
            k.run(queue, flow_id),
            k.flow_wait(queue, flow_id),
        ]
        args = [self.settings.events_maxlen, flow_id, attempt]
        return int(self.conn.call(scripts.FLOW_EXPIRE, keys, args)) == 1

    def attempt_age(self, queue: str, run_id: str, attempt: int) -> float | None:
        """Seconds since attempt ``attempt`` of the run started (server clock; None if
        the record has no start for it), in one round trip."""
        age = int(self.conn.call(scripts.ATTEMPT_AGE, [self.keys.run(queue, run_id)], [attempt]))
        return None if age < 0 else age / 1000

    def reset_child(self, queue: str, run_id: str) -> bool:
        """Forget a Failed/Cancelled child so it can be enqueued again (flow retry)."""
        keys = [self.keys.run(queue, run_id), self.keys.result(queue, run_id)]
        return int(self.conn.call(scripts.RESET, keys, [])) == ResetReply.RESET

    def flow_outcomes(
        self, queue: str, flow_id: str, known: int
    ) -> tuple[list[str], dict[str, bytes]]:
        """Children that ended after the first ``known`` ones, in order, with their outcomes.

        One round trip when nothing is new, two otherwise.
        """
        order_key = self.keys.flow_order(queue, flow_id)
        new = [text(c) for c in self.conn.execute("LRANGE", order_key, known, -1) or []]
        if not new:
            return [], {}
        results = self.keys.flow_results(queue, flow_id)
        if known == 0:
            flat = self.conn.execute("HGETALL", results)
            allout = {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
            return new, {c: allout[c] for c in new if c in allout}
        values = self.conn.execute("HMGET", results, *new)
        return new, {c: v for c, v in zip(new, values, strict=True) if v is not None}

    def flow_forget(self, queue: str, flow_id: str, children: Sequence[str]) -> None:
        """Drop ended children from a flow's fan-in keys (a retried flow re-runs them)."""
        results, order = (
            self.keys.flow_results(queue, flow_id),
            self.keys.flow_order(queue, flow_id),
        )
        self.conn.call(scripts.FLOW_FORGET, [results, order], list(children))

    def flow_ping_wait(self, queue: str, flow_id: str, timeout: float) -> None:
        """Block up to ``timeout`` seconds for any child of the flow to end."""
        self.conn.execute(
            "BLPOP", self.keys.flow_ping(queue, flow_id), f"{max(timeout, 0.001):.3f}"
        )
