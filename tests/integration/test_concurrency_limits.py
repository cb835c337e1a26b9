"""Concurrency limits per key, for all workers together: at most N runs of a key at once,
other keys not held up, every slot given back."""

from __future__ import annotations

import time

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker

TRACK = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[1]) > 0 and n > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], n)
end
return n
"""


def test_at_most_n_runs_of_a_key_at_once_and_other_keys_go_on(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    prefix = taskq_app.settings.prefix

    @taskq_app.task(concurrency_limit=2, concurrency_key=lambda key, i: key)
    def work(key: str, i: int) -> str:
        keys = (f"{prefix}:{{t}}:active:{key}", f"{prefix}:{{t}}:max:{key}")  # one slot
        taskq_app.broker.execute("EVAL", TRACK, 2, *keys, 1)
        time.sleep(0.15)  # the body's own work
        taskq_app.broker.execute("EVAL", TRACK, 2, *keys, -1)
        return f"{key}{i}"

    a_runs = [work.submit("a", i) for i in range(6)]
    b_runs = [work.submit("b", i) for i in range(2)]
    burst_worker(taskq_app, concurrency=6, burst_wait=10)
    assert [f.result(timeout=10) for f in a_runs] == [f"a{i}" for i in range(6)]
    assert [f.result(timeout=10) for f in b_runs] == ["b0", "b1"]
    client = taskq_app.broker.client
    assert int(client.get(f"{prefix}:{{t}}:max:a")) == 2  # never more than the limit
    assert int(client.get(f"{prefix}:{{t}}:max:b")) == 2
    # Key b was not held up behind key a's backlog: both its runs started before a's last.
    starts = {
        f.run_id: int(taskq_app.broker.producer.run_record("default", f.run_id)["t1"])
        for f in a_runs + b_runs
    }
    assert max(starts[f.run_id] for f in b_runs) < max(starts[f.run_id] for f in a_runs)
    # Every slot was given back.
    for key in ("a", "b"):
        assert client.zcard(taskq_app.keys.conc("default", f"{work.name}:{key}")) == 0
    waited = {e.run_id for e in read_events(taskq_app.broker, "default") if e.state == "Scheduled"}
    assert waited and waited <= {f.run_id for f in a_runs}  # only key a's backlog waited


def test_concurrency_options_are_checked(taskq_app: taskq.App) -> None:
    for bad in (0, -1, True, "2"):
        with pytest.raises(taskq.ConfigurationError, match="whole number >= 1"):
            taskq_app.task(concurrency_limit=bad)(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(taskq.ConfigurationError, match="needs a concurrency_limit"):
        taskq_app.task(concurrency_key=lambda: "k")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(taskq.ConfigurationError, match="not flows"):
        taskq_app.flow(concurrency_limit=1)(lambda: None)  # type: ignore[call-overload]

    @taskq_app.task(concurrency_limit=1)
    def one() -> None: ...

    with pytest.raises(taskq.ConfigurationError, match="cannot"):
        one.with_options(concurrency_limit=3)  # type: ignore[call-arg]
