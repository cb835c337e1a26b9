"""Prefect's state-change hooks beyond on_completion / on_failure: ``on_running``,
``on_cancellation`` and ``on_crashed``, on tasks and flows, called by real workers."""

from __future__ import annotations

import pytest

import taskq
from taskq.testing import BurstWorker

Seen = list[tuple[str, str, str, int]]


def recorder(seen: Seen, tag: str):  # type: ignore[no-untyped-def]
    def hook(task: taskq.Task[..., object], run: taskq.TaskRun, state: taskq.State) -> None:
        seen.append((tag, task.name.rsplit(".", 1)[-1], state.name, state.attempt))

    return hook


def test_on_running_is_called_for_each_attempt(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    seen: Seen = []

    @taskq_app.task(retries=1, retry_delay_seconds=0, on_running=[recorder(seen, "run")])
    def flaky() -> str:
        if len(seen) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @taskq_app.task(on_running=[recorder(seen, "run")])
    async def quick() -> int:
        return 1

    fut, other = flaky.submit(), quick.submit()
    burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == "ok" and other.result(timeout=5) == 1
    mine = [s for s in seen if s[1] == "flaky"]
    assert mine == [("run", "flaky", "Running", 1), ("run", "flaky", "Retrying", 2)]
    assert ("run", "quick", "Running", 1) in seen


def test_on_running_of_a_flow_is_not_called_again_when_it_resumes(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    seen: Seen = []

    @taskq_app.task
    def child(x: int) -> int:
        return x * 2

    @taskq_app.flow(on_running=[recorder(seen, "run")], inline_wait_seconds=0)
    def parent(n: int) -> int:
        return sum(f.result() for f in child.map(range(n)))

    fut = parent.submit(3)
    burst_worker(taskq_app, concurrency=1)  # children run only once the flow suspended
    assert fut.result(timeout=10) == 6
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert int(record.get("resumes", 0)) >= 1  # it did suspend and resume
    assert seen == [("run", "parent", "Running", 1)]


def test_on_cancellation_is_called_when_a_run_ends_cancelled(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    seen: Seen = []
    hook = recorder(seen, "cancel")

    @taskq_app.task(on_cancellation=[hook], on_failure=[recorder(seen, "fail")])
    def stop(by_state: bool) -> object:
        if by_state:
            return taskq.Cancelled("returned")
        raise taskq.Cancel("raised")

    @taskq_app.flow(on_cancellation=[hook])
    def flow_stop() -> None:
        raise taskq.Cancel("flow says stop")

    runs = [stop.submit(True), stop.submit(False), flow_stop.submit()]
    burst_worker(taskq_app)
    for fut in runs:
        with pytest.raises(taskq.TaskCancelledError):
            fut.result(timeout=5)
    assert sorted(seen) == [
        ("cancel", "flow_stop", "Cancelled", 1),
        ("cancel", "stop", "Cancelled", 1),
        ("cancel", "stop", "Cancelled", 1),
    ]


@pytest.mark.parametrize("kind", ["task", "flow"])
def test_on_crashed_is_called_by_the_worker_that_takes_over(
    taskq_app: taskq.App, burst_worker: BurstWorker, kind: str
) -> None:
    seen: Seen = []
    hooks = {"on_crashed": [recorder(seen, "crash")], "on_running": [recorder(seen, "run")]}

    @taskq_app.task(**hooks)  # type: ignore[arg-type]
    def work(x: int) -> int:
        return x + 1

    @taskq_app.flow(**hooks)  # type: ignore[arg-type]
    def flow_work(x: int) -> int:
        return x + 2

    fut = (work if kind == "task" else flow_work).submit(1)
    broker = taskq_app.broker
    broker.consumer.ensure_group("default")
    # A worker takes the run and dies: its delivery stays pending, its lease long expired.
    [(_, eid, _, _)] = broker.consumer.read(["default"], "dead-worker", 1, None)
    assert broker.consumer.start("default", "dead-worker", [(eid, fut.run_id, 0, "")])[0][:2] == (
        1,
        1,
    )
    stream = taskq_app.keys.stream("default")
    broker.execute("XCLAIM", stream, "taskq", "dead-worker", 0, eid, "IDLE", 10**8, "JUSTID")
    burst_worker(taskq_app)
    assert fut.result(timeout=10) == (2 if kind == "task" else 3)
    name = "work" if kind == "task" else "flow_work"
    assert seen == [("crash", name, "Crashed", 1), ("run", name, "Running", 2)]
