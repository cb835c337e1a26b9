"""The CLI's printers: what ``taskq events``, ``taskq run`` and ``taskq dead`` show.

The library reads (``taskq.events``, the broker's inspection calls) return data; only this
module turns it into lines and echoes them, so click stays inside ``taskq.cli``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import click

from taskq.broker import Broker
from taskq.events import follow, recent_events
from taskq.message import decode_outcome
from taskq.protocol import DELAYED, DeadField, EventField, RecordField, error_field, started_field

# Dead-letter entry fields, as the stream spells them (bytes).
_DEAD_REASON, _DEAD_RUN = DeadField.REASON.encode(), DeadField.RUN.encode()


def print_events(
    broker: Broker,
    queue: str,
    count: int,
    keep_following: bool,
    on_empty: Callable[[], None] | None = None,
) -> None:
    """Print the last ``count`` events, then new ones when ``keep_following``.

    Args:
        broker: The broker to read from.
        queue: The queue whose events stream is read.
        count: How many of the latest events to print first.
        keep_following: Then block and print new events forever.
        on_empty: Called when there is no event yet (before following).
    """
    last = "0-0"
    for ev in recent_events(broker, queue, count):
        click.echo(str(ev))
        last = ev.id
    if last == "0-0" and on_empty is not None:
        on_empty()
    if keep_following:
        for ev in follow(broker, queue, last):
            click.echo(str(ev))


def print_dead(broker: Broker, queue: str, count: int) -> bool:
    """Print up to ``count`` dead-lettered entries of ``queue``, one line each with its reason.

    Returns:
        Whether there was any entry.
    """
    entries = broker.inspect.dead_entries(queue, count)
    for eid, fields in entries:
        reason = fields.get(_DEAD_REASON, b"").decode(errors="replace")
        run = fields.get(_DEAD_RUN, b"").decode(errors="replace") or "-"
        click.echo(f"{eid}  run={run}  {reason}")
    return bool(entries)


def nothing_on(broker: Broker, message: str) -> None:
    """Say that a queue had nothing to show, and which queues exist under the prefix."""
    click.echo(message)
    names = broker.inspect.queue_names()
    prefix = broker.keys.prefix
    if names:
        click.echo(f"queues under prefix {prefix!r}: {', '.join(names)}")
    else:
        click.echo(f"no queues under prefix {prefix!r}")


def _when(ms: str) -> str:
    stamp = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def describe(broker: Broker, queue: str, run_id: str) -> list[str]:
    """Lines describing the run: state, one line per attempt, then its events.

    Returns:
        The lines, or an empty list when the run is unknown (or expired).
    """
    record = broker.producer.run_record(queue, run_id)
    if not record:
        return []
    attempts, state = int(record.get(RecordField.ATTEMPT, 0)), record.get(RecordField.STATE, "?")
    lines = [f"run {run_id}  queue={queue}  state={state}  attempts={attempts}"]
    if RecordField.NAME in record:
        lines.append(f"  name: {record[RecordField.NAME]}")
    if RecordField.DUE in record and record.get(RecordField.STATE) in DELAYED:
        lines.append(f"  next attempt due {_when(record[RecordField.DUE])}")
    raw = broker.producer.peek_results(queue, [run_id])[0]
    final = decode_outcome(raw) if raw is not None else None
    for a in range(1, attempts + 1):
        start = record.get(started_field(a))
        began = _when(start) if start else "?"
        if error_field(a) in record:
            how = "failed: " + record[error_field(a)]
        elif a == attempts and final is not None:
            how = final.state
        else:
            how = state if a == attempts else "?"
        lines.append(f"  attempt {a}: started {began}  {how}")
    if RecordField.DEAD in record:
        lines.append(f"  dead-lettered: {record[RecordField.DEAD]}")
    lines += _children(broker, queue, run_id, record)
    events = broker.inspect.run_events(queue, run_id)
    if events:
        lines.append("  events:")
        for eid, f in events:
            lines.append(f"    {_when(eid.split('-')[0])}  {_event_line(f)}")
    return lines


def _event_line(f: dict[str, str]) -> str:
    """An event's state, error and due time, as ``taskq run`` lists them."""
    et = f.get(EventField.ERROR_TYPE)
    err = f"  {et}: {f.get(EventField.ERROR_MESSAGE, '')}" if et else ""
    due = f"  due {_when(f[EventField.DUE])}" if EventField.DUE in f else ""
    return f"{f.get(EventField.STATE, '?'):<13}{err}{due}"


def _children(broker: Broker, queue: str, run_id: str, record: dict[str, str]) -> list[str]:
    """A flow's children ``<run_id>.1 ..`` with their states (empty for a task)."""
    seq = int(record.get(RecordField.SEQ, 0))
    _, outcomes = broker.flows.flow_outcomes(queue, run_id, 0)
    queues = [q for q in record.get(RecordField.CHILD_QUEUES, "").split(",") if q] or [queue]
    total = max(seq, len(outcomes))
    if not total:
        return []
    lines = [f"  children: {total}"]
    for n in range(1, total + 1):
        child = f"{run_id}.{n}"
        if child in outcomes:
            state = decode_outcome(outcomes[child]).state
        else:
            state = next(
                (
                    r.get(RecordField.STATE, "?")
                    for q in queues
                    if (r := broker.producer.run_record(q, child))
                ),
                "unknown",
            )
        lines.append(f"    {child}  {state}")
    return lines
