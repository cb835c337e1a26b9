"""taskq on a 3-master Redis Cluster: queues on every master, a resharding under load, a
failover inside the cluster (at-least-once holds; nothing acknowledged is lost).

The rest of the suite runs on a cluster too: ``pytest --taskq-redis=cluster`` (or
``cluster3``); see ``taskq.testing``. These tests need several masters, so they start
their own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import taskq
from taskq.localcluster import LocalCluster
from taskq.partitions import slot_of
from taskq.testing import run_burst
from taskq.worker import Worker

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster3() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3) as cluster:
        yield cluster


def _queue_on(cluster: LocalCluster, port: int, stem: str) -> str:
    """A queue name whose slot belongs to the master on ``port``."""
    for i in range(10_000):
        name = f"{stem}{i}"
        if cluster.node_for_slot(slot_of(name)) == port:
            return name
    raise AssertionError(f"no queue name maps to {port}")


def _app(url: str, **settings: Any) -> taskq.App:
    return taskq.App(url, prefix=f"taskq-test-{uuid.uuid4().hex[:8]}", **settings)


def test_one_worker_drains_queues_on_every_master(cluster3: LocalCluster) -> None:
    app = _app(cluster3.url)
    queues = [_queue_on(cluster3, port, "q") for port in cluster3.masters]
    tasks = []
    for q in queues:

        @app.task(queue=q, name=f"double-{q}", retries=1, retry_delay_seconds=0)
        def double(x: int) -> int:
            return 2 * x

        tasks.append(double)
    futures = [t.submit(i) for t in tasks for i in range(30)]
    futures += [f for t in tasks for f in t.map(range(30, 60))]
    worker = run_burst(app, queues)
    expected = [2 * i for _ in tasks for i in range(30)]
    expected += [2 * i for _ in tasks for i in range(30, 60)]
    assert [f.result(timeout=5) for f in futures] == expected
    assert worker.processed == len(futures)
    # Each queue's keys sit on its own master, and only there.
    for q, port in zip(queues, cluster3.masters, strict=True):
        with redis.Redis(port=port) as node:
            assert node.exists(app.keys.events(q)) == 1
    app.close()


def test_a_queue_drains_while_its_slot_moves_to_another_master(cluster3: LocalCluster) -> None:
    app = _app(cluster3.url)
    source = cluster3.masters[0]
    target = cluster3.masters[1]
    queue = _queue_on(cluster3, source, "moving")
    slot = slot_of(queue)
    moved = threading.Event()

    @app.task(queue=queue, name="step")
    def step(x: int) -> int:
        if x == 50 and not moved.is_set():
            # Mid-drain, on a task thread: the other threads keep fetching and recording
            # while the slot's keys migrate (ASK, TRYAGAIN), then MOVED after.
            cluster3.move_slot(slot, target)
            moved.set()
        return x

    futures = step.map(range(600))
    run_burst(app, [queue], concurrency=4)
    assert moved.is_set()
    assert cluster3.node_for_slot(slot) == target
    redirects = app.broker.connection.redirects
    assert redirects.get("MOVED", 0) > 0, redirects  # the worker followed the slot
    assert sorted(f.result(timeout=5) for f in futures) == list(range(600))
    assert {f.state.name for f in futures} == {"Completed"}
    app.close()


def test_a_failover_inside_the_cluster_loses_no_run(tmp_path: Any) -> None:
    with LocalCluster(masters=3, replicas_per_master=1) as cluster:
        app = _app(cluster.url, wait_replicas=1)
        master = cluster.masters[0]
        queue = _queue_on(cluster, master, "fo")
        failed_over = threading.Event()

        @app.task(queue=queue, name="work")
        def work(x: int) -> int:
            if x == 40 and not failed_over.is_set():
                cluster.failover(master)
                failed_over.set()
            return x

        futures = work.map(range(300))
        run_burst(app, [queue], concurrency=4)
        assert failed_over.is_set()
        assert cluster.node_for_slot(slot_of(queue)) != master
        assert sorted(f.result(timeout=10) for f in futures) == list(range(300))
        app.close()


def test_a_master_killed_mid_drain_is_replaced_and_every_acknowledged_run_completes() -> None:
    # wait_replicas=1: a submit returns once the replica has the run, so the replica
    # promoted after the kill holds every run submitted. What the dead master had not yet
    # replicated is redone: an outcome is recorded again, and a run whose start was lost
    # (its delivery replicated, its Running not) is fenced off from the worker that ran it
    # and comes back by its lease (1 s here): the worker runs until every result is in.
    with LocalCluster(masters=3, replicas_per_master=1) as cluster:
        app = _app(cluster.url, wait_replicas=1, lease_seconds=1)
        master = cluster.masters[0]
        replica = cluster.replicas_of(master)[0]
        queue = _queue_on(cluster, master, "kill")
        killed = threading.Event()

        @app.task(queue=queue, name="work")
        def work(x: int) -> int:
            if x == 40 and not killed.is_set():
                cluster.node(master).kill()  # SIGKILL: the replica takes over on its own
                killed.set()
            return x

        futures = work.map(range(300))
        worker = Worker(app, [queue], concurrency=4)
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            results = sorted(f.result(timeout=60) for f in futures)
        finally:
            worker.stop()
            thread.join(timeout=60)
        assert not thread.is_alive()
        assert killed.is_set()
        with redis.Redis(port=replica) as promoted:
            assert promoted.info("replication")["role"] == "master"
        assert results == list(range(300))
        assert {f.state.name for f in futures} == {"Completed"}
        app.close()
