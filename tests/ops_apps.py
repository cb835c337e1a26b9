"""A small app for the operator CLI tests (tests/integration/test_cli_ops.py).

It reads TASKQ_REDIS_URL and TASKQ_PREFIX from the environment the test sets; queue
``hot`` has three partitions.
"""

from __future__ import annotations

import os

import taskq

app = taskq.App(partitions={"hot": 3})


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def boom(why: str) -> None:
    raise ValueError(why)


@app.task(queue="hot")
def heat(i: int) -> int:
    return i


@app.task(priority=5)
def urgent() -> str:
    return "now"


@app.flow
def inner(n: int) -> int:
    return sum(f.result() for f in add.map(range(n), 1))


@app.flow
def outer(n: int) -> int:
    return inner(n) + add(0, 1)


not_a_task = 42


@app.task
def announce(key: str) -> int:
    """Push this worker process's pid onto the Redis list ``key`` (a test BLPOPs it)."""
    app.broker.execute("RPUSH", key, os.getpid())
    return os.getpid()
