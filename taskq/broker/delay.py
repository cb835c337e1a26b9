"""The broker's delay-queue calls: the mover's promote, counting, and parking runs of
unknown tasks (see :mod:`taskq.scheduler` and ``promote.lua`` / ``park.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskq import scripts
from taskq.broker.connection import Connection
from taskq.message import peek_run_id
from taskq.signing import MAGIC, SIGNATURE_BYTES

#: First and longest delay of a run handed back for a worker that knows its task (ms).
PARK_FIRST_MS, PARK_LONGEST_MS = 1_000, 10_000


def delay_mark(level: int) -> bytes:
    """The prefix of a delay-queue member of priority ``level`` (see ``promote.lua``)."""
    return b"" if level == 0 else b"\xc1P" + str(level).encode()


def member_run_id(member: bytes) -> str | None:
    """The run id of a delay-queue member, read without decoding its payload: after
    the priority mark and the signature (unverified: the worker verifies), from the
    head of the message (None when there is none to read)."""
    payload = member[3:] if member[:2] == b"\xc1P" else member
    if payload[:2] == MAGIC:
        payload = payload[SIGNATURE_BYTES:]
    return peek_run_id(payload)


class Delays:
    """Script calls and reads on a queue's delay queue (see :mod:`taskq.scheduler`).

    Args:
        conn: The connection layer.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keys = conn.keys
        self.settings = conn.settings

    def promote(self, queue: str, limit: int) -> tuple[int, int, int]:
        """Move up to ``limit`` due runs to the stream: ``(moved, next_due_ms|-1, now_ms)``.

        Two phases: one round trip reads the server's time and the ``limit`` earliest
        members; when some are due, ``promote.lua`` is given them with their run
        records (read from the members) and moves those still there and due.
        """
        k = self.keys
        delayed = k.delayed(queue)
        clock, flat = self.conn.send_all(
            [("TIME",), ("ZRANGE", delayed, 0, limit - 1, "WITHSCORES")]
        )
        now = int(clock[0]) * 1000 + int(clock[1]) // 1000
        due = [flat[i] for i in range(0, len(flat), 2) if float(flat[i + 1]) <= now]
        if not due:
            return 0, int(float(flat[1])) if flat else -1, now
        keys = [delayed, *k.streams(queue), k.events(queue)]
        args: list[Any] = [self.settings.events_maxlen]
        for member in due:
            rid = member_run_id(member)
            args += (member, rid or "")
            if rid:
                keys.append(k.run(queue, rid))
        moved, next_due, now = self.conn.call(scripts.PROMOTE, keys, args)
        return int(moved), int(next_due), int(now)

    def delayed_count(
        self, queues: Sequence[str], ignore: dict[str, set[bytes]] | None = None
    ) -> int:
        """How many runs wait in the delay queues of ``queues``, not counting the
        members ``ignore`` names per queue (runs a burst worker handed back itself)."""
        cmds: list[tuple[Any, ...]] = [("ZCARD", self.keys.delayed(q)) for q in queues]
        skip = [(q, list(ignore[q])) for q in queues if ignore and ignore.get(q)]
        cmds += [("ZMSCORE", self.keys.delayed(q), *members) for q, members in skip]
        replies = self.conn.send(cmds)
        counts, present = replies[: len(queues)], replies[len(queues) :]
        total = sum(int(r) for r in counts if not isinstance(r, Exception))
        for scores in present:
            if not isinstance(scores, Exception):
                total -= sum(1 for s in scores if s is not None)
        return total
