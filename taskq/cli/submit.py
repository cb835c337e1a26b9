"""``taskq enqueue MODULE:TASK``: submit one run from a shell."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from taskq.cli.common import as_json


def _json_arg(text: str | None, kind: type, what: str) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        wanted = "list" if kind is list else "object"
        raise click.UsageError(f"{what} must be a JSON {wanted}, got {type(value).__name__}")
    return value


def load_task(spec: str) -> Any:
    """The task at ``MODULE:TASK`` (imported, with the current directory on ``sys.path``)."""
    from taskq.app import load_object
    from taskq.errors import ConfigurationError
    from taskq.task import Task

    if not spec.partition(":")[2]:
        raise ConfigurationError(f"name the task as MODULE:TASK, not {spec!r}")
    task, _, _ = load_object(spec, "")
    if not isinstance(task, Task):
        raise ConfigurationError(f"{spec} is not a taskq task (got {type(task).__name__})")
    return task


@click.command()
@click.argument("task_spec", metavar="MODULE:TASK")
@click.option(
    "--args", "args_json", metavar="JSON", help="Positional arguments, a JSON list: '[1, \"a\"]'."
)
@click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments, a JSON object.")
@click.option("--queue", "-q", help="Another queue than the task's.")
@click.option("--delay", type=click.FloatRange(min=0), metavar="SECONDS", help="Run no sooner.")
@click.option(
    "--wait", is_flag=True, help="Wait for the outcome and print it (exit 1 if it failed)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --wait: give up after this long (exit 1).",
)
@click.option(
    "--redis-url",
    envvar="TASKQ_REDIS_URL",
    help="Redis URL [env: TASKQ_REDIS_URL; default: the app's].",
)
@as_json
def enqueue(
    task_spec: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    delay: float | None,
    wait: bool,
    timeout: float | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """Submit one run of the task at MODULE:TASK (the module's App and its settings apply)
    and print its run id; with --wait, its result."""
    from taskq.app import check_queue
    from taskq.errors import ResultTimeoutError, TaskqError

    args = _json_arg(args_json, list, "--args")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs")
    task = load_task(task_spec)
    task.app.configure(redis_url=redis_url)
    options: dict[str, Any] = {}
    if queue is not None:
        options["queue"] = check_queue(queue)
    if delay:
        options["delay"] = delay
    if options:
        task = task.with_options(**options)
    future = task.submit(*args, **kwargs)
    out: dict[str, Any] = {"run_id": future.run_id, "queue": future.queue, "task": task.name}
    if not as_json:
        click.echo(future.run_id)  # at once, also with --wait
    if not wait:
        if as_json:
            click.echo(json.dumps(out))
        return
    try:
        value = future.result(timeout=timeout, raise_on_failure=False)
    except ResultTimeoutError as exc:
        raise TaskqError(str(exc)) from None
    state = future.state
    out["state"] = state.name
    failed = isinstance(value, BaseException)
    if failed:
        out["error"] = str(value)
    else:
        out["result"] = value
    if as_json:
        click.echo(json.dumps(out, default=repr))
    else:
        click.echo(f"{state.name}: {value}" if failed else repr(value))
    if failed:
        sys.exit(1)
