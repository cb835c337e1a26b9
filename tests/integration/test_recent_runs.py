"""recent_runs' filters read only the records of runs their events let pass (what keeps a
filtered listing fast with many runs in the events streams); against real Redis and a
real burst worker."""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster

from taskq.overview import recent_runs
from tests.integration.conftest import Cli


def _hmgets(client: Any) -> int:
    """HMGET calls so far, summed over every node (on a Cluster, the queue's is one)."""
    if isinstance(client, RedisCluster):
        infos = list(client.info("commandstats", target_nodes=RedisCluster.ALL_NODES).values())
    else:
        infos = [client.info("commandstats")]
    return sum(int(i.get("cmdstat_hmget", {}).get("calls", 0)) for i in infos)


def test_a_state_filter_reads_only_the_records_of_runs_whose_newest_event_matches(
    cli: Cli, ops: Any
) -> None:
    m = ops
    bad = m.boom.submit("no")
    done = m.add.map(range(20), 1)
    cli.burst("--queues", "default")
    assert [f.result(timeout=5) for f in done] == list(range(1, 21))
    waiting = m.add.map(range(30), 0)  # Pending: on the events, not the worker's
    broker = m.app.broker
    r = broker.client
    before = _hmgets(r)
    failed = recent_runs(broker, ["default"], state="failed")
    assert [x.run_id for x in failed] == [bad.run_id]
    assert (failed[0].task, failed[0].state) == (m.boom.name, "Failed")
    assert _hmgets(r) - before == 1  # of 51 runs in the events, one record read
    before = _hmgets(r)
    pending = recent_runs(broker, ["default"], state="Pending", limit=100)
    assert {x.run_id for x in pending} == {f.run_id for f in waiting}
    assert _hmgets(r) - before == len(waiting)
    named = recent_runs(broker, ["default"], task=m.boom.name)
    assert [x.run_id for x in named] == [bad.run_id]
