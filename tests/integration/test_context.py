"""``taskq.context()``: the run's identity, its cancel flag and progress reports, on
real workers (and in a direct call)."""

from __future__ import annotations

import pytest

import taskq
from taskq.cli.show import describe
from taskq.events import read_events
from taskq.protocol import split_event
from taskq.testing import BurstWorker


def test_a_task_and_a_flow_child_see_their_run(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(retries=1)
    def who(fail: bool) -> dict[str, object]:
        ctx = taskq.context()
        if fail and ctx.attempt == 1:
            raise RuntimeError("once")
        return {
            "run": ctx.run_id,
            "attempt": ctx.attempt,
            "task": ctx.task_name.rsplit(".", 1)[-1],
            "queue": ctx.queue,
            "flow": ctx.flow_run_id,
            "cancel": ctx.cancel_requested,
        }

    @taskq_app.flow
    def parent() -> object:
        return who(False)

    top, retried, flow = who.submit(False), who.submit(True), parent.submit()
    burst_worker(taskq_app)
    assert top.result(timeout=5) == {
        "run": top.run_id,
        "attempt": 1,
        "task": "who",
        "queue": "default",
        "flow": None,
        "cancel": False,
    }
    assert retried.result(timeout=5)["attempt"] == 2
    child = flow.result(timeout=10)
    assert child["flow"] == flow.run_id and child["run"] == f"{flow.run_id}.1"


def test_progress_reports_land_in_the_record_and_the_events(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def steps(n: int) -> int:
        ctx = taskq.context()
        for i in range(n):
            ctx.progress((i + 1) / n, f"step {i + 1} of {n}")  # most within 0.5 s: held back
        return n

    fut = steps.submit(5)
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == 5
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert (record["pg"], record["pm"]) == ("1", "step 5 of 5")  # the last always lands
    events = [
        (f.get("pg"), f.get("pm"))
        for _, fields in taskq_app.broker.inspect.events("default")
        for f in split_event(fields)
        if f.get("r") == fut.run_id and f.get("s") == "Progress"
    ]
    assert events[0] == ("0.2", "step 1 of 5")
    assert events[-1] == ("1", "step 5 of 5")
    assert len(events) < 5  # bounded: reports within the interval were folded
    assert read_events(taskq_app.broker, "default")[-1].state in ("Completed", "Progress")
    lines = describe(taskq_app.broker, "default", fut.run_id)
    assert "  progress: 100%  step 5 of 5" in lines


def test_a_stale_attempts_report_is_fenced_off(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def quick() -> None: ...

    fut = quick.submit()
    burst_worker(taskq_app)
    assert taskq_app.broker.control.progress("default", fut.run_id, 1, 0.5, "late") is False
    assert "pg" not in taskq_app.broker.producer.run_record("default", fut.run_id)


def test_context_outside_a_run_and_in_a_direct_call(taskq_app: taskq.App) -> None:
    with pytest.raises(taskq.errors.MissingContextError):
        taskq.context()

    @taskq_app.task
    def local() -> tuple[str, int, object]:
        ctx = taskq.context()
        ctx.progress(0.5, "half")
        with pytest.raises(taskq.ConfigurationError, match="from 0 to 1"):
            ctx.progress(1.5)
        return ctx.task_name.rsplit(".", 1)[-1], ctx.attempt, ctx._run.progress  # type: ignore[union-attr]

    assert local() == ("local", 1, (0.5, "half"))
