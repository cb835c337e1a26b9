"""``wait_for=`` and ``allow_failure``: a run submitted after others end, without their data."""

from __future__ import annotations

import pytest

import taskq
from taskq.errors import ConfigurationError
from taskq.testing import BurstWorker


def test_in_a_flow_the_second_run_starts_after_the_first_ends(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    order: list[str] = []

    @taskq_app.task
    def first() -> None:
        order.append("first")

    @taskq_app.task
    def second() -> None:
        order.append("second")

    @taskq_app.flow
    def ordered() -> list[str]:
        a = first.submit()
        b = second.submit(wait_for=[a])
        b.result()
        return [a.run_id, b.run_id]

    fut = ordered.submit()
    burst_worker(taskq_app, concurrency=4)
    a_id, b_id = fut.result(timeout=10)
    assert order == ["first", "second"]
    rec_a = taskq_app.broker.producer.run_record("default", a_id)
    rec_b = taskq_app.broker.producer.run_record("default", b_id)
    ended_a = max(
        int(e.split("-")[0])
        for e, f in taskq_app.broker.inspect.run_events("default", a_id)
        if f["s"] == "Completed"
    )
    assert int(rec_b["t1"]) >= ended_a >= int(rec_a["t1"])  # server clock


def test_a_failed_upstream_stops_the_run_unless_allowed_to_fail(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    ran: list[str] = []

    @taskq_app.task
    def broken() -> None:
        raise ValueError("upstream broke")

    @taskq_app.task
    def cleanup(tag: str) -> str:
        ran.append(tag)
        return tag

    @taskq_app.flow
    def guarded() -> list[str]:
        bad = broken.submit()
        out = []
        try:
            cleanup.submit("strict", wait_for=[bad]).result()
        except taskq.TaskFailedError as exc:
            out.append(f"refused: {exc.error.message}")
        out.append(cleanup.submit("anyway", wait_for=[taskq.allow_failure(bad)]).result())
        return out

    fut = guarded.submit()
    burst_worker(taskq_app, concurrency=4)
    assert fut.result(timeout=10) == ["refused: upstream broke", "anyway"]
    assert ran == ["anyway"]


def test_outside_a_flow_the_call_waits_and_a_failure_enqueues_nothing(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def broken() -> None:
        raise ValueError("no")

    @taskq_app.task
    def follow(x: int) -> int:
        return x

    bad = broken.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError):
        follow.submit(1, wait_for=bad)
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)  # nothing enqueued
    ok = follow.submit(2, wait_for=[taskq.allow_failure(bad)])
    many = follow.map([3, 4], wait_for=[taskq.allow_failure(bad)])
    burst_worker(taskq_app)
    assert [ok.result(timeout=5)] + [f.result(timeout=5) for f in many] == [2, 3, 4]
    with pytest.raises(ConfigurationError, match="wait_for takes Futures"):
        follow.submit(5, wait_for=["not a future"])
    with pytest.raises(ConfigurationError, match="allow_failure takes a Future"):
        taskq.allow_failure("nope")  # type: ignore[arg-type]
