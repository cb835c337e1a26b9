"""``taskq dead list | show | requeue | purge``: a queue's dead-lettered entries
(:mod:`taskq.deadletters`). ``taskq dead`` alone is ``taskq dead list``.

The group and each subcommand take ``--queue``, ``--redis-url`` and ``--prefix``
(either place: ``taskq dead --queue q list`` or ``taskq dead list --queue q``).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from taskq.cli.common import as_json, connection


def _where(fn: Any) -> Any:
    fn = click.option("--queue", "-q", help="The queue [default: default].")(fn)
    return connection(fn)


def _broker(ctx: click.Context, queue: str | None, redis_url: str | None, prefix: str) -> Any:
    """The broker and queue of a dead command: the subcommand's options, else the group's."""
    from taskq.app import App, check_queue
    from taskq.config import DEFAULT_PREFIX

    group = ctx.find_root().meta.get("taskq.dead", {})
    queue = queue or group.get("queue") or "default"
    redis_url = redis_url or group.get("redis_url")
    if prefix == DEFAULT_PREFIX:
        prefix = group.get("prefix") or prefix
    check_queue(queue)
    return App(redis_url, prefix=prefix).broker, queue


@click.group(invoke_without_command=True)
@_where
@click.option("--count", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_context
def dead(
    ctx: click.Context, queue: str | None, redis_url: str | None, prefix: str, count: int
) -> None:
    """A queue's dead-lettered entries (of every partition): list (the default), show,
    requeue (as new attempts of the same runs) and purge."""
    ctx.find_root().meta["taskq.dead"] = {"queue": queue, "redis_url": redis_url, "prefix": prefix}
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, queue=queue, redis_url=redis_url, prefix=prefix, count=count)


@dead.command(name="list")
@_where
@click.option("--count", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--task", "-t", help="Only entries of this task.")
@click.option("--reason", "-r", help="Only entries whose reason contains this (any case).")
@as_json
@click.pass_context
def list_cmd(
    ctx: click.Context,
    queue: str | None,
    redis_url: str | None,
    prefix: str,
    count: int,
    task: str | None = None,
    reason: str | None = None,
    as_json: bool = False,
) -> None:
    """List the oldest entries: id, time, run, task and why."""
    from taskq.cli.render import console, dead_table, echo_json
    from taskq.cli.show import nothing_on
    from taskq.deadletters import dead_entries
    from taskq.queues import physical

    broker, queue = _broker(ctx, queue, redis_url, prefix)
    entries = dead_entries(broker, queue, count, task=task, reason=reason)
    if as_json:
        echo_json([e.as_json() for e in entries])
    elif entries:
        console().print(dead_table(entries, len(physical(broker, queue)) > 1))
    elif task is None and reason is None:
        nothing_on(broker, f"no dead-lettered entries on queue {queue!r}")
    else:
        click.echo(f"no matching dead-lettered entries on queue {queue!r}")


@dead.command()
@click.argument("entry_id", metavar="ENTRY")
@_where
@as_json
@click.pass_context
def show(
    ctx: click.Context,
    entry_id: str,
    queue: str | None,
    redis_url: str | None,
    prefix: str,
    as_json: bool,
) -> None:
    """Show one entry: its run, task, reason, level, and the run's state. Exit 1 if none."""
    from taskq.cli.render import echo_json, iso
    from taskq.deadletters import dead_entry
    from taskq.overview import run_detail

    broker, queue = _broker(ctx, queue, redis_url, prefix)
    e = dead_entry(broker, queue, entry_id)
    if e is None:
        raise click.ClickException(f"no dead-lettered entry {entry_id!r} on queue {queue!r}")
    run = run_detail(broker, e.run_id, e.queue) if e.run_id else None
    if as_json:
        echo_json({**e.as_json(), "run_state": run.state if run else None})
        return
    click.echo(f"entry {e.entry_id}  queue={e.queue}  dead-lettered {iso(e.time_ms)}")
    click.echo(f"  reason: {e.reason}")
    click.echo(
        f"  run: {e.run_id or '-'}"
        + (f"  ({run.state}, attempt {len(run.attempts)})" if run else "")
    )
    click.echo(f"  task: {e.task or '-'}" + ("" if e.payload_ok else "  (payload does not decode)"))
    click.echo(f"  priority level: {e.level}  stream entry: {e.original_id or '-'}")


