"""The delay role: the mover's promote and counting runs in the delay queues (see
:mod:`taskq.scheduler` and ``promote.lua``), and the delay-queue member format that
enqueue, retry and park also write (``delay_mark``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskq import scripts
from taskq.broker.connection import Connection
from taskq.message import peek_run_id
from taskq.protocol import PRIORITY_MARK
from taskq.signing import MAGIC, SIGNATURE_BYTES

#: First and longest delay of a run handed back for a worker that knows its task (ms).
PARK_FIRST_MS, PARK_LONGEST_MS = 1_000, 10_000


def delay_mark(level: int) -> bytes:
    """The prefix of a delay-queue member of priority ``level`` (see ``promote.lua``)."""
    return b"" if level == 0 else PRIORITY_MARK + str(level).encode()


def member_run_id(member: bytes) -> str | None:
    """The run id of a delay-queue member, read without decoding its payload: after
    the priority mark and the signature (unverified: the worker verifies), from the
    head of the message (None when there is none to read)."""
    # The mark is followed by one digit: levels go up to PRIORITIES - 1 = 9.
    mark = len(PRIORITY_MARK)
    payload = member[mark + 1 :] if member[:mark] == PRIORITY_MARK else member
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

    def delayed_within(
        self,
        queues: Sequence[str],
        seconds: float,
        ignore: dict[str, set[bytes]] | None = None,
    ) -> tuple[int, list[tuple[str, int, float]]]:
        """Runs in the delay queues of ``queues`` due within ``seconds`` (server clock), and
        per queue holding runs due later ``(queue, how many, seconds until the first)``.

        Members ``ignore`` names per queue (runs a burst worker handed back itself, for a
        worker that knows their task) are not counted as due soon."""
        sec, usec = self.conn.execute("TIME")
        now = int(sec) * 1000 + int(usec) // 1000
        bound = now + int(seconds * 1000)
        cmds: list[tuple[Any, ...]] = []
        for q in queues:
            key = self.keys.delayed(q)
            cmds += [("ZCOUNT", key, "-inf", bound), ("ZCOUNT", key, f"({bound}", "+inf")]
            cmds.append(("ZRANGEBYSCORE", key, f"({bound}", "+inf", "WITHSCORES", "LIMIT", 0, 1))
            members = list(ignore.get(q, ())) if ignore else []
            cmds.append(("ZMSCORE", key, *members) if members else ("ECHO", ""))
        replies = self.conn.send_all(cmds)
        soon, later = 0, []
        for i, q in enumerate(queues):
            due, left, first, skipped = replies[4 * i : 4 * i + 4]
            soon += int(due)
            if isinstance(skipped, list):
                soon -= sum(1 for score in skipped if score is not None and float(score) <= bound)
            if int(left):
                later.append((q, int(left), (float(first[1]) - now) / 1000))
        return soon, later
