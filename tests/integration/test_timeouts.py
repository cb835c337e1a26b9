"""Timeouts of sync tasks in an in-process worker (``taskq.Worker``, as in tests).

The worker process of ``taskq worker`` is replaced after a timeout (see
tests/reliability/test_process_faults.py); an in-process worker abandons the stuck
thread instead, and the freed slot must really run the next run.
"""

from __future__ import annotations

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
    assert taskq_app.broker.queue_sizes("default") == (0, 0)