def _selection(entries: tuple[str, ...], all_: bool, verb: str) -> list[str] | None:
    if bool(entries) == all_:
        raise click.UsageError(f"name the entries to {verb}, or pass --all (not both)")
    return list(entries) if entries else None


@dead.command()
@click.argument("entries", nargs=-1, metavar="[ENTRY]...")
@click.option("--all", "all_", is_flag=True, help="Every entry (that matches --task / --reason).")
@click.option("--task", "-t", help="Only entries of this task.")
@click.option("--reason", "-r", help="Only entries whose reason contains this (any case).")
@_where
@click.pass_context
def requeue(
    ctx: click.Context,
    entries: tuple[str, ...],
    all_: bool,
    task: str | None,
    reason: str | None,
    queue: str | None,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Put entries back on their queue (and priority level), each in one atomic step: a
    run the dead letter ended runs again as its next attempt; one that ended otherwise
    is not requeued (its entry is removed). Interrupting loses nothing."""
    from rich.progress import Progress

    from taskq.cli.render import console
    from taskq.deadletters import DeadEntry, dead_entries
    from taskq.deadletters import requeue as requeue_entries
    from taskq.protocol import RequeueReply

    ids = _selection(entries, all_, "requeue")
    broker, queue = _broker(ctx, queue, redis_url, prefix)
    if ids is None:
        ids = [e.entry_id for e in dead_entries(broker, queue, None, task=task, reason=reason)]
    notes: list[str] = []
    counts = dict.fromkeys(RequeueReply, 0)

    def report(e: DeadEntry, code: RequeueReply, state: str) -> None:
        counts[code] += 1
        if code is RequeueReply.ENDED:
            notes.append(f"{e.entry_id}: run {e.run_id} is {state}: not requeued, entry removed")
        elif code is RequeueReply.GONE:
            notes.append(f"{e.entry_id}: no longer dead-lettered (requeued or purged meanwhile)")

    out = console()
    with Progress(console=out, transient=True, disable=not out.is_terminal) as bar:
        job = bar.add_task("requeueing", total=len(ids))
        moved = requeue_entries(
            broker,
            queue,
            ids,
            task=task,
            reason=reason,
            progress=lambda n: bar.advance(job, n),
            report=report,
        )
    for note in notes:
        click.echo(note)
    missing = len(ids) - sum(counts.values())
    if missing and entries:
        click.echo(f"{missing} entr{'y' if missing == 1 else 'ies'} not found (or not matching)")
    click.echo(
        f"requeued {moved} entr{'y' if moved == 1 else 'ies'} on queue {queue!r} "
        f"({counts[RequeueReply.REOPENED]} run(s) reopened as a new attempt, "
        f"{counts[RequeueReply.ADDED]} without a known run)"
    )


@dead.command()
@click.argument("entries", nargs=-1, metavar="[ENTRY]...")
@click.option("--all", "all_", is_flag=True, help="Every entry (that matches --task / --reason).")
@click.option("--task", "-t", help="Only entries of this task.")
@click.option("--reason", "-r", help="Only entries whose reason contains this (any case).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_where
@click.pass_context
def purge(
    ctx: click.Context,
    entries: tuple[str, ...],
    all_: bool,
    task: str | None,
    reason: str | None,
    yes: bool,
    queue: str | None,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Delete entries for good (their runs stay Failed). Asks first unless --yes; not on
    a terminal, --yes is required."""
    from taskq.deadletters import dead_entries
    from taskq.deadletters import purge as purge_entries

    ids = _selection(entries, all_, "purge")
    if not yes and not sys.stdin.isatty():
        raise click.UsageError(
            "purge deletes entries for good: pass --yes (stdin is not a terminal)"
        )
    broker, queue = _broker(ctx, queue, redis_url, prefix)
    if ids is None:
        ids = [e.entry_id for e in dead_entries(broker, queue, None, task=task, reason=reason)]
    if not ids:
        click.echo(f"nothing to purge on queue {queue!r}")
        return
    what = f"{len(ids)} dead-lettered entr{'y' if len(ids) == 1 else 'ies'} of queue {queue!r}"
    if not yes and not click.confirm(f"delete {what} for good?"):
        click.echo("nothing purged")
        sys.exit(1)
    gone = purge_entries(broker, queue, ids, task=task, reason=reason)
    click.echo(f"purged {gone} entr{'y' if gone == 1 else 'ies'} on queue {queue!r}")
