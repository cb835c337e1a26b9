"""A result that never comes says why it may not: the run's state and whether any
worker has read from its queue, in the ResultTimeoutError message."""

from __future__ import annotations

import re

import pytest

import taskq
from taskq.testing import BurstWorker


def test_no_worker_ever_consumed_the_queue(taskq_app: taskq.App) -> None:
    @taskq_app.task(queue="nowhere")
    def lost() -> None:
        return None

    fut = lost.submit()
    with pytest.raises(taskq.ResultTimeoutError) as info:
        fut.result(timeout=0.05)
    assert str(info.value) == (
        f"run {fut.run_id} has no result after 0.05 s: run {fut.run_id} is Pending; "
        "no worker has ever consumed queue 'nowhere' (no consumer group)"
    )
    other = lost.submit()
    with pytest.raises(taskq.ResultTimeoutError) as info:
        list(taskq.as_completed([fut, other], timeout=0.05))
    assert str(info.value).startswith(
        f"2 run(s) unfinished after 0.05 s: run {fut.run_id} is Pending; "
        "no worker has ever consumed queue 'nowhere' (no consumer group)"
    )


def test_a_group_without_consumers_is_named(taskq_app: taskq.App) -> None:
    @taskq_app.task(queue="lonely")
    def lost() -> None:
        return None

    taskq_app.broker.consumer.ensure_group("lonely")  # as an admin (or a starting worker) does
    fut = lost.submit()
    with pytest.raises(taskq.ResultTimeoutError, match=r"run .* is Pending; ") as info:
        fut.result(timeout=0.05)
    assert str(info.value).endswith(
        "no worker has taken a run from queue 'lonely' yet (no consumer in its group)"
    )


def test_a_recent_and_a_long_ago_read_by_a_worker(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def noop() -> None:
        return None

    noop.submit()
    burst_worker(taskq_app)  # it read just now, then stopped
    fut = noop.submit()
    with pytest.raises(taskq.ResultTimeoutError) as info:
        fut.result(timeout=0.05)
    assert re.search(
        r"is Pending; a worker read from queue 'default' \d+\.\d s ago$", str(info.value)
    )
    # "Recent" is within two blocking reads of the waiter's block_seconds: 0.02 s here,
    # and its own wait below already took 0.1 s.
    waiter = taskq.App(
        taskq_app.settings.redis_url, prefix=taskq_app.settings.prefix, block_seconds=0.01
    )
    try:
        with pytest.raises(taskq.ResultTimeoutError) as info:
            waiter.future(fut.run_id, queue="default").result(timeout=0.1)
    finally:
        waiter.close()
    assert re.search(
        r"is Pending; the last worker read from queue 'default' \d+\.\d s ago$", str(info.value)
    )


def test_an_unknown_run_says_so(taskq_app: taskq.App) -> None:
    with pytest.raises(taskq.ResultTimeoutError) as info:
        taskq_app.future("no-such-run").result(timeout=0.01)
    assert (
        "run no-such-run is unknown on queue 'default' (no record: never submitted there, "
        "or expired); no worker has ever consumed queue 'default' (no consumer group)"
    ) in str(info.value)
