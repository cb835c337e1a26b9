"""A flow's ``timeout_seconds`` covers its whole attempt, time waiting for its children
included, and a flow that runs out of it cancels its unfinished children (as Prefect)."""

from __future__ import annotations

import time

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker


def story(app: taskq.App, run_id: str) -> list[str]:
    return [e.state for e in read_events(app.broker, "default") if e.run_id == run_id]


def test_a_flow_waiting_past_its_time_limit_times_out_and_cancels_its_children(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def slow_to_come(x: int) -> int:
        return x

    @taskq_app.flow(timeout_seconds=1)
    def impatient() -> int:
        return slow_to_come.with_options(delay=3600).submit(1).result()

    fut = impatient.submit()
    t0 = time.monotonic()
    burst_worker(taskq_app, burst_wait=10)  # waits for the flow's deadline run (in ~1 s)
    assert time.monotonic() - t0 < 8
    state = fut.wait(timeout=5)
    assert state.name == "Failed" and state.attempt == 1
    assert state.error is not None and state.error.type == "taskq.errors.TaskTimeoutError"
    assert state.error.message == "flow timed out after 1.0 s (its whole attempt)"
    child = taskq_app.future(f"{fut.run_id}.1", "default")
    assert child.state.name == "Cancelled"
    assert story(taskq_app, fut.run_id)[-4:] == [
        "AwaitingChildren",
        "Resuming",  # its deadline run resumed it
        "Running",
        "Failed",
    ]
    deadline = taskq_app.future(f"{fut.run_id}.deadline.1", "default")
    assert deadline.result(timeout=5) is True  # it resumed the flow


def test_a_retried_flow_runs_its_cancelled_children_again(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def slow_to_come(x: int) -> int:
        return x

    @taskq_app.flow(timeout_seconds=0.6, retries=1)
    def impatient() -> int:
        return slow_to_come.with_options(delay=3600).submit(1).result()

    fut = impatient.submit()
    burst_worker(taskq_app, burst_wait=10)
    state = fut.wait(timeout=5)
    assert state.name == "Failed" and state.attempt == 2  # timed out in each attempt
    assert taskq_app.future(f"{fut.run_id}.deadline.2", "default").result(timeout=5) is True
    assert taskq_app.future(f"{fut.run_id}.1", "default").state.name == "Cancelled"


def test_a_resumed_flow_has_only_the_rest_of_its_attempts_time(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def takes_a_second() -> int:
        time.sleep(1.0)  # the child's own work
        return 1

    @taskq_app.flow(timeout_seconds=2, inline_wait_seconds=0)
    def then_more() -> int:
        got = takes_a_second.submit().result()  # suspends; resumes after about 1 s
        time.sleep(1.5)  # within 2 s on its own, past the attempt's 2 s in all
        return got

    fut = then_more.submit()
    worker = burst_worker(taskq_app, concurrency=2, burst_wait=0)
    state = fut.wait(timeout=10)
    assert state.name == "Failed", state
    assert state.error is not None and "flow timed out after 2.0 s" in state.error.message
    assert worker.timed_out == 1


def test_a_flow_within_its_limit_is_not_touched(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def quick(x: int) -> int:
        return x * 2

    @taskq_app.flow(timeout_seconds=30, inline_wait_seconds=0)
    def patient(n: int) -> int:
        return sum(f.result() for f in quick.map(range(n)))

    fut = patient.submit(4)
    burst_worker(taskq_app, burst_wait=0)  # its deadline run, due in 30 s, stays scheduled
    assert fut.result(timeout=10) == 12
    deadline = taskq_app.future(f"{fut.run_id}.deadline.1", "default")
    assert deadline.state.name == "Scheduled"
    # When it comes due it finds the flow ended, and changes nothing.
    assert taskq_app.broker.flows.expire("default", fut.run_id, 1) is False
    assert fut.state.name == "Completed"


def test_the_deadline_task_is_no_registered_task(taskq_app: taskq.App) -> None:
    @taskq_app.flow(timeout_seconds=5)
    def f() -> None: ...

    assert "taskq.flow_deadline" not in taskq_app.registry
    assert taskq_app.get_task("taskq.flow_deadline").name == "taskq.flow_deadline"
    with pytest.raises(taskq.UnknownTaskError):
        taskq_app.get_task("taskq.nothing")
