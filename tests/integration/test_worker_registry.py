"""The worker registry: each worker process's heartbeat in Redis (taskq.presence)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

import taskq
from taskq import overview
from taskq.presence import Presence
from tests.integration.conftest import Cli


def test_a_running_workers_entry_has_its_fields_and_goes_away_on_a_clean_stop(
    taskq_app: taskq.App,
) -> None:
    seen: list[list[overview.WorkerInfo]] = []
    worker = taskq.Worker(taskq_app, ["emails"], concurrency=3, burst=True)

    @taskq_app.task(queue="emails")
    def look() -> None:
        seen.append(overview.worker_info(taskq_app.broker))  # the beat at its start
        worker.presence.beat()  # what the lease keeper does every lease/3
        seen.append(overview.worker_info(taskq_app.broker))

    look.submit()
    worker.run()
    [[first], [w]] = seen
    assert first.busy == 0 and first.worker_id == w.worker_id == worker.id
    assert w.alive and w.host == socket.gethostname() and w.pid == os.getpid()
    assert w.queues == ["emails"] and w.physical_queues == ["emails"]
    assert (w.slots, w.busy) == (3, 1)
    assert 0 < w.started_ms <= w.last_heartbeat_ms
    assert w.worker_id.startswith(f"{w.host}-{w.pid}-")
    [info] = overview.queue_info(taskq_app.broker, ["emails"])
    assert info.consumers_alive == 0  # it stopped: its entry went with it
    assert overview.worker_info(taskq_app.broker) == []


def test_a_stale_entry_shows_not_alive_and_is_pruned_by_a_later_heartbeat(
    taskq_app: taskq.App,
) -> None:
    broker = taskq_app.broker
    old = Presence(broker, "gone-1-aa", ["default"], 4, lambda: 2, 1.0)
    old.beat()
    [w] = overview.worker_info(broker)
    assert w.alive and w.busy == 2 and w.queues == ["default"]
    seen = taskq_app.keys.workers_seen()
    now = broker.inspect.server_ms()
    broker.execute("ZADD", seen, now - 10_000, "gone-1-aa")  # no heartbeat for 10 s
    [w] = overview.worker_info(broker)
    assert not w.alive and w.heartbeat_age_ms >= 10_000
    [q] = overview.queue_info(broker, ["default"])
    assert q.consumers_alive == 0
    fresh = Presence(broker, "here-2-bb", ["default"], 1, lambda: 0, 1.0)
    fresh.beat()
    assert [w.worker_id for w in overview.worker_info(broker) if w.alive] == ["here-2-bb"]
    assert overview.queue_info(broker, ["default"])[0].consumers_alive == 1
    broker.execute("ZADD", seen, now - 3_600_000, "gone-1-aa")  # past the prune bound
    fresh.beat()
    assert [w.worker_id for w in overview.worker_info(broker)] == ["here-2-bb"]
    fresh.withdraw()
    fresh.beat()  # a late beat after the withdrawal publishes nothing
    assert overview.worker_info(broker) == []


@pytest.mark.timeout(120)
def test_a_taskq_worker_pool_registers_each_process_and_withdraws_on_sigterm(
    cli: Cli, ops: Any
) -> None:
    pool = cli.popen("worker", "tests.ops_apps:app", "--processes", "2", "--concurrency", "3")
    try:
        key = f"{ops.app.settings.prefix}:tests:announced"
        ops.announce.submit(key)
        _, pid = ops.app.broker.execute("BLPOP", key, 60)  # blocks until a process ran it
        entries = {w.pid: w for w in overview.worker_info(ops.app.broker)}
        w = entries[int(pid)]
        assert w.alive and (w.slots, w.queues) == (3, ["default", "hot"])
        assert len(w.physical_queues) == 4  # default and hot's three partitions
        [info] = overview.queue_info(ops.app.broker, ["hot"])
        assert info.consumers_alive >= 1
    finally:
        pool.terminate()  # SIGTERM: a clean stop
        pool.wait(timeout=60)
    assert pool.returncode == 0
    assert overview.worker_info(ops.app.broker) == []
