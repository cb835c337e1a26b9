"""Dead letters for operators: list, show, requeue and purge a queue's dead-lettered entries.

A queue name may be a partitioned queue's: its partitions' dead-letter streams are
read in turn (each :class:`DeadEntry` names its partition). Selections: explicit entry
ids, and/or ``task`` (the task the entry's payload names, exactly) and ``reason`` (a
case-insensitive substring of the reason); ``entry_ids=None`` means every entry that
matches.

**Requeue** (``requeue.lua``) moves entries back onto the stream (and priority level)
they came from, a batch of :data:`REQUEUE_BATCH` per script call and each entry
atomically, so an interrupted bulk requeue loses nothing and repeats nothing. A run
the dead letter ended (Failed, ``dead`` on its record) is reopened as the next
attempt of the same run: Pending, its result and TTL gone, so its future resolves
when that attempt ends. A run whose record says it ended some other way (a duplicate
delivery completed it) or is live is not requeued: its entry is removed and reported
(:data:`RequeueReply.ENDED`). An entry naming no run, or a run whose record expired,
goes back as a fresh run (Pending). Entries are requeued whatever their payload: one
that still cannot be decoded comes back dead with the same reason (``payload_ok``
says which will).

**Purge** deletes entries (the runs' records stay Failed until they expire).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.broker import Broker
from taskq.protocol import DeadField, EntryField, RequeueReply
from taskq.queues import physical
from taskq.tasknames import payload_task

#: Entries per requeue script call, and per page of the dead-letter stream.
REQUEUE_BATCH = 50
PAGE = 500

_REASON, _RUN, _ID = DeadField.REASON.encode(), DeadField.RUN.encode(), DeadField.ID.encode()
_LEVEL, _PAYLOAD = DeadField.PRIORITY.encode(), EntryField.PAYLOAD.encode()


@dataclass(frozen=True)
class DeadEntry:
    """One dead-lettered entry.

    Attributes:
        entry_id: Its id in the dead-letter stream.
        queue: The physical queue (of a partitioned queue, its partition).
        run_id: The run it names (None: none, e.g. an undecodable payload).
        task: The task its payload names (None: the payload does not decode).
        reason: Why it was dead-lettered.
        time_ms: When (its entry id's time, server clock).
        payload_ok: The payload decodes as a taskq message (its signature checked
            when this process has signing keys).
        level: The priority level it came from (0 for entries from before it was
            recorded) (added).
        original_id: Its id in the task stream it came from (added).
    """

    entry_id: str
    queue: str
    run_id: str | None
    task: str | None
    reason: str
    time_ms: int
    payload_ok: bool
    level: int = 0
    original_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _entry(broker: Broker, queue: str, eid: str, fields: dict[bytes, bytes]) -> DeadEntry:
    task, ok = payload_task(broker, fields.get(_PAYLOAD))
    level = fields.get(_LEVEL, b"0")
    return DeadEntry(
        eid,
        queue,
        fields.get(_RUN, b"").decode(errors="replace") or None,
        task,
        fields.get(_REASON, b"").decode(errors="replace"),
        int(eid.partition("-")[0]),
        ok,
        int(level) if level.isdigit() else 0,
        fields.get(_ID, b"").decode(errors="replace") or None,
    )


def _matches(e: DeadEntry, task: str | None, reason: str | None) -> bool:
    if task is not None and e.task != task:
        return False
    return reason is None or reason.lower() in e.reason.lower()


def _scan(broker: Broker, queue: str, task: str | None, reason: str | None) -> Iterator[DeadEntry]:
    """Every matching entry of ``queue``'s partitions, oldest first, in pages; only
    those there when the scan of a partition began (what a requeue sends back and a
    worker dead-letters again is not met twice)."""
    for q in physical(broker, queue):
        newest = broker.dead.newest(q, 1)
        if not newest:
            continue
        after: str | None = None
        while page := broker.dead.page(q, after, PAGE, newest[0][0]):
            for eid, fields in page:
                e = _entry(broker, q, eid, fields)
                if _matches(e, task, reason):
                    yield e
            after = page[-1][0]


def dead_entries(
    broker: Broker,
    queue: str,
    count: int | None = 100,
    *,
    task: str | None = None,
    reason: str | None = None,
) -> list[DeadEntry]:
    """The oldest ``count`` matching entries of ``queue`` (None: all of them, in pages)."""
    out: list[DeadEntry] = []
    for e in _scan(broker, queue, task, reason):
        if count is not None and len(out) >= count:
            break
        out.append(e)
    return out


def dead_entry(broker: Broker, queue: str, entry_id: str) -> DeadEntry | None:
    """The entry ``entry_id`` of ``queue`` (of any of its partitions), or None."""
    for q in physical(broker, queue):
        [found] = broker.dead.entries(q, [entry_id])
        if found is not None:
            return _entry(broker, q, *found)
    return None


def _selected(
    broker: Broker,
    queue: str,
    entry_ids: Sequence[str] | None,
    task: str | None,
    reason: str | None,
) -> Iterator[DeadEntry]:
    if entry_ids is None:
        yield from _scan(broker, queue, task, reason)
        return
    for q in physical(broker, queue):
        for found in broker.dead.entries(q, list(entry_ids)):
            if found is not None and _matches(e := _entry(broker, q, *found), task, reason):
                yield e


def _batches(entries: Iterator[DeadEntry]) -> Iterator[list[DeadEntry]]:
    batch: list[DeadEntry] = []
    for e in entries:
        if batch and (len(batch) >= REQUEUE_BATCH or batch[0].queue != e.queue):
            yield batch
            batch = []
        batch.append(e)
    if batch:
        yield batch


def requeue(
    broker: Broker,
    queue: str,
    entry_ids: Sequence[str] | None = None,
    *,
    task: str | None = None,
    reason: str | None = None,
    progress: Callable[[int], None] | None = None,
    report: Callable[[DeadEntry, RequeueReply, str], None] | None = None,
) -> int:
    """Requeue entries of ``queue`` (see the module docstring).

    Args:
        entry_ids: These entries (those that also match ``task`` / ``reason``);
            None: every entry that matches.
        progress: Called with the number of entries handled after each script call.
        report: Called per entry with its reply and, for ``ENDED``, its run's state
            (added).

    Returns:
        How many entries went back onto their streams.
    """
    moved = 0
    for batch in _batches(_selected(broker, queue, entry_ids, task, reason)):
        items = [(e.entry_id, e.run_id or "", e.task or "", e.level) for e in batch]
        replies = broker.dead.requeue(batch[0].queue, items)
        for e, (code, state) in zip(batch, replies, strict=True):
            moved += code in (RequeueReply.REOPENED, RequeueReply.ADDED)
            if report is not None:
                report(e, code, state)
        if progress is not None:
            progress(len(batch))
    return moved


def purge(
    broker: Broker,
    queue: str,
    entry_ids: Sequence[str] | None = None,
    *,
    task: str | None = None,
    reason: str | None = None,
) -> int:
    """Delete entries of ``queue`` (``entry_ids`` / ``task`` / ``reason`` as for
    :func:`requeue`); how many were deleted."""
    gone = 0
    for batch in _batches(_selected(broker, queue, entry_ids, task, reason)):
        gone += broker.dead.purge(batch[0].queue, [e.entry_id for e in batch])
    return gone
