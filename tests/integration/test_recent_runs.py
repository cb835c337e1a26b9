"""recent_runs' filters read only the records of runs their events let pass (what keeps a
filtered listing fast with many runs in the events streams); against real Redis and a
real burst worker."""

from __future__ import annotations

from typing import Any

import redis

from taskq.overview import recent_runs
from tests.integration.conftest import Cli


def _hmgets(r: redis.Redis) -> int:
    stats = r.info("commandstats").get("cmdstat_hmget")
    return int(stats["calls"]) if stats else 0


def test_a_state_filter_reads_only_the_records_of_runs_whose_newest_event_matches(
    cli: Cli, ops: Any, redis_url: str
) -> None:
    m = ops
    bad = m.boom.submit("no")
    done = m.add.map(range(20), 1)
    cli.burst("--queues", "default")
    assert [f.result(timeout=5) for f in done] == list(range(1, 21))
    waiting = m.add.map(range(30), 0)  # Pending: on the events, not the worker's
    broker = m.app.broker
    r = redis.Redis.from_url(redis_url)
    try:
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
    finally:
        r.close()
