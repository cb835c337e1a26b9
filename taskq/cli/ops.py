"""``taskq info``, ``taskq runs`` and ``taskq events``: what operators read, from the read
model (:mod:`taskq.overview`), as rich tables or ``--json``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from taskq.cli.common import as_json, connection, state_option

if TYPE_CHECKING:
    from taskq.overview import NamedEvent


@click.command()
@click.option(
    "--queue", "-q", "queues", multiple=True, help="Only this queue (repeatable) [default: all]."
)
@click.option(
    "--window",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Throughput window.",
)
@connection
@as_json
def info(
    queues: tuple[str, ...], window: float, redis_url: str | None, prefix: str, as_json: bool
) -> None:
    """Per queue and priority level: backlog, in flight, delayed, dead, consumers alive and
    runs finished per second; then per worker process: host, pid, queues, slots busy/total
    and its last heartbeat."""
    from taskq.app import App, check_queue
    from taskq.cli.render import console, echo_json, queues_table, workers_table
    from taskq.overview import queue_info, worker_info

    for q in queues:
        check_queue(q)
    broker = App(redis_url, prefix=prefix).broker
    qs = queue_info(broker, list(queues) or None, window_s=window)
    ws = worker_info(broker)
    if as_json:
        echo_json({"queues": [q.as_json() for q in qs], "workers": [w.as_json() for w in ws]})
        return
    out = console()
    if qs:
        out.print(queues_table(qs))
    else:
        out.print(f"no queues under prefix {prefix!r}")
    out.print()
    if ws:
        alive = sum(w.alive for w in ws)
        out.print(
            f"workers: {alive} alive" + (f", {len(ws) - alive} stale" if alive < len(ws) else "")
        )
        out.print(workers_table(ws))
    else:
        out.print("no workers (none has sent a heartbeat)")


@click.command()
@click.option("--queue", "-q", "queues", multiple=True, help="Only this queue (repeatable).")
@state_option()
@click.option("--task", "-t", help="Only runs of this task (its registered name).")
@click.option("--count", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@connection
@as_json
def runs(
    queues: tuple[str, ...],
    state: str | None,
    task: str | None,
    count: int,
    redis_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """Recent runs, newest first: when they last changed, queue, task, state, attempt.

    Found in the newest entries of the queues' events streams (so a run idle for
    longer than the stream's history is not listed; `taskq run ID` still shows it).
    """
    from taskq.app import App, check_queue
    from taskq.cli.render import console, echo_json, runs_table
    from taskq.overview import recent_runs

    for q in queues:
        check_queue(q)
    broker = App(redis_url, prefix=prefix).broker
    found = recent_runs(broker, list(queues) or None, state=state, task=task, limit=count)
    if as_json:
        echo_json([r.as_json() for r in found])
    elif found:
        console().print(runs_table(found))
    else:
        click.echo("no runs found")


@click.command()
@click.option("--queue", "-q", default="default", show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@click.option("--count", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--task", "-t", help="Only events of runs of this task.")
@state_option(events=True)
@connection
@as_json
def events(
    queue: str,
    follow: bool,
    count: int,
    task: str | None,
    state: str | None,
    redis_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """Print a queue's state transitions with task names and UTC times (its capped events
    stream; a partitioned queue's partitions' streams, merged). --json: one JSON object
    per line."""
    from taskq.app import App, check_queue
    from taskq.cli.render import event_line
    from taskq.cli.show import nothing_on
    from taskq.eventfeed import EventFilter, follow_events, latest_events
    from taskq.queues import physical

    check_queue(queue)
    broker = App(redis_url, prefix=prefix).broker
    queues = physical(broker, queue)
    many = len(queues) > 1
    keep = EventFilter(task, state)

    def show(ev: NamedEvent) -> None:
        click.echo(json.dumps(ev.as_json()) if as_json else event_line(ev, many))

    latest, lasts, names = latest_events(broker, queues, count, keep)
    for ev in latest:
        show(ev)
    if not latest and not as_json:
        none = f"no events on queue {queue!r}" + (" yet; following" if follow else "")
        if keep.everything:
            nothing_on(broker, none)
        else:
            click.echo(
                f"no matching events on queue {queue!r}" + (" yet; following" if follow else "")
            )
    if follow:
        for ev in follow_events(broker, queues, lasts, keep, names):
            show(ev)
