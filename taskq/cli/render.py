"""Rich tables and the text forms of the read model, for ``taskq info``, ``runs``,
``events`` and ``dead``; and ``--json`` output (the read model's ``as_json``).

Times are UTC ISO 8601 with milliseconds (``2026-12-04T18:05:01.123Z``). Output that
is not a terminal gets a wide console (no wrapping or cropping), so pipes and tests
read whole lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from taskq.deadletters import DeadEntry
from taskq.overview import NamedEvent, QueueInfo, RunSummary, WorkerInfo


def console() -> Console:
    """A console on stdout: the terminal's width, or 200 columns when not a terminal."""
    tty = sys.stdout.isatty()
    return Console(highlight=False, width=None if tty else 200, soft_wrap=not tty)


def iso(ms: int | None) -> str:
    """Unix ms as UTC ISO 8601 with milliseconds; ``-`` for None or 0."""
    if not ms:
        return "-"
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def age(ms: int) -> str:
    """A duration in ms as people read it: ``0.4 s``, ``12 s``, ``5 min``, ``3 h``."""
    s = ms / 1000
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.0f} h"


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def _table(*columns: str, right: Sequence[str] = ()) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c, justify="right" if c in right else "left", no_wrap=True)
    return table


def queues_table(queues: Sequence[QueueInfo]) -> Table:
    """Per queue its totals, then one line per priority level when it has several."""
    numbers = ("backlog", "in flight", "delayed", "dead", "consumers", "done/s")
    table = _table("queue", "level", "partitions", *numbers, right=numbers)
    for q in queues:
        parts = str(len(q.partitions)) if q.partitions != [q.queue] else "-"
        table.add_row(
            q.queue,
            "all",
            parts,
            str(q.backlog),
            str(q.in_flight),
            str(q.delayed),
            str(q.dead),
            str(q.consumers_alive),
            f"{q.throughput_per_s:.2f}",
        )
        if len(q.levels) > 1:
            for lv in sorted(q.levels, key=lambda lv: -lv.level):
                table.add_row("", f"p{lv.level}", "", str(lv.backlog), str(lv.in_flight))
    return table


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    """One line per worker process: where, what it serves, how busy, last heartbeat."""
    table = _table("worker", "host", "pid", "queues", "slots", "heartbeat", "state", "started")
    for w in workers:
        table.add_row(
            w.worker_id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            f"{w.busy}/{w.slots}",
            f"{age(w.heartbeat_age_ms)} ago",
            "alive" if w.alive else "stale",
            iso(w.started_ms),
        )
    return table


def runs_table(runs: Sequence[RunSummary]) -> Table:
    """Recent runs, newest first."""
    table = _table("updated", "run", "queue", "task", "state", "attempt", right=("attempt",))
    for r in runs:
        table.add_row(iso(r.updated_ms), r.run_id, r.queue, r.task or "-", r.state, str(r.attempt))
    return table


def dead_table(entries: Sequence[DeadEntry], many: bool) -> Table:
    """Dead-lettered entries, oldest first (with their partition when ``many``)."""
    head = ("entry", "time", "run", "task", "reason")
    table = _table(*(("queue", *head) if many else head))
    for e in entries:
        row = (e.entry_id, iso(e.time_ms), e.run_id or "-", e.task or "-", e.reason)
        table.add_row(*((e.queue, *row) if many else row))
    return table


def event_line(ev: NamedEvent, many: bool) -> str:
    """One event as ``taskq events`` prints it (its partition first when ``many``)."""
    attempt = f"  attempt={ev.attempt}" if ev.attempt is not None else ""
    more = f"  {ev.error}" if ev.error else ""
    if ev.due_ms is not None:
        more += f"  due {iso(ev.due_ms)}"
    if ev.requeued:
        more += "  (requeued)"
    line = f"{iso(ev.time_ms)}  {ev.run_id}  {ev.task or '-'}  {ev.state:<13}{attempt}{more}"
    return f"{ev.queue}  {line}" if many else line
