"""The worker app of the dashboard's browser tests and screenshots (``taskq worker
tests.dashboard.apps:app``); it reads TASKQ_REDIS_URL and TASKQ_PREFIX from the
environment the test sets."""

from __future__ import annotations

import taskq

app = taskq.App()

#: The name of a task producers know and this app's workers do not (its runs are
#: dead-lettered by a worker started with TASKQ_UNKNOWN_TASK_GRACE=0).
NOT_DEPLOYED = "tests.dashboard.apps.not_deployed"


def release_key(prefix: str) -> str:
    """The Redis list a ``hold`` run waits on (under the app's prefix)."""
    return f"{prefix}:tests:release"


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="reports", priority=3)
def render(page: int) -> int:
    """A task of another queue, at priority 3."""
    return page


@app.task
def boom(why: str) -> None:
    raise ValueError(why)


@app.task(retries=1, retry_delay_seconds=0)
def flaky(x: int) -> int:
    """Fails its first attempt, completes its second."""
    if taskq.context().attempt == 1:
        raise ConnectionError("first attempt fails")
    return x


@app.task
def hold() -> str:
    """Runs until the test pushes to ``release_key`` (so the page can see it Running)."""
    app.broker.execute("BLPOP", release_key(app.settings.prefix), 60)
    return "released"


@app.task
def square(x: int) -> int:
    return x * x


@app.flow
def fan_out(n: int) -> int:
    """A flow with ``n`` children."""
    return sum(f.result() for f in square.map(range(n)))


@app.flow
def pipeline(n: int) -> int:
    """A flow whose children are a flow (with ``n`` children of its own) and a task."""
    return fan_out(n) + square(n)


def producer(redis_url: str, prefix: str) -> taskq.App:
    """An app that knows :data:`NOT_DEPLOYED` too (a producer deployed before the workers)."""
    other = taskq.App(redis_url, prefix=prefix)

    @other.task(name=NOT_DEPLOYED)
    def not_deployed(x: int) -> int:
        return x

    return other
