"""The read model of runs: recent runs, and events with task names.

Part of :mod:`taskq.overview` (which re-exports every name here). Pure reads, each
bounded: recent runs are found in the newest entries of the queues' events streams
(at most :data:`SCAN_ENTRIES` entries per queue and call, in pages), never by a scan
of run records. Times are Unix milliseconds (stream ids: the server's clock).
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.broker import Broker
from taskq.protocol import (
    PROGRESS_EVENT,
    EventField,
    RecordField,
)
from taskq.queues import grouped, physical
from taskq.tasknames import from_records

#: Events-stream entries read per page, and at most per queue and call, by recent_runs.
PAGE_ENTRIES = 200
SCAN_ENTRIES = 2000


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


@dataclass(frozen=True)
class RunSummary:
    """One run, as a listing shows it.

    Attributes:
        run_id: The run's id.
        queue: The physical queue holding it (of a partitioned queue, its partition).
        task: The task's name, None when no source still names it.
        state: Its state name (the record's; the latest event's if the record expired).
        attempt: Its attempt number (0: not started).
        updated_ms: Time of the latest transition seen (its event, or its latest start).
        spawned: Children it spawned, for a flow's child that is a flow itself
            (:func:`taskq.overview.flow_children`; 0 elsewhere) (added).
    """

    run_id: str
    queue: str
    task: str | None
    state: str
    attempt: int
    updated_ms: int
    spawned: int = 0

    def as_json(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class NamedEvent:
    """One transition of one run, with the run's task name.

    Attributes:
        id: The events-stream entry id (entries of a batch share it).
        time_ms: When it happened (the entry id's time, server clock).
        queue: The physical queue.
        run_id: The run.
        task: Its task's name (None: no source still names it).
        state: The state entered (``Progress`` for a progress report).
        attempt: The attempt, where the event names one.
        error: ``"Type: message"`` of a failed attempt.
        due_ms: When a delayed run comes due.
        requeued: The run's Pending event after an operator's requeue (added).
    """

    id: str
    time_ms: int
    queue: str
    run_id: str
    task: str | None
    state: str
    attempt: int | None
    error: str | None
    due_ms: int | None
    requeued: bool = False

    def as_json(self) -> dict[str, Any]:
        return as_dict(self)


def event_of(queue: str, eid: str, f: dict[str, str], task: str | None) -> NamedEvent:
    et = f.get(EventField.ERROR_TYPE)
    error = f"{et}: {f.get(EventField.ERROR_MESSAGE, '')}" if et else None
    attempt = f.get(EventField.ATTEMPT)
    due = f.get(EventField.DUE)
    return NamedEvent(
        eid,
        int(eid.partition("-")[0]),
        queue,
        f.get(EventField.RUN, ""),
        f.get(EventField.TASK) or task,
        f.get(EventField.STATE, ""),
        int(attempt) if attempt and attempt.isdigit() else None,
        error,
        int(due) if due and due.isdigit() else None,
        EventField.REQUEUED in f,
    )


def named_events(
    broker: Broker,
    queue: str,
    after: str = "0-0",
    count: int = 1000,
    block: float | None = None,
    *,
    tasks: MutableMapping[str, str | None] | None = None,
) -> list[NamedEvent]:
    """Events of physical queue ``queue`` after stream id ``after``, oldest first,
    each with its run's task name (from the events, else the run's record: one more
    round trip for the runs not named yet).

    Args:
        tasks: A cache of run id -> task name the caller keeps between calls (a
            follower), so each run's record is read at most once.
    """
    raw = broker.inspect.events(queue, after, count, block)
    return name_events(broker, queue, raw, {} if tasks is None else tasks)


def name_events(
    broker: Broker,
    queue: str,
    raw: Sequence[tuple[str, dict[str, str]]],
    cache: MutableMapping[str, str | None],
) -> list[NamedEvent]:
    """``(entry id, fields)`` events of ``queue`` as :class:`NamedEvent` s, their runs'
    tasks from the events, ``cache``, else the records (one round trip; ``cache``
    learns them)."""
    for _, f in raw:
        rid, task = f.get(EventField.RUN, ""), f.get(EventField.TASK)
        if task:
            cache[rid] = task
        elif rid and rid not in cache:
            cache[rid] = None
    unknown: dict[str, str | None] = {
        rid: None for _, f in raw if (rid := f.get(EventField.RUN, "")) and not cache[rid]
    }
    if unknown:
        from_records(broker, queue, unknown)
        for rid, task in unknown.items():
            if task:
                cache[rid] = task
    return [event_of(queue, eid, f, cache.get(f.get(EventField.RUN, ""))) for eid, f in raw]


def _queues(broker: Broker, queues: Sequence[str] | None) -> list[str]:
    if queues is None:
        return [n for ns in grouped(broker.inspect.queue_names()).values() for n in ns]
    return [p for q in queues for p in physical(broker, q)]


def recent_runs(
    broker: Broker,
    queues: Sequence[str] | None = None,
    *,
    state: str | None = None,
    task: str | None = None,
    limit: int = 50,
) -> list[RunSummary]:
    """The runs with the most recent transitions, newest first.

    Found in the newest events of each queue (at most :data:`SCAN_ENTRIES` stream
    entries per physical queue, read in pages until ``limit`` runs match); the state,
    attempt and task then come from the runs' records (one round trip per page of
    runs), else from the events.

    Args:
        queues: Queue names (a partitioned queue: its partitions); None: every queue.
        state: Only runs in this state (a name such as ``Failed``; any case).
        task: Only runs of this task (its registered name).
        limit: At most this many runs.
    """
    out: list[RunSummary] = []
    for q in _queues(broker, queues):
        out += _recent(broker, q, state, task, limit)
    out.sort(key=lambda r: r.updated_ms, reverse=True)
    return out[:limit]


def _recent(
    broker: Broker, queue: str, state: str | None, task: str | None, limit: int
) -> list[RunSummary]:
    found: list[RunSummary] = []
    seen: dict[str, tuple[str, int, int]] = {}  # run -> (state, attempt, time) of latest
    named: dict[str, str | None] = {}
    before: str | None = None
    scanned = 0
    while len(found) < limit and scanned < SCAN_ENTRIES:
        page, before, n = broker.inspect.events_before(queue, before, PAGE_ENTRIES)
        scanned += n
        fresh: list[str] = []
        for eid, f in page:
            rid, s = f.get(EventField.RUN, ""), f.get(EventField.STATE, "")
            if not rid or s == PROGRESS_EVENT:
                continue
            if f.get(EventField.TASK):
                named[rid] = f[EventField.TASK]
            if rid not in seen:
                a = f.get(EventField.ATTEMPT, "0")
                seen[rid] = (s, int(a) if a.isdigit() else 0, int(eid.partition("-")[0]))
                fresh.append(rid)
        fresh = [r for r in fresh if _may_match(r, seen, named, state, task)]
        found += _summaries(broker, queue, fresh, seen, named, state, task)
        if before is None:
            break
    return found[:limit]


def _may_match(
    rid: str,
    seen: dict[str, tuple[str, int, int]],
    named: dict[str, str | None],
    state: str | None,
    task: str | None,
) -> bool:
    """Whether ``rid`` can pass the filters, by its events alone, so that only such runs'
    records are read: its newest event (the first seen, newest first) has the state its
    record has, since the script that changes a record also adds its event; a task
    named by its events is its task."""
    if state is not None and seen[rid][0].lower() != state.lower():
        return False
    known = named.get(rid)
    return task is None or known is None or known == task


def _summaries(
    broker: Broker,
    queue: str,
    run_ids: list[str],
    seen: dict[str, tuple[str, int, int]],
    named: dict[str, str | None],
    state: str | None,
    task: str | None,
) -> list[RunSummary]:
    """Summaries of ``run_ids`` (newest first) that match the filters, from their records."""
    fields = [RecordField.STATE, RecordField.ATTEMPT, RecordField.TASK]
    out = []
    for rid, (s, a, k) in zip(
        run_ids, broker.inspect.run_fields(queue, run_ids, fields), strict=True
    ):
        ev_state, ev_attempt, when = seen[rid]
        run = RunSummary(
            rid,
            queue,
            named.get(rid) or k,
            s or ev_state,
            int(a) if a and a.isdigit() else ev_attempt,
            when,
        )
        if state is not None and run.state.lower() != state.lower():
            continue
        if task is not None and run.task != task:
            continue
        out.append(run)
    return out
