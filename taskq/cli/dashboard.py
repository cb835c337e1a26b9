"""``taskq dashboard``: parses its options and serves :mod:`taskq.dashboard` (the
``taskq[dashboard]`` extra, imported only once the options are checked)."""

from __future__ import annotations

import click

from taskq.config import DEFAULT_PREFIX


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--queue",
    "-q",
    "queue_names",
    multiple=True,
    help="A queue to show (repeat for more) [default: every queue under the prefix].",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Offer requeue (dead letters) and cancel (runs); each needs the --token.",
)
@click.option(
    "--token",
    envvar="TASKQ_DASHBOARD_TOKEN",
    help="The token actions must carry (Authorization: Bearer) [env: TASKQ_DASHBOARD_TOKEN].",
)
@click.option(
    "--sample-seconds",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between two samples of the queues' depth.",
)
@click.option("--redis-url", envvar="TASKQ_REDIS_URL")
@click.option("--prefix", envvar="TASKQ_PREFIX", default=DEFAULT_PREFIX, show_default=True)
def dashboard(
    host: str,
    port: int,
    queue_names: tuple[str, ...],
    allow_actions: bool,
    token: str | None,
    sample_seconds: float,
    redis_url: str | None,
    prefix: str,
) -> None:
    """Serve a live web dashboard: queues and their depth, live runs, a run's attempts
    and a flow's children, dead letters, throughput and latency, workers.

    Read-only unless --allow-actions is given with a --token.
    """
    from taskq.dashboard import missing_extra

    if (missing := missing_extra()) is not None:
        raise click.UsageError(missing)
    if allow_actions and not token:
        raise click.UsageError("--allow-actions needs --token (or TASKQ_DASHBOARD_TOKEN)")
    from taskq.app import App, check_queue

    for q in queue_names:
        check_queue(q)
    from taskq.dashboard.app import Dashboard
    from taskq.dashboard.auth import Access
    from taskq.dashboard.server import address, bind, serve

    app = App(redis_url, prefix=prefix)
    app.broker.ping()
    access = Access(allow_actions, token if allow_actions else None)
    board = Dashboard(app, queue_names, access, sample_seconds=sample_seconds)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    mode = "actions allowed with the token" if allow_actions else "read-only"
    click.echo(f"taskq dashboard on {address(sock)}/ ({mode}), Redis at {app.broker.url}")
    serve(board, sock)
