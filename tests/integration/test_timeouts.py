"""Timeouts of sync and async tasks in an in-process worker (``taskq.Worker``, as in tests).

The worker process of ``taskq worker`` is replaced after a timeout (see
tests/reliability/test_process_faults.py); an in-process worker abandons the stuck
thread instead, and the freed slot must really run the next run.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import taskq
from taskq.testing import BurstWorker


def test_a_stuck_sync_task_times_out_and_its_slot_runs_the_next(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    release, stuck_returned = threading.Event(), threading.Event()
    seen: list[bool] = []

    @taskq_app.task(timeout_seconds=0.2)
    def stuck() -> None:
        release.wait(60)  # blocked as in C code: no exception can reach it
        stuck_returned.set()

    @taskq_app.task
    def after(x: int) -> int:
        seen.append(stuck_returned.is_set())
        return x

    first, second = stuck.submit(), after.submit(7)
    try:
        worker = burst_worker(taskq_app, concurrency=1)
    finally:
        release.set()
    assert seen == [False]  # it ran on a new thread while the stuck one was still blocked
    assert second.result(timeout=5) == 7
    with pytest.raises(taskq.TaskFailedError) as info:
        first.result(timeout=5)
    assert info.value.error.type == "taskq.errors.TaskTimeoutError"
    assert worker.timed_out == 1
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)


# -- async tasks: cancelled at the limit (issue 9, item 1) ---------------------------------


def test_an_async_task_is_cancelled_at_its_timeout_and_retried_per_policy(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    cancelled: list[int] = []

    @taskq_app.task(timeout_seconds=0.3, retries=1)
    async def slow() -> str:
        try:
            await asyncio.sleep(3)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise
        return "finished"

    @taskq_app.task
    async def after(x: int) -> int:
        return x

    first, second = slow.submit(), after.submit(7)
    worker = burst_worker(taskq_app, concurrency=1)
    with pytest.raises(taskq.TaskFailedError) as info:
        first.result(timeout=5)
    assert info.value.error.type == "taskq.errors.TaskTimeoutError"
    assert "timed out after 0.3 s" in info.value.error.message
    assert info.value.attempts == 2  # retried once, per its policy
    assert cancelled == [1, 1]  # each attempt's coroutine really was cancelled
    assert second.result(timeout=5) == 7  # its slot was freed for the next run
    # Two runs: the retry (no delay) went on in place, on the same slot and delivery.
    assert worker.processed == 2
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)


def test_with_options_timeout_applies_to_an_async_task(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    limited = nap.with_options(timeout_seconds=0.3).submit(3)
    unlimited = nap.submit(0.5)  # no limit: a 0.5 s nap completes
    burst_worker(taskq_app, concurrency=2)
    with pytest.raises(taskq.TaskFailedError) as info:
        limited.result(timeout=5)
    assert info.value.error.type == "taskq.errors.TaskTimeoutError"
    assert unlimited.result(timeout=5) == 0.5


def test_an_async_tasks_own_timeout_error_is_not_a_task_timeout(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(timeout_seconds=30)
    async def raises() -> None:
        raise TimeoutError("the remote end timed out")

    future = raises.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError) as info:
        future.result(timeout=5)
    assert info.value.error.type == "TimeoutError"
