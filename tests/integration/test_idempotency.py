"""Idempotency keys: ``with_options(idempotency_key=...)`` enqueues at most one run per
key within ``dedup_ttl``, atomically in the enqueue script; later submits get its future."""

from __future__ import annotations

import threading

import pytest

import taskq
from taskq.message import encode_message
from taskq.testing import BurstWorker


def test_a_second_submit_with_the_key_returns_the_first_run(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @taskq_app.task
    def charge(amount: int) -> int:
        calls.append(amount)
        return amount

    first = charge.with_options(idempotency_key="order-42").submit(10)
    again = charge.with_options(idempotency_key="order-42").submit(99)  # ignored: same key
    other = charge.with_options(idempotency_key="order-43").submit(5)
    plain = charge.submit(1)
    assert again.run_id == first.run_id and other.run_id != first.run_id
    stream = taskq_app.keys.stream("default")
    assert taskq_app.broker.client.xlen(stream) == 3
    burst_worker(taskq_app)
    assert sorted(calls) == [1, 5, 10]
    assert first.result(timeout=5) == again.result(timeout=5) == 10
    assert other.result(timeout=5) == 5 and plain.result(timeout=5) == 1
    # Still one run per key after the first ended (within dedup_ttl).
    late = charge.with_options(idempotency_key="order-42").submit(7)
    assert late.run_id == first.run_id and late.result(timeout=5) == 10


def test_the_key_holds_for_dedup_ttl(taskq_app: taskq.App) -> None:
    @taskq_app.task(dedup_ttl=30)
    def job() -> None: ...

    fut = job.with_options(idempotency_key="k").submit()
    key = taskq_app.keys.idempotency("default", "k")
    assert taskq_app.broker.client.get(key) == fut.run_id.encode()
    assert 0 < int(taskq_app.broker.client.pttl(key)) <= 30_000
    shorter = job.with_options(idempotency_key="k2", dedup_ttl=0.5).submit()
    assert 0 < int(taskq_app.broker.client.pttl(taskq_app.keys.idempotency("default", "k2"))) <= 500
    taskq_app.broker.client.delete(key)  # as when the window has passed
    assert job.with_options(idempotency_key="k").submit().run_id not in (fut.run_id, shorter.run_id)


def test_racing_producers_get_one_run(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def once() -> None: ...

    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def submit() -> None:
        barrier.wait()
        rid = once.with_options(idempotency_key="shared").submit().run_id
        with lock:
            ids.append(rid)

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == 16 and len(set(ids)) == 1
    assert taskq_app.broker.client.xlen(taskq_app.keys.stream("default")) == 1


def test_a_retried_keyed_enqueue_adds_nothing(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def job() -> None: ...

    msg = job.make_message((), {})
    run = (msg.run_id, encode_message(msg, taskq_app.broker.limits), "")
    producer = taskq_app.broker.producer
    assert producer.enqueue_once("default", "retry-me", run, 60) == msg.run_id
    assert producer.enqueue_once("default", "retry-me", run, 60) == msg.run_id  # the retry
    assert taskq_app.broker.client.xlen(taskq_app.keys.stream("default")) == 1


def test_a_key_always_lands_on_one_partition(redis_url: str, taskq_prefix: str) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, partitions={"hot": 4})

    @app.task(queue="hot")
    def job(i: int) -> int:
        return i

    futures = [job.with_options(idempotency_key="same").submit(i) for i in range(8)]
    assert len({(f.queue, f.run_id) for f in futures}) == 1
    others = [job.with_options(idempotency_key=f"k{i}").submit(i) for i in range(8)]
    assert len({f.run_id for f in others}) == 8
    app.close()


def test_keys_are_refused_where_they_mean_nothing(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def job(x: int) -> int:
        return x

    @taskq_app.flow
    def parent() -> int:
        return job.with_options(idempotency_key="inside").submit(1).result()

    with pytest.raises(taskq.ConfigurationError, match="names one run"):
        job.with_options(idempotency_key="k").map([1, 2])
    with pytest.raises(taskq.ConfigurationError, match="per submission"):
        taskq_app.task(idempotency_key="k")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(taskq.ConfigurationError, match="1 to 1024 characters"):
        job.with_options(idempotency_key="")
    fut = parent.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError, match="children are idempotent already"):
        fut.result(timeout=5)
