"""The numbers KEDA's redis-streams scaler reads stay true on taskq's streams.

taskq deletes a stream entry once its run ends (XDEL, the stream holds backlog and
in-flight runs only). Deletions can make Redis report a group's ``lag`` as unknown
(nil), which KEDA's client would read as 0: no scaling at all. This checks, on a real
Redis, that the lag KEDA computes (its lagCount mode, pkg/scalers/redis_streams_scaler.go:
the group's XINFO GROUPS lag; XLEN while the group does not exist; 0 without a stream)
counts exactly the runs waiting, after runs were delivered, finished and deleted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

import taskq
from taskq.keys import GROUP
from taskq.testing import BurstWorker


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


def keda_lag(r: redis.Redis, stream: str, group: str) -> int:
    """What KEDA's lagCount mode reads for ``stream`` and ``group``."""
    if not r.exists(stream):
        return 0
    for info in r.xinfo_groups(stream):
        if info["name"] == group:
            assert info["lag"] is not None, "lag unknown: KEDA would read 0"
            return int(info["lag"])
    return int(r.xlen(stream))


def keda_pending(r: redis.Redis, stream: str, group: str) -> int:
    """What KEDA's pendingEntriesCount mode reads (XPENDING's count)."""
    return int(r.xpending(stream, group)["pending"])


def test_lag_counts_the_waiting_runs_after_runs_were_deleted(
    taskq_app: taskq.App, client: redis.Redis, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    stream = taskq_app.broker.keys.stream("default")
    assert keda_lag(client, stream, GROUP) == 0  # nothing yet: no stream

    add.map(range(5), range(5))
    assert keda_lag(client, stream, GROUP) == 5  # no worker ever ran: KEDA's XLEN path

    burst_worker(taskq_app)  # delivers, finishes and XDELs all five
    assert client.xlen(stream) == 0
    assert keda_lag(client, stream, GROUP) == 0
    assert keda_pending(client, stream, GROUP) == 0

    futures = add.map(range(7), range(7))
    assert keda_lag(client, stream, GROUP) == 7  # the group's lag, past the tombstones
    burst_worker(taskq_app)
    assert [f.result(timeout=10) for f in futures] == [2 * i for i in range(7)]
    assert keda_lag(client, stream, GROUP) == 0
