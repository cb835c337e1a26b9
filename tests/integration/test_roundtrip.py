"""Submit -> worker -> result, against a real Redis."""

from __future__ import annotations

import asyncio
import re

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker


def test_submit_result_round_trip_sync_and_async(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    @taskq_app.task
    async def greet(name: str) -> str:
        await asyncio.sleep(0)
        return f"hello {name}"

    f1, f2, f3 = add.submit(2, 3), greet.submit("ada"), add.delay(y=1, x=1)
    assert f1.state.name == "Pending"
    burst_worker(taskq_app)
    assert (f1.result(timeout=5), f2.result(timeout=5), f3.result(timeout=5)) == (5, "hello ada", 2)
    assert f1.state.name == "Completed" and f1.state.attempt == 1
    assert f2.done()


def test_map_over_1000_inputs_returns_results_in_input_order(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def square(x: int) -> int:
        return x * x

    futures = square.map(range(1000))
    assert len({f.run_id for f in futures}) == 1000
    burst_worker(taskq_app, concurrency=8)
    assert [f.result(timeout=5) for f in futures] == [x * x for x in range(1000)]


def test_events_show_pending_running_completed_in_order(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def ok() -> str:
        return "fine"

    @taskq_app.task
    def bad() -> None:
        raise KeyError("missing thing")

    good, failing = ok.submit(), bad.submit()
    burst_worker(taskq_app)
    events = read_events(taskq_app.broker, "default")
    story = [e.state for e in events if e.run_id == good.run_id]
    assert story == ["Pending", "Running", "Completed"]
    failed = [e for e in events if e.run_id == failing.run_id]
    assert [e.state for e in failed] == ["Pending", "Running", "Failed"]
    assert failed[-1].error_type == "KeyError"
    assert "missing thing" in failed[-1].error_message


def test_failed_task_error_comes_back_as_data(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def explode(n: int) -> int:
        raise ValueError(f"bad input {n}")

    fut = explode.submit(7)
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=5)
    err = info.value
    assert (err.run_id, err.attempts, err.error.type) == (fut.run_id, 1, "ValueError")
    assert err.error.message == "bad input 7"
    assert "raise ValueError" in err.error.traceback
    returned = fut.result(raise_on_failure=False)
    assert isinstance(returned, taskq.TaskFailedError)
    assert fut.state.is_failed() and fut.state.error == err.error


def test_cancel_ends_the_run_cancelled(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task
    def give_up() -> None:
        raise taskq.Cancel("not needed any more")

    fut = give_up.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskCancelledError, match="not needed any more"):
        fut.result(timeout=5)
    assert fut.state.name == "Cancelled"


def test_result_timeout_and_wait_and_as_completed(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def ident(x: int) -> int:
        return x

    futures = ident.map(range(20))
    with pytest.raises(taskq.ResultTimeoutError):
        futures[0].result(timeout=0.05)
    before = taskq.wait(futures, timeout=0.05)
    assert len(before.not_done) == 20 and not before.done
    burst_worker(taskq_app)
    assert sorted(f.result() for f in taskq.as_completed(futures, timeout=5)) == list(range(20))
    after = taskq.wait(futures, timeout=5)
    assert len(after.done) == 20 and not after.not_done


def test_unserializable_result_fails_the_run_with_a_clear_error(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def weird() -> object:
        return object()

    fut = weird.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError, match="task result cannot be stored"):
        fut.result(timeout=5)


def test_results_expire_and_the_stream_returns_to_empty(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(result_ttl=30)
    def short(x: int) -> int:
        return x

    @taskq_app.task
    def default_ttl(x: int) -> int:
        return x

    a, b = short.submit(1), default_ttl.submit(2)
    c = default_ttl.with_options(result_ttl=7).submit(3)
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in (a, b, c)] == [1, 2, 3]
    client, keys = taskq_app.broker.client, taskq_app.keys
    for fut, ttl in ((a, 30_000), (b, 86_400_000), (c, 7_000)):
        for key in (keys.run("default", fut.run_id), keys.result("default", fut.run_id)):
            assert 0 < client.pttl(key) <= ttl
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)


def test_enqueue_is_idempotent_for_a_run_id(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def noop() -> None:
        return None

    from taskq.message import Message, encode_message

    payload = encode_message(Message("fixed-run-id", noop.name, [], {}))
    assert taskq_app.broker.producer.enqueue("default", [("fixed-run-id", payload, "")]) == [1]
    assert taskq_app.broker.producer.enqueue("default", [("fixed-run-id", payload, "")]) == [0]
    assert taskq_app.broker.inspect.queue_sizes("default")[0] == 1


def test_hooks_run_after_the_outcome_is_recorded(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    seen: list[tuple[str, str, str]] = []

    def on_done(task: taskq.Task[..., object], run: taskq.TaskRun, state: taskq.State) -> None:
        seen.append((task.name.rsplit(".", 1)[-1], run.id, state.name))

    @taskq_app.task(on_completion=[on_done], on_failure=[on_done])
    def maybe(fail: bool) -> bool:
        if fail:
            raise RuntimeError("asked to fail")
        return True

    ok, bad = maybe.submit(False), maybe.submit(True)
    burst_worker(taskq_app)
    assert sorted(seen) == sorted(
        [("maybe", ok.run_id, "Completed"), ("maybe", bad.run_id, "Failed")]
    )


def test_tasks_on_several_queues(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task(queue="high")
    def urgent() -> str:
        return "high"

    @taskq_app.task
    def normal() -> str:
        return "default"

    u, n = urgent.submit(), normal.submit()
    assert taskq_app.queues() == ["default", "high"]
    burst_worker(taskq_app, ["high"])
    assert u.result(timeout=5) == "high"
    assert not n.done()
    burst_worker(taskq_app)
    assert n.result(timeout=5) == "default"


def test_task_run_name_is_recorded(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task(task_run_name="fetch-{url}-{retries}")
    def fetch(url: str, retries: int = 2) -> str:
        return url

    @taskq_app.task(task_run_name=lambda: "constant-name")
    def other() -> None:
        return None

    one, many, fixed = fetch.submit("a"), fetch.map(["b", "c"]), other.submit()
    burst_worker(taskq_app)
    assert [f.state.data["n"] for f in (one, *many, fixed)] == [
        "fetch-a-2",
        "fetch-b-2",
        "fetch-c-2",
        "constant-name",
    ]
    with pytest.raises(taskq.ConfigurationError, match="cannot be filled"):
        taskq_app.task(task_run_name="x-{nope}", name="bad")(lambda: None).submit()


def test_result_larger_than_max_result_bytes_fails_the_run_once(
    redis_url: str, taskq_prefix: str, burst_worker: BurstWorker
) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, max_result_bytes=1000)

    @app.task(retries=3)
    def big(n: int) -> str:
        return "x" * n

    small, large = big.submit(900), big.submit(5000)
    try:
        burst_worker(app)
        assert small.result(timeout=5) == "x" * 900
        with pytest.raises(taskq.TaskFailedError) as info:
            large.result(timeout=5)
        err = info.value
        assert err.error.type == "taskq.errors.MessageError"
        assert re.search(r"result of 50\d\d bytes exceeds max_result_bytes=1000", err.error.message)
        assert err.attempts == 1  # deterministic: never retried
        assert app.broker.client.llen(app.keys.result("default", large.run_id)) == 1
    finally:
        app.close()


def test_max_result_bytes_defaults_to_the_payload_cap_and_is_checked() -> None:
    assert taskq.App().settings.max_result_bytes == 1 << 20
    with pytest.raises(taskq.ConfigurationError, match="max_result_bytes"):
        taskq.App(max_result_bytes=0)


def test_a_result_a_reader_could_not_decode_fails_the_run(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(retries=2)
    def int_keys() -> dict[int, str]:
        return {1: "a"}  # msgpack carries it, but no reader accepts a non-string map key

    fut = int_keys.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=5)
    assert info.value.error.type == "taskq.errors.MessageError"
    assert "task result cannot be stored" in info.value.error.message
    assert "map key 1" in info.value.error.message
    assert info.value.attempts == 1  # deterministic: not retried


def test_async_runs_of_one_batch_run_together_on_the_event_loop(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    """The runs a fetch admits start on the worker's event loop together: eight async
    runs that each wait for all eight at a barrier finish (one at a time they could not)."""
    barrier: list[asyncio.Barrier] = []

    @taskq_app.task
    async def meet(i: int) -> int:
        if not barrier:
            barrier.append(asyncio.Barrier(8))
        async with asyncio.timeout(10):
            await barrier[0].wait()
        return i

    futures = meet.map(range(8))
    burst_worker(taskq_app, concurrency=8)
    assert [f.result(timeout=5) for f in futures] == list(range(8))


def test_map_spreads_iterables_and_passes_unmapped_whole_as_prefect(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def scale(x: int, factor: int, lookup: list[int], offset: int = 0) -> int:
        return x * factor + sum(lookup) + offset

    plain = scale.map([1, 2, 3], 10, taskq.unmapped([1, 1]))
    keyed = scale.map([1, 2], factor=2, lookup=taskq.unmapped([5]), offset=[100, 200])
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in plain] == [12, 22, 32]
    assert [f.result(timeout=5) for f in keyed] == [107, 209]


def test_a_flow_maps_keyword_iterables_over_its_children(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    @taskq_app.flow
    def sums(xs: list[int], ys: list[int]) -> list[int]:
        return [f.result() for f in add.map(xs, y=ys)]

    fut = sums.submit([1, 2, 3], [10, 20, 30])
    burst_worker(taskq_app)
    assert fut.result(timeout=10) == [11, 22, 33]
