"""``return_state=True`` on calls and ``submit``, and ``State.result()``, as in Prefect;
flow bodies that return states or futures."""

from __future__ import annotations

import threading

import pytest

import taskq
from taskq.testing import BurstWorker


def test_submit_with_return_state_waits_and_returns_the_final_state(
    taskq_app: taskq.App,
) -> None:
    @taskq_app.task
    def half(x: int) -> float:
        if x < 0:
            raise ValueError("negative")
        return x / 2

    worker = taskq.Worker(taskq_app, concurrency=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        ok = half.submit(8, return_state=True)  # type: ignore[call-arg]
        bad = half.submit(-1, return_state=True)  # type: ignore[call-arg]
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert isinstance(ok, taskq.State) and ok.name == "Completed"
    assert ok.result() == 4.0 and ok.run_id
    assert isinstance(bad, taskq.State) and bad.name == "Failed" and bad.attempt == 1
    with pytest.raises(taskq.TaskFailedError, match="negative"):
        bad.result()
    err = bad.result(raise_on_failure=False)
    assert isinstance(err, taskq.TaskFailedError) and err.run_id == bad.run_id


def test_future_wait_gives_a_state_whose_result_is_the_value(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def word() -> str:
        return "hi"

    @taskq_app.task
    def stop() -> None:
        raise taskq.Cancel("no need")

    w, s = word.submit(), stop.submit()
    burst_worker(taskq_app)
    assert w.wait(timeout=5).result() == "hi"
    with pytest.raises(taskq.TaskCancelledError, match="no need"):
        s.wait(timeout=5).result()
    assert s.state.result(raise_on_failure=False).reason == "no need"


def test_a_state_that_is_not_final_has_no_result(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def later() -> int:
        return 1

    fut = later.with_options(delay=3600).submit()
    state = fut.state
    assert state.name == "Scheduled"
    with pytest.raises(taskq.TaskqError, match="not final"):
        state.result()


def test_a_direct_call_with_return_state_returns_the_state(taskq_app: taskq.App) -> None:
    calls: list[int] = []

    @taskq_app.task(retries=1, retry_delay_seconds=0)
    def flaky(fail_times: int) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise KeyError("boom")
        return "done"

    got = flaky(1, return_state=True)  # type: ignore[call-arg]
    assert isinstance(got, taskq.State) and got.name == "Completed" and got.attempt == 2
    assert got.result() == "done"
    calls.clear()
    bad = flaky(5, return_state=True)  # type: ignore[call-arg]
    assert bad.name == "Failed" and bad.attempt == 2 and bad.error.type == "KeyError"
    with pytest.raises(KeyError, match="boom"):  # the live exception, as it was raised
        bad.result()
    assert flaky(0) == "done"  # without it, the value as before


def test_a_function_with_a_return_state_parameter_keeps_it(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def echo(return_state: bool) -> bool:
        return return_state

    assert echo(return_state=True) is True


def test_an_async_direct_call_with_return_state(taskq_app: taskq.App) -> None:
    import asyncio

    @taskq_app.task
    async def boom() -> None:
        raise RuntimeError("async boom")

    state = asyncio.run(boom(return_state=True))  # type: ignore[call-arg]
    assert state.name == "Failed" and state.error.message == "async boom"


def test_children_called_with_return_state_in_a_flow(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def check(x: int) -> int:
        if x == 0:
            raise ValueError("zero")
        return 10 // x

    @taskq_app.flow
    def tolerant(xs: list[int]) -> dict[str, object]:
        states = [check(x, return_state=True) for x in xs]  # type: ignore[call-arg]
        submitted = check.submit(xs[0], return_state=True)  # type: ignore[call-arg]
        return {
            "names": [s.name for s in states],
            "values": [s.result() for s in states if s.is_completed()],
            "error": type(states[-1].result(raise_on_failure=False)).__name__,
            "submitted": submitted.result(),
        }

    fut = tolerant.submit([2, 5, 0])
    burst_worker(taskq_app)
    got = fut.result(timeout=10)
    assert got == {
        "names": ["Completed", "Completed", "Failed"],
        "values": [5, 2],
        "error": "ChildFailedError",
        "submitted": 5,
    }


def test_a_flow_returning_states_or_futures_takes_their_outcome(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def inc(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x + 1

    @taskq_app.flow
    def gives_state(ok: bool) -> object:
        return taskq.Completed("fine") if ok else taskq.Failed("flow refused")

    @taskq_app.flow
    def gives_futures(xs: list[int]) -> object:
        return [inc.submit(x) for x in xs]

    @taskq_app.flow
    def gives_future(x: int) -> object:
        return inc.submit(x)

    runs = {
        "state_ok": gives_state.submit(True),
        "state_bad": gives_state.submit(False),
        "futs_ok": gives_futures.submit([1, 2]),
        "futs_bad": gives_futures.submit([1, -1]),
        "fut_ok": gives_future.submit(9),
    }
    burst_worker(taskq_app)
    assert runs["state_ok"].result(timeout=10) == "fine"
    with pytest.raises(taskq.TaskFailedError, match="flow refused"):
        runs["state_bad"].result(timeout=10)
    assert runs["futs_ok"].result(timeout=10) == [2, 3]
    with pytest.raises(taskq.TaskFailedError, match="1/2 states failed"):
        runs["futs_bad"].result(timeout=10)
    assert runs["fut_ok"].result(timeout=10) == 10


def test_a_direct_flow_call_unwraps_returned_states(
    taskq_app: taskq.App,
) -> None:
    @taskq_app.flow
    def local(ok: bool) -> object:
        return taskq.Completed(7) if ok else taskq.Failed("local refusal")

    assert local(True) == 7
    with pytest.raises(taskq.errors.FailedStateReturned, match="local refusal"):
        local(False)
    state = local(False, return_state=True)  # type: ignore[call-arg]
    assert state.name == "Failed" and state.error.message == "local refusal"
