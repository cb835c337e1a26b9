"""The CLI's printers: what ``taskq events``, ``taskq run``, ``taskq dead``,
``taskq queues`` and ``taskq tasks`` show.

A partitioned queue (:mod:`taskq.partitions`) is shown as one queue: its partitions are
listed under it and their counts summed, its events merged in time order.

The library reads (``taskq.events``, the broker's inspection calls) return data; only this
module turns it into lines and echoes them, so click stays inside ``taskq.cli``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import click

from taskq.app import App
from taskq.broker import Broker
from taskq.broker.inspection import QueueCounts
from taskq.broker.logs import LogLine
from taskq.events import Event, follow, read_events, recent_events
from taskq.flows.flow import Flow
from taskq.message import decode_outcome
from taskq.protocol import DELAYED, DeadField, EventField, RecordField, error_field, started_field
from taskq.queues import grouped

# Dead-letter entry fields, as the stream spells them (bytes).
_DEAD_REASON, _DEAD_RUN = DeadField.REASON.encode(), DeadField.RUN.encode()


def print_events(
    broker: Broker,
    queues: Sequence[str],
    count: int,
    keep_following: bool,
    on_empty: Callable[[], None] | None = None,
) -> None:
    """Print the last ``count`` events, then new ones when ``keep_following``.

    Args:
        broker: The broker to read from.
        queues: The queues whose events streams are read (a partitioned queue's
            partitions: their events are merged in time order).
        count: How many of the latest events to print first.
        keep_following: Then block and print new events forever.
        on_empty: Called when there is no event yet (before following).
    """
    many = len(queues) > 1
    latest: list[tuple[str, Event]] = []
    lasts = dict.fromkeys(queues, "0-0")
    for q in queues:
        for ev in recent_events(broker, q, count):
            latest.append((q, ev))
            lasts[q] = ev.id
    latest.sort(key=lambda qe: _stream_id(qe[1].id))
    for q, ev in latest[-count:]:
        click.echo(f"{q}  {ev}" if many else str(ev))
    if not latest and on_empty is not None:
        on_empty()
    if keep_following and not many:
        for ev in follow(broker, queues[0], lasts[queues[0]]):
            click.echo(str(ev))
    elif keep_following:
        block = broker.settings.block_seconds / len(queues)
        while True:  # one blocking read per partition in turn: each is its own hash tag
            for q in queues:
                for ev in read_events(broker, q, lasts[q], 1000, block):
                    lasts[q] = ev.id
                    click.echo(f"{q}  {ev}")


def _stream_id(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def print_dead(broker: Broker, queues: Sequence[str], count: int) -> bool:
    """Print up to ``count`` dead-lettered entries of each of ``queues``, one line each
    with its reason (and its partition, when there are several).

    Returns:
        Whether there was any entry.
    """
    many, any_entry = len(queues) > 1, False
    for q in queues:
        entries = broker.inspect.dead_entries(q, count)
        for eid, fields in entries:
            reason = fields.get(_DEAD_REASON, b"").decode(errors="replace")
            run = fields.get(_DEAD_RUN, b"").decode(errors="replace") or "-"
            line = f"{eid}  run={run}  {reason}"
            click.echo(f"{q}  {line}" if many else line)
        any_entry = any_entry or bool(entries)
    return any_entry


def nothing_on(broker: Broker, message: str) -> None:
    """Say that a queue had nothing to show, and which queues exist under the prefix."""
    click.echo(message)
    groups = grouped(broker.inspect.queue_names())
    prefix = broker.keys.prefix
    if groups:
        shown = [q if ns == [q] else f"{q} ({len(ns)} partitions)" for q, ns in groups.items()]
        click.echo(f"queues under prefix {prefix!r}: {', '.join(shown)}")
    else:
        click.echo(f"no queues under prefix {prefix!r}")


def print_queues(broker: Broker) -> bool:
    """One line per queue under the prefix with its counts; a partitioned queue's line
    sums its partitions', which are listed under it.

    Returns:
        Whether there was any queue.
    """
    groups = grouped(broker.inspect.queue_names())
    names = [n for ns in groups.values() for n in ns]
    counts = dict(zip(names, broker.inspect.queue_counts(names), strict=True))
    head = ("queue", "partitions", "waiting", "pending", "delayed", "dead")
    rows = []
    for q, ns in groups.items():
        total = sum((counts[n] for n in ns), QueueCounts(0, 0, 0, 0))
        rows.append(_row(q, str(len(ns)) if ns != [q] else "-", total))
        if ns != [q]:
            rows += [_row(f"  {n}", "", counts[n]) for n in ns]
    if not rows:
        return False
    width = max(len(r[0]) for r in [head, *rows])
    for r in [head, *rows]:
        click.echo(f"{r[0]:<{width}}  " + "  ".join(f"{c:>10}" for c in r[1:]))
    return True


def _row(name: str, partitions: str, c: QueueCounts) -> tuple[str, ...]:
    return (name, partitions, str(c.waiting), str(c.pending), str(c.delayed), str(c.dead))


def _when(ms: str) -> str:
    stamp = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def describe(broker: Broker, queue: str, run_id: str) -> list[str]:
    """Lines describing the run: state, one line per attempt, its events, then its log.

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
            how = (
                final.state
                if final.kept
                else f"{final.state} (value not kept: persist_result=False)"
            )
        else:
            how = state if a == attempts else "?"
        lines.append(f"  attempt {a}: started {began}  {how}")
    if RecordField.DEAD in record:
        lines.append(f"  dead-lettered: {record[RecordField.DEAD]}")
    if RecordField.CANCEL in record:
        lines.append(f"  cancel: {record[RecordField.CANCEL]}")
    if RecordField.PROGRESS in record:
        done = float(record[RecordField.PROGRESS])
        note = record.get(RecordField.PROGRESS_MESSAGE, "")
        lines.append(f"  progress: {done:.0%}" + (f"  {note}" if note else ""))
    lines += _children(broker, queue, run_id, record)
    events = broker.inspect.run_events(queue, run_id)
    if events:
        lines.append("  events:")
        for eid, f in events:
            lines.append(f"    {_when(eid.split('-')[0])}  {_event_line(f)}")
    lines += log_lines(broker.inspect.run_logs(queue, run_id))
    return lines


