"""One run in detail: ``taskq run ID`` and the dashboard's run page.

Part of :mod:`taskq.overview` (which re-exports every name here). Reads the run's
own keys (record, result, log, a flow's fan-in keys) and its queue's events stream
(as ``taskq run`` always did). Times are Unix milliseconds (server clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskq.broker import Broker
from taskq.errors import MessageError
from taskq.message import Outcome, decode_outcome
from taskq.protocol import (
    EntryField,
    EventField,
    RecordField,
    StateName,
    error_field,
    started_field,
)
from taskq.queues import physical
from taskq.runview import RunSummary, as_dict, event_of
from taskq.tasknames import payload_task

#: A result's repr is cut to this many characters.
RESULT_CHARS = 500
#: Children a run's detail lists at most.
MAX_CHILDREN = 1000


@dataclass(frozen=True)
class AttemptInfo:
    """One attempt of a run: when it started and how it failed (if it did)."""

    attempt: int
    started_ms: int | None
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class RunDetail:
    """Everything known about one run (``taskq run ID``).

    Attributes:
        run_id, queue, task, state: As in :class:`RunSummary`.
        attempts: Every attempt, first to last.
        result: The repr of its value (cut to :data:`RESULT_CHARS`), None if none
            or not kept.
        error: The final error (``"Type: message"``) of a Failed, Crashed, Cancelled
            or dead-lettered run.
        children: A flow's children, in spawn order (empty for a task).
        events: Its events still in the capped stream (:meth:`NamedEvent.as_json`).
        logs: Its log lines (``time_ms``, ``level``, ``level_name``, ``attempt``,
            ``message``).
        name: Its display name (``task_run_name``), if any (added).
        dead: Why it was dead-lettered, if it was (added).
        due_ms: When a delayed run comes due (added).
    """

    run_id: str
    queue: str
    task: str | None
    state: str
    attempts: list[AttemptInfo]
    result: str | None
    error: str | None
    children: list[RunSummary]
    events: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    name: str | None = None
    dead: str | None = None
    due_ms: int | None = None

    def as_json(self) -> dict[str, Any]:
        return as_dict(self)


def locate(broker: Broker, run_id: str, queue: str | None = None) -> str | None:
    """The physical queue holding ``run_id``'s record (a SCAN when ``queue`` is None;
    of a partitioned ``queue``, its partitions are asked in one round trip)."""
    if queue is None:
        return broker.producer.find_run(run_id)
    names = physical(broker, queue)
    return broker.producer.holder(names, run_id) or broker.producer.find_run(run_id, queue)


def run_detail(broker: Broker, run_id: str, queue: str | None = None) -> RunDetail | None:
    """Everything known about ``run_id`` (None: unknown, or its record expired).

    Args:
        queue: Its queue (logical or physical); None: found by a SCAN.
    """
    where = locate(broker, run_id, queue)
    record = broker.producer.run_record(where, run_id) if where else {}
    if where is None or not record:
        return None
    raw = broker.producer.peek_results(where, [run_id])[0]
    outcome = _outcome(raw)
    events = broker.inspect.run_events(where, run_id)
    task = next((f[EventField.TASK] for _, f in events if f.get(EventField.TASK)), None)
    task = task or record.get(RecordField.TASK) or _stream_task(broker, where, record)
    if task is None and outcome is not None and outcome.call is not None:
        task = outcome.call[0]
    n = int(record.get(RecordField.ATTEMPT, 0) or 0)
    attempts = [
        AttemptInfo(a, _int(record.get(started_field(a))), record.get(error_field(a)))
        for a in range(1, n + 1)
    ]
    result = error = None
    if outcome is not None and outcome.error is not None:
        error = f"{outcome.error.type}: {outcome.error.message}"
    elif outcome is not None and outcome.kept and outcome.value is not None:
        result = _cut(repr(outcome.value))
    due = record.get(RecordField.DUE)
    return RunDetail(
        run_id,
        where,
        task,
        record.get(RecordField.STATE, "?"),
        attempts,
        result,
        error,
        flow_children(broker, where, run_id, record),
        [event_of(where, eid, f, task).as_json() for eid, f in events],
        [line.to_dict() for line in broker.inspect.run_logs(where, run_id)],
        record.get(RecordField.NAME),
        record.get(RecordField.DEAD),
        _int(due),
    )


def flow_children(
    broker: Broker, queue: str, run_id: str, record: dict[str, str] | None = None
) -> list[RunSummary]:
    """A flow's children ``<run_id>.1 ..`` in spawn order (at most :data:`MAX_CHILDREN`),
    with their states: from their outcomes, else their records (empty for a task)."""
    if record is None:
        record = broker.producer.run_record(queue, run_id)
    seq = int(record.get(RecordField.SEQ, 0) or 0)
    _, outcomes = broker.flows.flow_outcomes(queue, run_id, 0)
    total = min(max(seq, len(outcomes)), MAX_CHILDREN)
    if not total:
        return []
    queues = [q for q in record.get(RecordField.CHILD_QUEUES, "").split(",") if q] or [queue]
    ids = [f"{run_id}.{i}" for i in range(1, total + 1)]
    fields = [
        RecordField.STATE,
        RecordField.ATTEMPT,
        RecordField.TASK,
        started_field(1),
        RecordField.SEQ,
    ]
    rows: dict[str, tuple[str, list[str | None]]] = {}
    for q in queues:
        for rid, row in zip(ids, broker.inspect.run_fields(q, ids, fields), strict=True):
            if row[0] is not None and rid not in rows:
                rows[rid] = (q, row)
    ended_children = {
        q: dict(zip(ids, broker.inspect.flow_sizes(q, ids), strict=True)) for q in queues
    }
    out = []
    for rid in ids:
        q, (s, a, k, t1, spawned) = rows.get(rid, (queues[0], [None] * len(fields)))
        spawned = str(max(_int(spawned) or 0, ended_children[q][rid]))
        ended = _outcome(outcomes.get(rid))
        if ended is not None:
            s, a = ended.state, str(ended.attempt)
            k = k or (ended.call[0] if ended.call else None)
        state = s or StateName.UNKNOWN
        out.append(RunSummary(rid, q, k, state, _int(a) or 0, _int(t1) or 0, _int(spawned) or 0))
    return out


def _outcome(raw: bytes | None) -> Outcome | None:
    if raw is None:
        return None
    try:
        return decode_outcome(raw)
    except MessageError:
        return None


def _stream_task(broker: Broker, queue: str, record: dict[str, str]) -> str | None:
    """The task named by the payload of the run's stream entry, while it is there."""
    eid = record.get(RecordField.ENTRY)
    fields = broker.inspect.stream_entry(queue, eid) if eid else None
    return payload_task(broker, fields.get(EntryField.PAYLOAD.encode()) if fields else None)[0]


def _int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None


def _cut(text: str) -> str:
    return text if len(text) <= RESULT_CHARS else text[: RESULT_CHARS - 3] + "..."
