"""A task body that returns a state sets its run's outcome, as in Prefect."""

from __future__ import annotations

from collections import Counter

import pytest

import taskq
from taskq.testing import BurstWorker


def test_returned_states_set_the_outcome(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task
    def done() -> object:
        return taskq.Completed(42)

    @taskq_app.task
    def refused() -> object:
        return taskq.Failed("input rejected")

    @taskq_app.task
    def several(fail: bool) -> object:
        return [taskq.Completed(1), taskq.Failed("x") if fail else taskq.Completed(2)]

    @taskq_app.task
    def stopped() -> object:
        return taskq.Cancelled("not needed")

    @taskq_app.task
    async def async_refused() -> object:
        return taskq.Failed("async no")

    ok, bad, both, mixed, cancel, abad = (
        done.submit(),
        refused.submit(),
        several.submit(False),
        several.submit(True),
        stopped.submit(),
        async_refused.submit(),
    )
    burst_worker(taskq_app)
    assert ok.result(timeout=5) == 42 and ok.state.name == "Completed"
    with pytest.raises(taskq.TaskFailedError) as info:
        bad.result(timeout=5)
    assert info.value.error.type == "taskq.errors.FailedStateReturned"
    assert info.value.error.message == "input rejected"
    assert both.result(timeout=5) == [1, 2]
    with pytest.raises(taskq.TaskFailedError, match="1/2 states failed"):
        mixed.result(timeout=5)
    with pytest.raises(taskq.TaskCancelledError):
        cancel.result(timeout=5)
    assert cancel.state.name == "Cancelled"
    with pytest.raises(taskq.TaskFailedError, match="async no"):
        abad.result(timeout=5)


def test_a_returned_failure_is_retried_like_a_raised_one(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(retries=2, retry_delay_seconds=0.01)
    def flaky() -> object:
        calls["n"] += 1
        return taskq.Failed(f"try {calls['n']}") if calls["n"] < 3 else taskq.Completed("ok")

    fut = flaky.submit()
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == "ok" and fut.state.attempt == 3
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert record["x1"] == "taskq.errors.FailedStateReturned: try 1"
    assert record["x2"] == "taskq.errors.FailedStateReturned: try 2"


def test_a_direct_call_unwraps_a_returned_state(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def give(ok: bool) -> object:
        return taskq.Completed("v") if ok else taskq.Failed("bad")

    assert give(True) == "v"
    with pytest.raises(taskq.errors.FailedStateReturned, match="bad"):
        give(False)