def log_lines(logs: Sequence[LogLine]) -> list[str]:
    """A run's log as ``taskq run`` lists it: time, level, attempt, then the message
    (its further lines indented under it). Empty when there is none."""
    if not logs:
        return []
    out = ["  log:"]
    for line in logs:
        first, *rest = line.message.split("\n")
        head = f"    {_when(str(line.time_ms))}  {line.level_name:<8} #{line.attempt}  "
        out.append(head + first)
        out += [" " * len(head) + more for more in rest]
    return out


def _event_line(f: dict[str, str]) -> str:
    """An event's state, error and due time, as ``taskq run`` lists them."""
    et = f.get(EventField.ERROR_TYPE)
    err = f"  {et}: {f.get(EventField.ERROR_MESSAGE, '')}" if et else ""
    due = f"  due {_when(f[EventField.DUE])}" if EventField.DUE in f else ""
    if EventField.PROGRESS in f:
        note = f.get(EventField.PROGRESS_MESSAGE, "")
        due += f"  {float(f[EventField.PROGRESS]):.0%}" + (f" {note}" if note else "")
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


def task_lines(app: App) -> list[str]:
    """What ``taskq tasks`` prints: one block per registered task or flow, by name."""
    lines: list[str] = []
    for name in sorted(app.registry):
        task = app.registry[name]
        o = task.options
        kind = "flow" if isinstance(task, Flow) else "task"
        head = f"{name}  {kind}  queue={task.queue}  retries={o.retry.retries}"
        if task.version is not None:
            head += f"  version={task.version}"
        if not o.persist_result:
            head += "  persist_result=False"
        if o.result_storage_key is not None:
            head += f"  result_storage_key={o.result_storage_key!r}"
        lines.append(head)
        if task.description:
            lines.append(f"  {task.description.splitlines()[0]}")
    return lines or ["no tasks registered"]
