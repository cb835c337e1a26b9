"""The broker's delay-queue calls: the mover's promote, counting, and parking runs of
unknown tasks (see :mod:`taskq.scheduler` and ``promote.lua`` / ``park.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskq import scripts
from taskq.broker.connection import BrokerCore
from taskq.keys import GROUP
from taskq.message import peek_run_id
from taskq.signing import _HEAD as SIGNATURE_BYTES
from taskq.signing import MAGIC

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


class DelayCalls(BrokerCore):
    """Script calls and reads on a queue's delay queue."""

    def promote(self, queue: str, limit: int) -> tuple[int, int, int]:
        """Move up to ``limit`` due runs to the stream: ``(moved, next_due_ms|-1, now_ms)``.

        Two phases: one round trip reads the server's time and the ``limit`` earliest
        members; when some are due, ``promote.lua`` is given them with their run
        records (read from the members) and moves those still there and due.
        """
        k = self.keys
        delayed = k.delayed(queue)
        clock, flat = self.send([("TIME",), ("ZRANGE", delayed, 0, limit - 1, "WITHSCORES")])
        for reply in (clock, flat):
            if isinstance(reply, Exception):
                with self.translate():
                    raise reply
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
        moved, next_due, now = self.call(scripts.PROMOTE, keys, args)
        return int(moved), int(next_due), int(now)

    def delayed_count(
        self, queues: Sequence[str], ignore: dict[str, set[bytes]] | None = None
    ) -> int:
        """How many runs wait in the delay queues of ``queues``, not counting the
        members ``ignore`` names per queue (runs a burst worker handed back itself)."""
        cmds: list[tuple[Any, ...]] = [("ZCARD", self.keys.delayed(q)) for q in queues]
        skip = [(q, list(ignore[q])) for q in queues if ignore and ignore.get(q)]
        cmds += [("ZMSCORE", self.keys.delayed(q), *members) for q, members in skip]
        replies = self.send(cmds)
        counts, present = replies[: len(queues)], replies[len(queues) :]
        total = sum(int(r) for r in counts if not isinstance(r, Exception))
        for scores in present:
            if not isinstance(scores, Exception):
                total -= sum(1 for s in scores if s is not None)
        return total

    def park(
        self,
        queue: str,
        consumer: str,
        entry_id: bytes,
        run_id: str,
        payload: bytes,
        level: int = 0,
    ) -> tuple[int, int]:
        """Hand a delivery whose task this worker does not know back through the delay
        queue, due in 1 s (doubling per hand-back, at most 10 s), while the run has
        waited less than ``unknown_task_grace``.

        Returns:
            ``(code, waited_ms)`` as ``park.lua`` says: 1 handed back; 0 not (grace
            spent, or no record: waited -1), dead-letter it; 2 the run had ended (the
            duplicate is acked); 3 no longer this consumer's.
        """
        k = self.keys
        keys = [k.stream(queue, level), k.delayed(queue), k.run(queue, run_id)]
        grace_ms = round(self.settings.unknown_task_grace * 1000)
        args = [GROUP, consumer, entry_id, delay_mark(level) + payload, grace_ms]
        args += [PARK_FIRST_MS, PARK_LONGEST_MS, k.wake_channel(queue)]
        code, waited = self.call(scripts.PARK, keys, args)
        return int(code), int(waited)
