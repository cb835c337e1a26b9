"""Result waits are read-only: they never take, rewrite or re-expire a result key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from redis.cluster import RedisCluster

import taskq
from taskq.futures import Future
from taskq.testing import BurstWorker

# A waiter in a process of its own: names its connection, says "ready", then waits
# with as_completed on every run given until all have ended.
_WAITER = """
import sys
import taskq
from taskq.futures import Future
url, prefix, name, queue, *ids = sys.argv[1:]
app = taskq.App(url, prefix=prefix)
# Named on the connection to the queue's server (on a Cluster, the command without a
# key goes with the keyed one before it).
app.broker.send([("EXISTS", app.keys.events(queue)), ("CLIENT", "SETNAME", name)])
print("ready", flush=True)
for _ in taskq.as_completed([Future(app.broker, queue, rid, "t") for rid in ids]):
    pass
"""


def _start_waiter(app: taskq.App, name: str, run_ids: Sequence[str]) -> subprocess.Popen[str]:
    argv = [app.settings.redis_url, app.settings.prefix, name, "default", *run_ids]
    proc = subprocess.Popen(
        [sys.executable, "-c", _WAITER, *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _await_blocked(app: taskq.App, name: str) -> None:
    """Return once the waiter's connection is blocked in Redis (no sleep: each look is a
    round trip; bounded so a broken waiter fails the test instead of hanging it)."""
    deadline = time.monotonic() + 20
    client = app.broker.client
    while time.monotonic() < deadline:
        if isinstance(client, RedisCluster):  # every node's clients
            found = client.client_list(target_nodes=RedisCluster.ALL_NODES).values()
            clients = [c for node in found for c in node]
        else:
            clients = client.client_list()
        for c in clients:
            if c.get("name") == name and "b" in c.get("flags", ""):
                return
    raise AssertionError(f"waiter {name} never blocked")


def _assert_results_intact(app: taskq.App, futures: Sequence[Future[Any]]) -> None:
    client = app.broker.client
    for f in futures:
        key = app.keys.result(f.queue, f.run_id)
        assert client.llen(key) == 1, f"result of {f.run_id} was taken"
        assert client.pttl(key) > 0, f"result of {f.run_id} lost its TTL"


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_as_completed_and_wait_keep_result_keys_and_their_ttl(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(result_ttl=600)
    def ident(x: int) -> int:
        return x

    futures = ident.map(range(5))
    burst_worker(taskq_app)
    # A wait for runs that have already ended (the old BLPOP + LPUSH dropped the TTL).
    assert (
        taskq_app.broker.producer.wait_any("default", [f.run_id for f in futures], 1.0) is not None
    )
    _assert_results_intact(taskq_app, futures)
    fresh: list[Future[int]]
    fresh = [Future(taskq_app.broker, "default", f.run_id, f.task_name) for f in futures]
    assert sorted(f.result() for f in taskq.as_completed(fresh, timeout=5)) == list(range(5))
    fresh = [Future(taskq_app.broker, "default", f.run_id, f.task_name) for f in futures]
    assert len(taskq.wait(fresh, timeout=5).done) == 5
    _assert_results_intact(taskq_app, futures)


def test_as_completed_blocking_on_unfinished_runs_keeps_ttl(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    gate = threading.Event()

    @taskq_app.task(result_ttl=600)
    def slow(x: int) -> int:
        assert gate.wait(20)
        return x

    @taskq_app.task(result_ttl=600)
    def quick(x: int) -> int:
        return x

    first, second = quick.submit(1), slow.submit(2)
    broker = taskq_app.broker.producer
    real_wait_any = broker.wait_any

    def opening_wait_any(queue: str, run_ids: Sequence[str], timeout: float) -> str | None:
        gate.set()  # the slow run may end now: the wait below is the one exercised
        return real_wait_any(queue, run_ids, timeout)

    broker.wait_any = opening_wait_any  # type: ignore[method-assign]
    worker = threading.Thread(target=burst_worker, args=(taskq_app,), kwargs={"concurrency": 2})
    worker.start()
    try:
        got = [f.result() for f in taskq.as_completed([first, second], timeout=20)]
    finally:
        gate.set()
        worker.join()
    assert sorted(got) == [1, 2]
    _assert_results_intact(taskq_app, [first, second])


def test_future_result_blmove_keeps_the_ttl(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(result_ttl=600)
    def ident(x: int) -> int:
        return x

    fut = ident.submit(4)
    burst_worker(taskq_app)
    for _ in range(3):
        fresh: Future[int] = Future(taskq_app.broker, "default", fut.run_id, fut.task_name)
        assert fresh.result(timeout=5) == 4
        assert fresh.wait(timeout=5).name == "Completed"
    _assert_results_intact(taskq_app, [fut])


def test_a_waiter_frozen_then_killed_mid_wait_takes_no_result(
    taskq_app: taskq.App, burst_worker: BurstWorker, reaped: list[subprocess.Popen[str]]
) -> None:
    @taskq_app.task(result_ttl=600)
    def ident(x: int) -> int:
        return x

    fut = ident.submit(7)
    name = f"waiter-{taskq_app.settings.prefix}"
    waiter = _start_waiter(taskq_app, name, [fut.run_id])
    reaped.append(waiter)
    _await_blocked(taskq_app, name)
    # Frozen while blocked: Redis serves its wait when the run ends (a BLPOP would pop
    # the result into its socket), and it dies before it can do anything more.
    os.kill(waiter.pid, signal.SIGSTOP)
    burst_worker(taskq_app)
    os.kill(waiter.pid, signal.SIGKILL)
    waiter.wait()
    assert fut.result(timeout=5) == 7
    _assert_results_intact(taskq_app, [fut])


def test_waiters_killed_while_runs_end_lose_no_result(
    taskq_app: taskq.App, burst_worker: BurstWorker, reaped: list[subprocess.Popen[str]]
) -> None:
    pids: dict[int, int] = {}

    @taskq_app.task(result_ttl=600)
    def killer(i: int) -> int:
        if i in pids:  # run i kills waiter i: waiters die at different points
            os.kill(pids[i], signal.SIGKILL)
        return i

    futures = killer.map(range(12))
    ids = [f.run_id for f in futures]
    for i in range(0, 12, 2):
        name = f"waiter-{i}-{taskq_app.settings.prefix}"
        reaped.append(_start_waiter(taskq_app, name, ids))
        _await_blocked(taskq_app, name)
        pids[i] = reaped[-1].pid
    burst_worker(taskq_app, concurrency=1)
    for p in reaped:
        p.kill()
        p.wait()
    assert [f.result(timeout=5) for f in futures] == list(range(12))
    _assert_results_intact(taskq_app, futures)
