"""Waiting for a result inside a task running on a worker is refused (it can deadlock
the pool); flows, which suspend instead, and code outside workers may wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import taskq
from taskq.testing import BurstWorker

WAYS: dict[str, Callable[[taskq.Future[Any]], object]] = {
    "result": lambda f: f.result(timeout=3),
    "future_wait": lambda f: f.wait(timeout=3),
    "wait": lambda f: taskq.wait([f], timeout=3),
    "as_completed": lambda f: list(taskq.as_completed([f], timeout=3)),
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_waiting_inside_a_task_fails_the_run_at_concurrency_1(
    taskq_app: taskq.App, burst_worker: BurstWorker, way: str
) -> None:
    @taskq_app.task
    def child() -> int:
        return 1

    @taskq_app.task
    def parent() -> str:
        WAYS[way](child.submit())  # before the fix: blocks the only slot for 3 s
        return "waited"

    fut = parent.submit()
    burst_worker(taskq_app, concurrency=1)
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=5)
    assert info.value.error.type == "taskq.errors.ResultInTaskError"
    assert "deadlock" in info.value.error.message and "@app.flow" in info.value.error.message
    assert info.value.attempts == 1


def test_a_future_as_argument_inside_an_async_task_is_refused(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def child(x: int) -> int:
        return x

    upstream = child.submit(1)
    burst_worker(taskq_app)
    assert upstream.result(timeout=5) == 1  # finished: an unfinished one would hang here

    @taskq_app.task
    async def parent() -> int:
        child.submit(upstream)  # type: ignore[arg-type]  # resolving waits for upstream
        return 0

    fut = parent.submit()
    burst_worker(taskq_app, concurrency=1)
    with pytest.raises(taskq.TaskFailedError, match="passed as an argument") as info:
        fut.result(timeout=5)
    assert info.value.error.type == "taskq.errors.ResultInTaskError"


def test_already_finished_futures_are_refused_too_and_waits_elsewhere_work(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def child() -> int:
        return 5

    done = child.submit()
    burst_worker(taskq_app)
    assert done.result(timeout=5) == 5  # outside a worker: fine, and now known locally

    @taskq_app.task
    def parent() -> int:
        return done.result()

    @taskq_app.flow
    def flow() -> int:
        return child.submit().result() + child()

    refused, flowed = parent.submit(), flow.submit()
    burst_worker(taskq_app, concurrency=1)
    with pytest.raises(taskq.TaskFailedError, match="ResultInTaskError"):
        refused.result(timeout=5)
    assert flowed.result(timeout=5) == 10
    with pytest.raises(taskq.ResultInTaskError):
        from taskq.futures import running_task

        with running_task("r"):
            taskq.as_completed([done])


def test_a_refused_wait_is_not_retried(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task
    def child() -> int:
        return 1

    @taskq_app.task(retries=3)
    def parent() -> int:
        return child.submit().result(timeout=3)

    fut = parent.submit()
    burst_worker(taskq_app, concurrency=1)
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=5)
    assert info.value.error.type == "taskq.errors.ResultInTaskError"
    assert info.value.attempts == 1  # deterministic: a retry would be refused again
