"""A full Redis (maxmemory reached, noeviction): producers get RedisFullError, workers drain.

Each test fills a private ``redis-server`` with a small ``maxmemory`` until ``submit``
raises :class:`taskq.RedisFullError`, then lowers ``maxmemory`` a little below what
is used, so Redis is firmly full (no write that is refused can slip through while
memory hovers at the limit), and drains the backlog with a burst worker.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

import pytest

import taskq
from taskq import scripts
from taskq.message import decode_outcome
from taskq.testing import BurstWorker, RedisServerFactory

FILL_LIMIT = 4 * 1024 * 1024


def used_memory(app: taskq.App) -> int:
    info = app.broker.execute("INFO", "memory").decode()
    return int(next(ln for ln in info.splitlines() if ln.startswith("used_memory:")).split(":")[1])


def fill(app: taskq.App, submit: Callable[[int], taskq.Future[int]]) -> list[taskq.Future[int]]:
    """Submit until Redis is full; check the error; leave Redis firmly above maxmemory."""
    futures: list[taskq.Future[int]] = []
    with pytest.raises(taskq.RedisFullError) as info:
        for i in range(100_000):  # far more than 4 MB holds
            futures.append(submit(i))
    message = str(info.value)
    assert isinstance(info.value, taskq.BrokerError)
    assert app.broker.url in message
    assert "reached maxmemory" in message and "raise maxmemory" in message.lower()
    assert "drain the backlog" in message and "result_ttl" in message
    assert len(futures) > 1000
    assert app.broker.execute("XLEN", app.keys.stream("default")) == len(futures)
    limit = used_memory(app) - 64 * 1024
    app.broker.execute("CONFIG", "SET", "maxmemory", limit)
    with pytest.raises(taskq.RedisFullError):
        submit(-1)
    return futures


@pytest.mark.slow
@pytest.mark.timeout(120)  # a deadlocked drain fails here rather than hanging
def test_a_full_redis_is_drained_and_memory_falls_below_maxmemory(
    redis_server_factory: RedisServerFactory, burst_worker: BurstWorker
) -> None:
    server = redis_server_factory(
        extra_args=["--maxmemory", str(FILL_LIMIT), "--maxmemory-policy", "noeviction"]
    )
    app = taskq.App(server.url, prefix=f"taskq-full-{uuid.uuid4().hex[:8]}")

    @app.task
    def measure(doc: str, n: int) -> int:  # a 1 KB argument, a small result
        return len(doc) + n

    doc = "x" * 1000
    futures = fill(app, lambda i: measure.submit(doc, i))
    limit = int(app.broker.execute("CONFIG", "GET", "maxmemory")[1])
    full = used_memory(app)
    print(f"{len(futures)} runs queued, used_memory {full} > maxmemory {limit}")

    burst_worker(app)  # a new worker starts and consumes although Redis is full

    drained = used_memory(app)
    print(f"drained: used_memory {drained}")
    assert drained < limit  # each run's finish freed more than it wrote
    assert app.broker.execute("XLEN", app.keys.stream("default")) == 0
    assert app.broker.inspect.queue_sizes("default") == (0, 0)
    # Below maxmemory again: results are waited for as usual, and new runs are taken.
    assert [f.result(timeout=5) for f in futures] == [1000 + i for i in range(len(futures))]
    assert measure.submit("y", 1).run_id


@pytest.mark.slow
@pytest.mark.timeout(120)  # a deadlocked drain fails here rather than hanging
def test_a_full_redis_of_tiny_runs_is_drained(
    redis_server_factory: RedisServerFactory, burst_worker: BurstWorker
) -> None:
    # The case: tiny runs, whose finished record and result (kept result_ttl)
    # weigh more than the stream entry each frees; the drain must complete anyway.
    server = redis_server_factory(
        extra_args=["--maxmemory", str(FILL_LIMIT), "--maxmemory-policy", "noeviction"]
    )
    app = taskq.App(server.url, prefix=f"taskq-full-{uuid.uuid4().hex[:8]}")
    calls: Counter[int] = Counter()

    @app.task
    def double(x: int) -> int:
        calls[x] += 1
        return 2 * x

    futures = fill(app, double.submit)
    limit = int(app.broker.execute("CONFIG", "GET", "maxmemory")[1])
    burst_worker(app)
    drained = used_memory(app)
    print(f"{len(futures)} tiny runs drained: used_memory {drained}, maxmemory {limit}")
    # Bounded overshoot: what a finished run keeps for result_ttl (its result list and
    # record, about 300 B) beyond its freed stream entry, per drained run.
    assert drained < limit + len(futures) * 400
    assert calls == Counter(range(len(futures)))
    assert app.broker.execute("XLEN", app.keys.stream("default")) == 0
    # Read without writing (LINDEX): every run ended Completed with its value.
    raws = app.broker.producer.peek_results("default", [f.run_id for f in futures])
    outcomes = [decode_outcome(raw) for raw in raws if raw is not None]
    assert [(o.state, o.value) for o in outcomes] == [
        ("Completed", 2 * i) for i in range(len(futures))
    ]
    # Still above maxmemory: Redis refuses BLMOVE, and result() waits read-only instead.
    assert used_memory(app) > limit
    assert [f.result(timeout=5) for f in futures[:50]] == [2 * i for i in range(50)]
    assert app.broker.execute("PTTL", app.keys.result("default", futures[0].run_id)) > 0


DRAIN_SCRIPTS = [
    "fetch",
    "start",
    "finish",
    "retry",
    "dead",
    "promote",
    "handback",
    "renew",
    "release",
    "suspend",
    "notify",
    "reset",
    "groups",
    "park",
    "ack",
    "flow_forget",
]


def test_drain_path_scripts_may_run_on_a_full_redis_and_enqueue_may_not() -> None:
    for name in DRAIN_SCRIPTS:
        assert scripts.load(name).source.startswith(b"#!lua flags=allow-oom\n"), name
    assert not scripts.load("enqueue").source.startswith(b"#!")


def test_plain_commands_of_the_drain_path_are_not_refused_by_a_full_redis(
    taskq_app: taskq.App,
) -> None:
    # SCRIPT LOAD heals NOSCRIPT; EVALSHA's own flags are the script's (#!lua flags=...).
    drain = (
        "XREADGROUP",
        "XACK",
        "XDEL",
        "XAUTOCLAIM",
        "XCLAIM",
        "LINDEX",
        "SCRIPT|LOAD",
        "EVALSHA",
    )
    for command in drain:
        [info] = taskq_app.broker.execute("COMMAND", "INFO", command)
        assert b"denyoom" not in info[2], (command, info[2])
    # What the drain path may not send alone: a full Redis refuses it (hence groups.lua).
    [info] = taskq_app.broker.execute("COMMAND", "INFO", "XGROUP|CREATE")
    assert b"denyoom" in info[2]
