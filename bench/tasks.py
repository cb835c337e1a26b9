"""Tasks used by ``python -m bench.run``.

``app`` takes its Redis URL and key prefix from ``TASKQ_REDIS_URL`` / ``TASKQ_PREFIX``
(the bench sets both for the worker subprocesses, and calls ``app.configure`` in its
own process), so producer and workers always agree on the keyspace.
"""

from __future__ import annotations

import os
import threading
import time

import redis

import taskq

app = taskq.App(prefix=os.environ.get("TASKQ_PREFIX") or "bench")

_client: redis.Redis | None = None
_client_pid = 0
_client_lock = threading.Lock()


def client() -> redis.Redis:
    """This process's plain redis-py client for the tasks' own work (made lazily, per process)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        with _client_lock:
            if _client is None or _client_pid != os.getpid():
                _client = redis.Redis.from_url(app.settings.redis_url)
                _client_pid = os.getpid()
    return _client


def marks_key() -> str:
    """ZSET holding members ``first`` (earliest task start) and ``last`` (latest finish)."""
    return f"{app.settings.prefix}:bench:marks"


def count_key() -> str:
    """Counter of finished ``work`` calls."""
    return f"{app.settings.prefix}:bench:count"


@app.task
def work(i: int) -> None:
    """The drain task: one small pipelined round trip (INCR + two conditional ZADDs).

    ``ZADD LT`` keeps the earliest start and ``ZADD GT`` the latest finish, so the
    drain window is exact even when threads finish out of order.
    """
    start = time.time()
    pipe = client().pipeline(transaction=False)
    pipe.incr(count_key())
    pipe.zadd(marks_key(), {"first": start}, lt=True)
    pipe.zadd(marks_key(), {"last": time.time()}, gt=True)
    pipe.execute()


@app.task
def stamp() -> float:
    """The latency task: the wall-clock time at which it started running."""
    return time.time()


@app.task
def add(x: int, y: int) -> int:
    """A small call, for the bytes-per-queued-task measurement."""
    return x + y


def failed_key(token: str) -> str:
    """Set (NX) by a ``flaky`` run's first attempt, so the second one knows to succeed."""
    return f"{app.settings.prefix}:bench:failed:{token}"


@app.task(retries=1, retry_delay_seconds=1)
def flaky(token: str) -> int:
    """The retry-lateness task: attempt 1 fails (a 1 s retry is scheduled), attempt 2 succeeds.

    Which attempt this is, is learned from Redis (``SET NX``), so it holds whichever
    worker process runs which attempt.
    """
    if client().set(failed_key(token), 1, nx=True):
        raise RuntimeError("first attempt fails on purpose")
    return 2


@app.task
def noop(i: int) -> int:
    """The fan-out child: does nothing, returns its argument."""
    return i


@app.flow
def fanout(n: int) -> int:
    """Fan out ``n`` no-op children with ``map``, wait for all of them, sum their results."""
    futures = noop.map(range(n))
    taskq.wait(futures)
    return sum(f.result() for f in futures)


#: The rate limit ``bench.ratelimit`` drains under (runs per second, all workers together).
LIMITED_RATE = 200


@app.task(rate_limit=f"{LIMITED_RATE}/s")
def limited(i: int) -> int:
    """A no-op under a rate limit of ``LIMITED_RATE`` per second (``bench.ratelimit``)."""
    return i
