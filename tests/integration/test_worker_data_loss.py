"""A worker whose Redis lost its data (FLUSHALL, a restart without persistence, a failover
to an empty replica) recreates its consumer groups and carries on."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
import redis

from taskq import App, Worker
from taskq.testing import RedisServerFactory


def test_worker_recreates_its_groups_after_flushall(
    redis_server_factory: RedisServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory()  # never FLUSHALL the shared Redis
    app = App(server.url, prefix=f"taskq-test-{uuid.uuid4().hex[:8]}", block_seconds=0.5)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(app, concurrency=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    caplog.set_level(logging.WARNING, logger="taskq.worker")
    thread.start()
    try:
        assert add.submit(1, 2).result(timeout=10) == 3
        client = redis.Redis.from_url(server.url)
        client.flushall()
        client.close()
        # Queued after the loss: it must still run (before the fix: NOGROUP forever).
        assert add.submit(2, 3).result(timeout=10) == 5
        assert add.submit(3, 4).result(timeout=10) == 7
    finally:
        worker.stop()
        thread.join(timeout=30)
        app.close()
    assert not thread.is_alive()
    lost = [r for r in caplog.records if "Redis lost its data" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
    assert lost[0].levelno == logging.ERROR
