"""The ``taskq`` command: parses arguments and delegates; the printers live in ``show``."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from taskq.config import DEFAULT_PREFIX, DEFAULT_REDIS_URL
from taskq.cpus import available_cpus
from taskq.errors import ConfigurationError, TaskqError


def _queues(value: str | None) -> tuple[str, ...]:
    return tuple(q.strip() for q in value.split(",") if q.strip()) if value else ()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskq")
def cli() -> None:
    """taskq — a distributed task queue on Redis Streams."""


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "--queues",
    "-Q",
    help="Comma-separated queues to consume; within a task priority level, earlier queues "
    "are served first [default: every queue the app's tasks use].",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=available_cpus,
    show_default="CPUs this process may use (affinity, cgroup quota)",
    help="Worker processes to run.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Tasks each process runs at once (threads for sync tasks, one event loop for async ones).",
)
@click.option("--burst", is_flag=True, help="Drain the queues, then exit (tests, batch jobs).")
@click.option(
    "--burst-wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With --burst, wait for retries and delayed runs due within this many seconds; "
    "later ones are left scheduled (and reported).",
)
@click.option(
    "--redis-url",
    envvar="TASKQ_REDIS_URL",
    help=f"Redis URL [env: TASKQ_REDIS_URL; default: {DEFAULT_REDIS_URL}].",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running tasks get to finish after SIGTERM.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Pre-flight check: the app imports and Redis answers; exit 0, else 1.",
)
@click.option(
    "--heartbeat-file",
    envvar="TASKQ_HEARTBEAT_FILE",
    type=click.Path(dir_okay=False),
    help="Touch this file about every second while the pool runs (read by `taskq health`) "
    "[env: TASKQ_HEARTBEAT_FILE].",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--metrics-port",
    envvar="TASKQ_METRICS_PORT",
    type=click.IntRange(0, 65535),
    help="Serve the pool's Prometheus metrics on this port, at /metrics (0: any free "
    "port, logged); needs the metrics extra [env: TASKQ_METRICS_PORT].",
)
@click.option(
    "--metrics-addr",
    envvar="TASKQ_METRICS_ADDR",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics port listens on; 0.0.0.0 in a container [env: TASKQ_METRICS_ADDR].",
)
def worker(
    app_spec: str,
    queues: str | None,
    processes: int,
    concurrency: int,
    burst: bool,
    burst_wait: float,
    redis_url: str | None,
    grace: float,
    check: bool,
    heartbeat_file: str | None,
    log_level: str,
    metrics_port: int | None,
    metrics_addr: str,
) -> None:
    """Run a pool of worker processes for the app at MODULE:APP (MODULE alone: MODULE:app).

    A supervisor starts --processes worker processes, restarts any that dies and
    forwards SIGTERM/SIGINT; each process runs up to --concurrency tasks at once.
    """
    from taskq.app import load_app
    from taskq.supervisor import PoolConfig, Supervisor

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    pool_metrics = None
    if metrics_port is not None and not check:
        from taskq.metricsserver import PoolMetrics

        # Before the app is loaded: prometheus_client, whoever imports it first, must
        # find its multiprocess directory already set.
        pool_metrics = PoolMetrics(metrics_addr, metrics_port)
    try:
        app = load_app(app_spec)  # fail here, once, rather than in every child
        app.configure(redis_url=redis_url)
        qs = _queues(queues)
        if check:
            app.broker.ping()
            click.echo(f"ok: {app_spec} ({len(app.registry)} tasks) and Redis at {app.broker.url}")
            return
        app.broker.ping()
    except BaseException:
        if pool_metrics is not None:
            pool_metrics.close()
        raise
    cfg = PoolConfig(
        app_spec,
        qs,
        concurrency,
        burst,
        redis_url,
        grace,
        log_level.upper(),
        burst_wait,
        metrics=pool_metrics is not None,
    )
    pool = Supervisor(cfg, processes, heartbeat_file=heartbeat_file, metrics=pool_metrics)
    sys.exit(pool.run())


@cli.command()
@click.option(
    "--heartbeat-file",
    envvar="TASKQ_HEARTBEAT_FILE",
    help="The file `taskq worker --heartbeat-file` touches [env: TASKQ_HEARTBEAT_FILE].",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds the heartbeat may be old.",
)
def health(heartbeat_file: str | None, max_age: float) -> None:
    """Exit 0 if the running worker's heartbeat is fresh, else 1 (a container probe).

    Reads only the heartbeat file's age: no Redis, no app import.
    """
    from taskq.health import check

    if not heartbeat_file:
        raise click.UsageError(
            "no heartbeat file: pass --heartbeat-file or set TASKQ_HEARTBEAT_FILE"
        )
    ok, line = check(heartbeat_file, max_age)
    if not ok:
        click.echo(f"taskq: unhealthy: {line}", err=True)
        sys.exit(1)
    click.echo(f"ok: {line}")


@cli.command(name="run")
@click.argument("run_id")
@click.option(
    "--queue",
    "-q",
    help="The run's queue (of a partitioned queue, its partition is found) "
    "[default: found by scanning].",
)
@click.option("--redis-url", envvar="TASKQ_REDIS_URL")
@click.option("--prefix", envvar="TASKQ_PREFIX", default=DEFAULT_PREFIX, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def run_cmd(
    run_id: str, queue: str | None, redis_url: str | None, prefix: str, as_json: bool
) -> None:
    """Show a run: its task, state, every attempt (start, error), its result or error, a
    flow's children (as a tree, with their states), its events and its log
    (get_run_logger(), log_prints, retry and failure messages)."""
    from taskq.app import App, check_queue
    from taskq.cli.show import describe

    app = App(redis_url, prefix=prefix)
    broker = app.broker
    if as_json:
        from taskq.cli.render import echo_json
        from taskq.overview import run_detail

        if queue is not None:
            check_queue(queue)
        detail = run_detail(broker, run_id, queue)
        if detail is None:
            raise click.ClickException(f"no run {run_id!r} (unknown, or its record expired)")
        echo_json(detail.as_json())
        return
    if queue is not None:
        check_queue(queue)
        where = app.locate(run_id, queue, scan=False)
        lines = describe(broker, where, run_id)
        if not lines:  # a partition of it this process was not told of (TASKQ_PARTITIONS)
            found = broker.producer.find_run(run_id, queue)
            lines = describe(broker, found, run_id) if found else []
    else:
        found = broker.producer.find_run(run_id)
        lines = describe(broker, found, run_id) if found else []
    if not lines:
        raise click.ClickException(f"no run {run_id!r} (unknown, or its record expired)")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("run_id")
@click.option("--queue", "-q", help="The run's queue [default: found by scanning].")
@click.option("--reason", default="", help="Why, recorded with the run [default: cancelled].")
@click.option("--redis-url", envvar="TASKQ_REDIS_URL")
@click.option("--prefix", envvar="TASKQ_PREFIX", default=DEFAULT_PREFIX, show_default=True)
def cancel(run_id: str, queue: str | None, reason: str, redis_url: str | None, prefix: str) -> None:
    """Cancel a run: one not started yet ends Cancelled (it never starts), a running one is
    asked to stop, a flow's unfinished children are cancelled too. Exit 1 if unknown."""
    from taskq.app import App, check_queue
    from taskq.protocol import CancelReply

    app = App(redis_url, prefix=prefix)
    if queue is not None:
        check_queue(queue)
    got = app.cancel(run_id, queue, reason)
    said = {
        CancelReply.CANCELLED: "cancelled: it will not start",
        CancelReply.REQUESTED: "running: asked to stop (it ends Cancelled unless it ends first)",
        CancelReply.ENDED: "already ended: nothing changed",
    }
    if got is CancelReply.UNKNOWN:
        raise click.ClickException(f"no run {run_id!r} (unknown, or its record expired)")
    click.echo(f"run {run_id}: {said[got]}")


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--redis-url", envvar="TASKQ_REDIS_URL")
def schedules(app_spec: str, redis_url: str | None) -> None:
    """List the app's scheduled tasks: schedule, missed-tick policy, last tick fired, next."""
    from taskq.app import load_app
    from taskq.schedules import schedule_lines

    app = load_app(app_spec)
    app.configure(redis_url=redis_url)
    click.echo("\n".join(schedule_lines(app)))


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
def tasks(app_spec: str) -> None:
    """List the tasks and flows of the app at MODULE:APP: name, kind, queue, version,
    retries, result options and the first line of each description (no Redis needed)."""
    from taskq.app import load_app
    from taskq.cli.show import task_lines

    click.echo("\n".join(task_lines(load_app(app_spec))))


