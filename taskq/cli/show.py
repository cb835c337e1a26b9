"""The CLI's printers: what ``taskq events``, ``taskq run``, ``taskq dead``,
``taskq queues`` and ``taskq tasks`` show.

A partitioned queue (:mod:`taskq.partitions`) is shown as one queue: its partitions are
listed under it and their counts summed, its events merged in time order.

The library reads (``taskq.events``, the broker's inspection calls) return data; only this
module turns it into lines and echoes them, so click stays inside ``taskq.cli``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import click

from taskq.app import App
from taskq.broker import Broker
from taskq.broker.inspection import QueueCounts
from taskq.broker.logs import LogLine
from taskq.flows.flow import Flow
from taskq.message import decode_outcome
from taskq.overview import RunSummary, flow_children, run_detail
from taskq.protocol import DELAYED, EventField, RecordField, error_field, started_field
from taskq.queues import grouped

#: Levels of a flow's child tree ``taskq run`` shows.
TREE_DEPTH = 4


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
    detail = run_detail(broker, run_id, queue)
    if detail is not None and detail.task:
        lines.append(f"  task: {detail.task}")
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
    if detail is not None and detail.result is not None:
        lines.append(f"  result: {detail.result}")
    elif detail is not None and detail.error is not None:
        lines.append(f"  error: {detail.error}")
    if RecordField.DEAD in record:
        lines.append(f"  dead-lettered: {record[RecordField.DEAD]}")
    if RecordField.CANCEL in record:
        lines.append(f"  cancel: {record[RecordField.CANCEL]}")
    if RecordField.PROGRESS in record:
        done = float(record[RecordField.PROGRESS])
        note = record.get(RecordField.PROGRESS_MESSAGE, "")
        lines.append(f"  progress: {done:.0%}" + (f"  {note}" if note else ""))
    lines += _children(broker, detail.children if detail is not None else [])
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


def _children(broker: Broker, children: Sequence[RunSummary], depth: int = 1) -> list[str]:
    """A flow's children ``<run_id>.1 ..`` with their tasks and states, as a tree: a child
    that is a flow lists its own children under it (down to ``TREE_DEPTH`` levels)."""
    if not children:
        return []
    pad = "    " * depth
    lines = [f"  children: {len(children)}"] if depth == 1 else []
    for i, c in enumerate(children):
        last = i == len(children) - 1
        branch = "└─ " if last else "├─ "
        lines.append(f"{pad}{branch}{c.run_id}  {c.state}  {c.task or '-'}")
        if c.spawned and depth < TREE_DEPTH:
            lines += _children(broker, flow_children(broker, c.queue, c.run_id), depth + 1)
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
