"""Cancelling runs from outside: ``app.cancel``, ``future.cancel`` and ``taskq cancel``,
for runs queued, scheduled, waiting for a retry, running (async, cooperative sync,
uncooperative sync past its grace), ended or unknown, and for flows and their children."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker

ROOT = Path(__file__).parents[2]


@contextmanager
def live_worker(app: taskq.App, concurrency: int = 2) -> Iterator[taskq.Worker]:
    """A worker running in a thread, stopped and joined at the end."""
    worker = taskq.Worker(app, concurrency=concurrency)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


def story(app: taskq.App, run_id: str) -> list[str]:
    return [e.state for e in read_events(app.broker, "default") if e.run_id == run_id]


def started(app: taskq.App, run_id: str) -> None:
    """Block until the run's body said it started (it pushes its id on a list)."""
    got = app.broker.execute("BLPOP", f"{app.settings.prefix}:started", 10)
    assert got is not None and got[1].decode() == run_id


def test_a_queued_run_is_cancelled_and_never_starts(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @taskq_app.task
    def work(x: int) -> int:
        calls.append(x)
        return x

    fut, other = work.submit(1), work.submit(2)
    assert fut.cancel("not needed") is taskq.CancelReply.CANCELLED
    assert fut.cancel() is taskq.CancelReply.ENDED  # a second cancel changes nothing
    burst_worker(taskq_app)
    assert calls == [2] and other.result(timeout=5) == 2
    with pytest.raises(taskq.TaskCancelledError, match="not needed"):
        fut.result(timeout=5)
    assert fut.state.name == "Cancelled"
    assert story(taskq_app, fut.run_id) == ["Pending", "Cancelled"]
    stream = taskq_app.keys.stream("default")
    assert taskq_app.broker.client.xlen(stream) == 0  # its entry was dropped, acked


def test_scheduled_and_retry_waiting_runs_are_cancelled(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(retries=1, retry_delay_seconds=3600)
    def flaky() -> None:
        raise ValueError("first attempt fails")

    later = flaky.with_options(delay=3600).submit()
    waiting = flaky.submit()
    burst_worker(taskq_app, burst_wait=0)
    assert (later.state.name, waiting.state.name) == ("Scheduled", "AwaitingRetry")
    assert taskq_app.cancel(later.run_id) is taskq.CancelReply.CANCELLED
    assert taskq_app.cancel(waiting.run_id, reason="give up") is taskq.CancelReply.CANCELLED
    assert later.state.name == waiting.state.name == "Cancelled"
    record = taskq_app.broker.producer.run_record("default", waiting.run_id)
    assert record["x1"] == "ValueError: first attempt fails"  # its attempt's error is kept
    assert record["cx"] == "give up" and "due" not in record
    with pytest.raises(taskq.TaskCancelledError, match="give up"):
        waiting.result(timeout=5)


def test_an_ended_or_unknown_run_is_left_alone(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def quick() -> str:
        return "done"

    fut = quick.submit()
    burst_worker(taskq_app)
    assert fut.cancel() is taskq.CancelReply.ENDED
    assert fut.result(timeout=5) == "done" and fut.state.name == "Completed"
    assert taskq_app.cancel("no-such-run", "default") is taskq.CancelReply.UNKNOWN


def test_a_running_async_run_gets_cancelled_error(taskq_app: taskq.App) -> None:
    import asyncio

    cleaned: list[str] = []

    @taskq_app.task
    async def slow() -> str:
        taskq_app.broker.execute("RPUSH", f"{taskq_app.settings.prefix}:started", run_id[0])
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("finally ran")
        return "finished"

    run_id: list[str] = []
    with live_worker(taskq_app):
        fut = slow.submit()
        run_id.append(fut.run_id)
        started(taskq_app, fut.run_id)
        t0 = time.monotonic()
        assert fut.cancel("stop now") is taskq.CancelReply.REQUESTED
        with pytest.raises(taskq.TaskCancelledError, match="stop now"):
            fut.result(timeout=10)
        assert time.monotonic() - t0 < 5  # told at once, not after a lease period
    assert cleaned == ["finally ran"]
    assert story(taskq_app, fut.run_id)[-1] == "Cancelled"


def test_a_running_sync_run_sees_the_request_and_stops(taskq_app: taskq.App) -> None:
    @taskq_app.task(retries=3)
    def cooperative(key: str) -> str:
        taskq_app.broker.execute("RPUSH", f"{taskq_app.settings.prefix}:started", key)
        deadline = time.monotonic() + 30
        while not taskq.cancel_requested():
            assert time.monotonic() < deadline, "never told"
            time.sleep(0.01)  # the task's own work
        raise RuntimeError("stopping on request")  # an error after a request: not retried

    with live_worker(taskq_app):
        fut = cooperative.submit("x")
        started(taskq_app, "x")
        assert taskq_app.cancel(fut.run_id, reason="user asked") is taskq.CancelReply.REQUESTED
        state = fut.wait(timeout=10)
    assert state.name == "Cancelled" and state.attempt == 1
    assert not taskq.cancel_requested()  # outside a run


def test_a_sync_run_that_ignores_the_request_is_ended_after_its_grace(
    redis_url: str, taskq_prefix: str
) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, cancel_grace_seconds=0.3)

    @app.task
    def stubborn(key: str) -> str:
        app.broker.execute("RPUSH", f"{taskq_prefix}:started", key)
        time.sleep(3)  # ignores the request
        return "too late"

    @app.task
    def after() -> str:
        return "slot freed"

    with live_worker(app, concurrency=1):
        fut = stubborn.submit("s")
        started(app, "s")
        assert fut.cancel() is taskq.CancelReply.REQUESTED
        state = fut.wait(timeout=10)
        assert state.name == "Cancelled"
        assert after.submit().result(timeout=10) == "slot freed"  # before stubborn returned
    assert fut.state.name == "Cancelled"  # its late "too late" was fenced off
    app.close()


def test_cancelling_a_waiting_flow_cancels_its_children(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def part(x: int) -> int:
        return x

    @taskq_app.flow
    def whole(n: int) -> int:
        return sum(f.result() for f in part.with_options(delay=3600).map(range(n)))

    fut = whole.submit(3)
    burst_worker(taskq_app, burst_wait=0)
    assert fut.state.name == "AwaitingChildren"
    assert fut.cancel() is taskq.CancelReply.CANCELLED
    children = [f"{fut.run_id}.{n}" for n in range(1, 4)]
    states = [taskq_app.future(c, "default").state.name for c in children]
    assert states == ["Cancelled"] * 3
    record = taskq_app.broker.producer.run_record("default", children[0])
    assert record["cx"].startswith("its flow was cancelled")


def test_a_cancelled_child_ends_its_waiting_flow(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def part(x: int) -> int:
        return x

    @taskq_app.flow
    def whole() -> int:
        now = part.submit(1)
        later = part.with_options(delay=3600).submit(2)
        return now.result() + later.result()

    fut = whole.submit()
    burst_worker(taskq_app, burst_wait=0)
    assert fut.state.name == "AwaitingChildren"
    later_id = f"{fut.run_id}.2"
    assert taskq_app.cancel(later_id, "default") is taskq.CancelReply.CANCELLED
    burst_worker(taskq_app, burst_wait=0)  # the notice resumed the flow
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=10)
    assert info.value.error.type == "taskq.errors.ChildFailedError"
    assert f"run {later_id} failed" in info.value.error.message
    assert "Cancelled: cancelled" in info.value.error.message


def test_taskq_cancel_command(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def idle() -> None: ...

    fut = idle.submit()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--redis-url", taskq_app.broker.url, "--prefix", taskq_app.settings.prefix]

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskq", "cancel", *extra, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    res = cli(fut.run_id, "--reason", "from the shell")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"run {fut.run_id}: cancelled: it will not start"
    assert fut.state.name == "Cancelled"
    again = cli(fut.run_id)
    assert again.returncode == 0 and "already ended" in again.stdout
    missing = cli("nope123", "--queue", "default")
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == "taskq: error: no run 'nope123' (unknown, or its record expired)"
    )
