"""Rate limits for all workers together: over the limit a run is not failed and holds no
slot: it waits in the delay queue for its slot, and comes back once."""

from __future__ import annotations

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker


def starts(app: taskq.App, futures: list[taskq.Future[object]]) -> list[int]:
    """Each run's (first) start, server ms, in order."""
    records = [app.broker.producer.run_record(f.queue, f.run_id) for f in futures]
    return sorted(int(r["t1"]) for r in records)


def test_a_limit_spaces_the_starts_and_defers_each_run_once(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(rate_limit="20/s")  # one start every 50 ms
    def call_api(i: int) -> int:
        return i

    futures = call_api.map(range(12))
    worker = burst_worker(taskq_app, concurrency=4, burst_wait=10)
    assert [f.result(timeout=10) for f in futures] == list(range(12))
    t = starts(taskq_app, futures)
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            # never faster than the limit: j - i starts after one need (j - i - 1) slots
            assert t[j] - t[i] >= (j - i - 1) * 50, (i, j, t)
    assert t[-1] - t[0] >= 10 * 50
    deferred = [e for e in read_events(taskq_app.broker, "default") if e.state == "Scheduled"]
    assert len(deferred) == 11 and len({e.run_id for e in deferred}) == 11  # once each
    assert worker.processed == 12  # no attempt was spent on waiting


def test_a_key_gives_each_its_own_bucket(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task(rate_limit="2/s", rate_limit_key=lambda customer, n: customer)
    def sync_account(customer: str, n: int) -> str:
        return f"{customer}{n}"

    futures = [sync_account.submit(c, n) for n in range(3) for c in ("a", "b")]
    burst_worker(taskq_app, concurrency=4, burst_wait=10)
    assert sorted(f.result(timeout=10) for f in futures) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    events = read_events(taskq_app.broker, "default")
    deferred = {e.run_id for e in events if e.state == "Scheduled"}
    first_a, first_b = futures[0], futures[1]
    assert first_a.run_id not in deferred and first_b.run_id not in deferred  # both at once
    assert len(deferred) == 4  # the others waited, each for its own key's slot
    for key in ("a", "b"):
        mine = [f for f in futures if f.result(timeout=1).startswith(key)]
        t = starts(taskq_app, mine)
        assert t[2] - t[0] >= 500  # 2/s: slots 500 ms apart (the first may start late)


def test_rate_limit_options_are_checked(taskq_app: taskq.App) -> None:
    for bad in ("100", "0/s", "5/w", 100):
        with pytest.raises(taskq.ConfigurationError, match="rate_limit must look like"):
            taskq_app.task(rate_limit=bad)(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(taskq.ConfigurationError, match="needs a rate_limit"):
        taskq_app.task(rate_limit_key=lambda: "k")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(taskq.ConfigurationError, match="not flows"):
        taskq_app.flow(rate_limit="1/s")(lambda: None)  # type: ignore[call-overload]

    @taskq_app.task(rate_limit="5/10s")
    def slow() -> None: ...

    assert slow.options.rate is not None and slow.options.rate.interval_ms == 2000
    with pytest.raises(taskq.ConfigurationError, match="cannot change per submission"):
        slow.with_options(rate_limit="1/s")  # type: ignore[call-arg]


def test_a_retry_of_a_deferred_run_takes_a_slot_of_its_own(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    tries: list[int] = []

    @taskq_app.task(rate_limit="4/s", retries=1, retry_delay_seconds=0.01)  # 250 ms apart
    def flaky(i: int) -> int:
        tries.append(i)
        if i == 1 and tries.count(1) == 1:
            raise RuntimeError("the deferred run fails once")
        return i

    futures = flaky.map(range(2))  # run 1 is deferred to the second slot
    burst_worker(taskq_app, concurrency=2, burst_wait=10)
    assert [f.result(timeout=10) for f in futures] == [0, 1]
    record = taskq_app.broker.producer.run_record("default", futures[1].run_id)
    first_start = int(taskq_app.broker.producer.run_record("default", futures[0].run_id)["t1"])
    # Its retry was given the third slot, not its old one again: 2 intervals after run 0.
    assert int(record["t2"]) - first_start >= 2 * 250 - 5
