"""taskq behind Sentinel: one master, one replica, one sentinel on loopback; the master
fails over while runs are submitted and drained, and every run whose submit returned
completes (``wait_replicas=1``: a submit returns once the replica holds the run)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

import taskq
from taskq.localsentinel import LocalSentinel
from taskq.worker import Worker


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    with LocalSentinel() as s:
        yield s


def _drain_through(sentinel: LocalSentinel, fail_over: Callable[[], object]) -> None:
    app = taskq.App(sentinel.url, prefix=f"taskq-test-{uuid.uuid4().hex[:8]}", wait_replicas=1)

    @app.task(name="square")
    def square(x: int) -> int:
        return x * x

    worker = Worker(app, concurrency=4)
    thread = threading.Thread(target=worker.run)
    thread.start()
    old_master = sentinel.master_port
    try:
        futures = []
        for i in range(300):
            if i == 100:
                fail_over()  # producers and the worker carry on through it
            futures.append(square.submit(i))
        assert [f.result(timeout=30) for f in futures] == [i * i for i in range(300)]
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert sentinel.master_port != old_master
    assert {f.state.name for f in futures} == {"Completed"}
    app.close()


def test_runs_flow_through_a_sentinel_failover(sentinel: LocalSentinel) -> None:
    _drain_through(sentinel, sentinel.failover)


def test_runs_flow_through_a_killed_master(sentinel: LocalSentinel) -> None:
    # SIGKILL: the sentinel notices (down-after 1 s) and promotes the replica on its own,
    # while submits and the worker retry. The promoted master has no replica until the
    # killed node comes back as one, and until then no submit can be acknowledged with
    # wait_replicas=1: they retry (failover_timeout) and go through once it syncs.
    # Nothing acknowledged is lost.
    def kill_then_revive() -> None:
        sentinel.wait_promoted()
        sentinel.revive()

    reviver = threading.Thread(target=kill_then_revive)

    def kill() -> None:
        sentinel.kill_master(wait=False)
        reviver.start()

    try:
        _drain_through(sentinel, kill)
    finally:
        reviver.join(timeout=60)


def test_a_sentinel_url_naming_no_master_says_so() -> None:
    app = taskq.App("redis+sentinel://127.0.0.1:1/nosuch/0", failover_timeout=0)

    @app.task(name="noop")
    def noop() -> None: ...

    with pytest.raises(taskq.RedisUnavailableError, match="no sentinel named a master"):
        noop.submit()
    app.close()