@cli.command()
@click.option("--redis-url", envvar="TASKQ_REDIS_URL")
@click.option("--prefix", envvar="TASKQ_PREFIX", default=DEFAULT_PREFIX, show_default=True)
def queues(redis_url: str | None, prefix: str) -> None:
    """List the queues under the prefix: runs waiting, pending (read by a worker, not
    acked), delayed and dead-lettered. A partitioned queue's line sums its
    partitions', which are listed under it."""
    from taskq.app import App
    from taskq.cli.show import print_queues

    broker = App(redis_url, prefix=prefix).broker
    if not print_queues(broker):
        click.echo(f"no queues under prefix {prefix!r}")


def _add_commands() -> None:
    from taskq.cli.dashboard import dashboard
    from taskq.cli.dead import dead
    from taskq.cli.ops import events, info, runs
    from taskq.cli.submit import enqueue

    for command in (info, runs, events, dead, enqueue, dashboard):
        cli.add_command(command)


_add_commands()


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: every error is one line on stderr and a non-zero exit.

    ``taskq`` alone prints its help on stdout and exits 0: asking what it does is no error.
    """
    if not (sys.argv[1:] if argv is None else argv):
        click.echo(cli.get_help(click.Context(cli, info_name="taskq")))
        return 0
    try:
        return cli.main(args=argv, prog_name="taskq", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"taskq: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except ConfigurationError as exc:
        click.echo(f"taskq: error: {exc}", err=True)
        sys.exit(2)
    except TaskqError as exc:
        click.echo(f"taskq: error: {exc}", err=True)
        sys.exit(1)
