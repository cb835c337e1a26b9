"""Result caching with Prefect's names, against a real Redis."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

import taskq
from taskq.broker.caches import Caches
from taskq.events import read_events
from taskq.testing import BurstWorker


def test_cache_hits_and_misses_across_runs(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: Counter[int] = Counter()

    @taskq_app.task(cache_key_fn=taskq.task_input_hash, cache_expiration=timedelta(hours=1))
    def slow_square(x: int) -> int:
        calls[x] += 1
        return x * x

    first = slow_square.submit(4)
    burst_worker(taskq_app)
    again, other = slow_square.submit(4), slow_square.submit(5)
    burst_worker(taskq_app)
    assert (first.result(), again.result(), other.result()) == (16, 16, 25)
    assert calls == {4: 1, 5: 1}
    assert first.state.name == "Completed"
    assert again.state.name == "Cached" and again.state.type is taskq.StateType.COMPLETED
    story = [e.state for e in read_events(taskq_app.broker, "default") if e.run_id == again.run_id]
    assert story == ["Pending", "Running", "Cached"]


def test_cache_expiration_and_refresh(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: list[int] = []

    @taskq_app.task(cache_policy=taskq.INPUTS, cache_expiration=30)
    def stamp(x: int) -> int:
        calls.append(x)
        return len(calls)

    a = stamp.submit(1)
    burst_worker(taskq_app)
    keys = list(taskq_app.broker.client.scan_iter(match=f"{taskq_app.settings.prefix}:*:cache:*"))
    assert len(keys) == 1
    assert 0 < taskq_app.broker.client.pttl(keys[0]) <= 30_000
    # Expiry: the entry is gone (deleted here as Redis would at its TTL), so the next run computes.
    taskq_app.broker.client.delete(keys[0])
    b = stamp.submit(1)
    burst_worker(taskq_app)
    c = stamp.submit(1)
    burst_worker(taskq_app)
    d = stamp.with_options(refresh_cache=True).submit(1)
    burst_worker(taskq_app)
    e = stamp.submit(1)
    burst_worker(taskq_app)
    assert [f.result() for f in (a, b, c, d, e)] == [1, 2, 2, 3, 3]
    assert [f.state.name for f in (a, b, c, d, e)] == [
        "Completed",
        "Completed",
        "Cached",
        "Completed",
        "Cached",
    ]


def test_task_source_policy_and_combinations(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[str] = []

    @taskq_app.task(cache_policy=taskq.TASK_SOURCE)
    def constant(x: int) -> str:
        calls.append("c")
        return "same"

    @taskq_app.task(cache_policy=taskq.INPUTS + taskq.TASK_SOURCE)
    def both(x: int) -> int:
        calls.append("b")
        return x

    # As in Prefect, NO_CACHE adds nothing: INPUTS + NO_CACHE is INPUTS (before issue 14
    # it disabled caching).
    @taskq_app.task(cache_policy=taskq.INPUTS + taskq.NO_CACHE)
    def inputs_only(x: int) -> int:
        calls.append("n")
        return x

    futures = [constant.submit(1), both.submit(1), inputs_only.submit(1)]
    burst_worker(taskq_app)
    futures += [constant.submit(2), both.submit(1), both.submit(2), inputs_only.submit(1)]
    burst_worker(taskq_app)
    assert [f.result() for f in futures] == ["same", 1, 1, "same", 1, 2, 1]
    assert Counter(calls) == {"c": 1, "b": 2, "n": 1}
    assert futures[-1].state.name == "Cached"


def test_failed_runs_are_not_cached(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: list[int] = []

    @taskq_app.task(cache_policy=taskq.INPUTS)
    def fails_once(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("first time")
        return x

    bad = fails_once.submit(3)
    burst_worker(taskq_app)
    good = fails_once.submit(3)
    burst_worker(taskq_app)
    assert bad.state.name == "Failed" and good.result() == 3 and good.state.name == "Completed"


def test_serializable_policy_runs_concurrent_same_key_runs_once(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @taskq_app.task(cache_policy=taskq.INPUTS.configure(isolation_level="SERIALIZABLE"))
    def expensive(x: int) -> int:
        calls.append(x)
        # Hold the key until the other two runs have started (they then wait on it).
        started, after = 0, "0-0"
        while started < 3:
            events = read_events(taskq_app.broker, "default", after, 100, block=5)
            assert events, "the other runs never started"
            after = events[-1].id
            started += sum(e.state == "Running" for e in events)
        return x * 10

    futures = expensive.map([7, 7, 7])
    burst_worker(taskq_app, concurrency=3)
    assert [f.result() for f in futures] == [70, 70, 70]
    assert calls == [7]
    assert sorted(f.state.name for f in futures) == ["Cached", "Cached", "Completed"]


def test_bad_cache_options_are_refused() -> None:
    app = taskq.App("redis://127.0.0.1:1/0")
    with pytest.raises(taskq.ConfigurationError, match="cache_policy must be"):
        app.task(cache_policy="inputs")(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(taskq.ConfigurationError, match="cache_expiration"):
        app.task(cache_expiration=-1)(lambda: 1)
    with pytest.raises(taskq.ConfigurationError, match="isolation_level"):
        taskq.INPUTS.configure(isolation_level="SNAPSHOT")


def test_a_serializable_run_taking_the_lock_just_after_the_value_was_stored_uses_it(
    taskq_app: taskq.App, burst_worker: BurstWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between a run's first read of the entry and its lock: the holder stored
    the entry and freed the lock in it. The run must complete Cached, not compute again
    (it did under load: the lock was free, so it took it and ran the function)."""
    calls: list[int] = []

    @taskq_app.task(cache_policy=taskq.INPUTS.configure(isolation_level="SERIALIZABLE"))
    def compute(x: int) -> int:
        calls.append(x)
        return x * 10

    first = compute.submit(3)
    burst_worker(taskq_app)
    assert first.result(timeout=5) == 30 and calls == [3]

    # The second run's first read misses, as if the entry were stored just after it.
    real_get = Caches.get
    misses = [1]

    def read_before_the_store(self: Caches, queue: str, key: str) -> bytes | None:
        if misses:
            misses.pop()
            return None
        return real_get(self, queue, key)

    monkeypatch.setattr(Caches, "get", read_before_the_store)
    second = compute.submit(3)
    burst_worker(taskq_app)
    assert not misses  # the window was opened
    assert second.result(timeout=5) == 30
    assert calls == [3] and second.state.name == "Cached"
    assert not taskq_app.broker.execute("KEYS", f"{taskq_app.settings.prefix}:*:lock")
