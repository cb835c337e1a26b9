"""A scheduled retry lives in Redis: it outlives the worker that scheduled it, and a
Redis crash and restart when the append-only file is on."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest

import taskq
from taskq.events import Event, read_events
from taskq.message import decode_message
from taskq.testing import BurstWorker, RedisServerFactory

TASK_NAME = "tests.retry_durability.flaky"


def await_event(app: taskq.App, run_id: str, state: str, reads: int = 4) -> Event:
    """Block on the events stream until ``run_id`` enters ``state``."""
    after = "0-0"
    for _ in range(reads):
        for ev in read_events(app.broker, "default", after, block=5.0):
            after = ev.id
            if ev.run_id == run_id and ev.state == state:
                return ev
    pytest.fail(f"run {run_id} did not reach {state} within {reads * 5} s")


def fail_first_attempt(calls: dict[int, str], worker_a: list[taskq.Worker]) -> Callable[[], str]:
    """The task body: attempt 1 asks worker A to stop, then fails; attempt 2 succeeds.

    Asking A to stop while attempt 1 is still running makes A fetch nothing more
    (its consume loop is parked waiting for a free slot) and stop its mover at
    once, long before the 0.3 s retry comes due, so attempt 2 can only run on
    another worker. Stopping A only once the AwaitingRetry event is seen would race
    A's own mover: A may already be blocked in XREADGROUP for up to
    ``block_seconds`` (2 s, longer than the delay) and then runs attempt 2 itself.
    """

    def flaky() -> str:
        attempt = len(calls) + 1
        calls[attempt] = "started"
        if attempt == 1:
            worker_a[0].stop()
            calls[attempt] = "failed"
            raise ConnectionError("flaky upstream")
        calls[attempt] = "succeeded"
        return "ok on a later attempt"

    return flaky


def run_worker_a_until_retry_scheduled(app: taskq.App, run_id: str, worker: taskq.Worker) -> Event:
    thread = threading.Thread(target=worker.run, name="worker-a")
    thread.start()
    try:
        event = await_event(app, run_id, "AwaitingRetry")
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "worker A did not stop"
    return event


def test_a_retry_survives_the_worker_that_scheduled_it(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: dict[int, str] = {}
    holder: list[taskq.Worker] = []
    flaky = taskq_app.task(name=TASK_NAME, retries=2, retry_delay_seconds=0.3)(
        fail_first_attempt(calls, holder)
    )
    fut = flaky.submit()
    worker_a = taskq.Worker(taskq_app, concurrency=1)
    holder.append(worker_a)

    event = run_worker_a_until_retry_scheduled(taskq_app, fut.run_id, worker_a)
    assert (event.attempt, event.error_type) == (1, "ConnectionError")
    assert calls == {1: "failed"}
    state = fut.state
    assert (state.name, state.attempt) == ("AwaitingRetry", 1)
    client, keys = taskq_app.broker.client, taskq_app.keys
    assert client.zcard(keys.delayed("default")) == 1
    [member] = client.zrange(keys.delayed("default"), 0, -1)
    assert decode_message(member).run_id == fut.run_id
    assert client.xlen(keys.stream("default")) == 0
    assert taskq_app.broker.producer.run_record("default", fut.run_id)["w"] == worker_a.id

    worker_b = burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=10) == "ok on a later attempt"
    assert fut.state.name == "Completed" and fut.state.attempt == 2
    assert calls == {1: "failed", 2: "succeeded"}
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert record["a"] == "2"
    assert record["w"] == worker_b.id != worker_a.id
    assert client.zcard(keys.delayed("default")) == 0
    story = [e.state for e in read_events(taskq_app.broker, "default") if e.run_id == fut.run_id]
    assert story == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]


def test_a_retry_survives_a_redis_restart_with_aof(
    redis_server_factory: RedisServerFactory, burst_worker: BurstWorker
) -> None:
    server = redis_server_factory(appendonly=True, extra_args=["--appendfsync", "always"])
    prefix = f"taskq-aof-{uuid.uuid4().hex[:8]}"
    calls: dict[int, str] = {}
    holder: list[taskq.Worker] = []
    body = fail_first_attempt(calls, holder)
    app = taskq.App(server.url, prefix=prefix)
    new_app: taskq.App | None = None
    try:
        flaky = app.task(name=TASK_NAME, retries=2, retry_delay_seconds=0.3)(body)
        run_id = flaky.submit().run_id
        worker_a = taskq.Worker(app, concurrency=1)
        holder.append(worker_a)
        run_worker_a_until_retry_scheduled(app, run_id, worker_a)
        assert calls == {1: "failed"}
        assert app.broker.client.zcard(app.keys.delayed("default")) == 1
        app.close()

        server.kill()
        server.restart()

        new_app = taskq.App(server.url, prefix=prefix)
        new_app.task(name=TASK_NAME, retries=2, retry_delay_seconds=0.3)(body)
        fut: taskq.Future[str] = taskq.Future(new_app.broker, "default", run_id, TASK_NAME)
        before = fut.state
        assert (before.name, before.attempt) == ("AwaitingRetry", 1)
        assert new_app.broker.client.zcard(new_app.keys.delayed("default")) == 1

        worker_b = burst_worker(new_app, concurrency=1)
        assert fut.result(timeout=10) == "ok on a later attempt"
        assert fut.state.name == "Completed" and fut.state.attempt == 2
        assert calls == {1: "failed", 2: "succeeded"}
        assert (
            new_app.broker.producer.run_record("default", run_id)["w"] == worker_b.id != worker_a.id
        )
    finally:
        app.close()
        if new_app is not None:
            new_app.close()
        server.close()
