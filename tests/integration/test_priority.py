"""Task priority: one stream per level, highest level served first, kept through retries,
scheduled submission and flow suspension; bad values refused at decoration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import taskq
from taskq.keys import PRIORITIES
from taskq.testing import BurstWorker, raw_client

BAD_PRIORITIES = [-1, 10, True, 2.5, "high"]


def stream_lengths(redis_url: str, app: taskq.App, queue: str = "default") -> list[int]:
    """XLEN of every priority stream of ``queue``, indexed by level, read with a plain client."""
    client = raw_client(redis_url)
    try:
        return [int(client.xlen(app.broker.keys.stream(queue, n))) for n in range(PRIORITIES)]
    finally:
        client.close()


def at_levels(counts: dict[int, int]) -> list[int]:
    """The expected :func:`stream_lengths`: ``counts`` per level, 0 everywhere else."""
    return [counts.get(level, 0) for level in range(PRIORITIES)]


def tags(level: int, n: int = 30) -> list[str]:
    return [f"p{level}-{i:02d}" for i in range(n)]


def submit_levels_0_9_5(task: taskq.Task[[str], str]) -> list[taskq.Future[str]]:
    """30 runs at level 0, then 30 at level 9, then 30 at level 5, in that order."""
    futures = task.map(tags(0))
    futures += task.with_options(priority=9).map(tags(9))
    futures += task.with_options(priority=5).map(tags(5))
    return futures


# -- ordering ---------------------------------------------------------------------------


def test_highest_level_runs_first_and_each_level_in_submission_order(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    ran: list[str] = []

    @taskq_app.task
    def record(tag: str) -> str:
        ran.append(tag)
        return tag

    futures = submit_levels_0_9_5(record)
    burst_worker(taskq_app, concurrency=1)  # one slot, in-process: the order is exact
    assert ran == tags(9) + tags(5) + tags(0)
    waited = taskq.wait(futures, timeout=10)
    assert len(waited.done) == 90 and not waited.not_done
    assert [f.result(timeout=5) for f in futures] == tags(0) + tags(9) + tags(5)
    assert all(f.state.name == "Completed" for f in futures)
    assert stream_lengths(redis_url, taskq_app) == at_levels({})


def test_each_level_has_its_own_stream_under_the_queue_tag(
    taskq_app: taskq.App, redis_url: str
) -> None:
    @taskq_app.task
    def record(tag: str) -> str:
        return tag

    keys = taskq_app.broker.keys
    assert PRIORITIES == 10
    assert keys.stream("default", 0) == keys.stream("default")
    assert keys.stream("default").endswith("{default}:stream")
    assert keys.stream("default", 9) == keys.stream("default") + ":p9"
    assert record.options.priority == 0

    submit_levels_0_9_5(record)  # no worker: everything stays queued
    assert stream_lengths(redis_url, taskq_app) == at_levels({0: 30, 5: 30, 9: 30})


def test_level_comes_before_queue_order(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    if redis_url.startswith("redis+cluster://"):
        pytest.skip("two queues are two slots on a Cluster: priority is strict within each")
    ran: list[str] = []

    @taskq_app.task(queue="first")
    def routine(tag: str) -> str:
        ran.append(tag)
        return tag

    @taskq_app.task(queue="second", priority=5)
    def urgent(tag: str) -> str:
        ran.append(tag)
        return tag

    low, high = routine.map(tags(0, 5)), urgent.map(tags(5, 5))
    # "first" is listed first, but the worker serves every level-5 run before level 0.
    burst_worker(taskq_app, ["first", "second"], concurrency=1)
    assert ran == tags(5, 5) + tags(0, 5)
    assert [f.result(timeout=5) for f in low + high] == tags(0, 5) + tags(5, 5)


# -- a run keeps its level --------------------------------------------------------------


def test_a_retried_attempt_goes_back_to_its_level(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    ran: list[str] = []
    holder: list[taskq.Worker] = []

    @taskq_app.task(priority=7, retries=1, retry_delay_seconds=0)
    def flaky(x: int) -> int:
        ran.append("flaky")
        if ran.count("flaky") == 1:
            # The worker holds this run in its only slot, so it fetches nothing more;
            # run() returns once this failed attempt is recorded (retry scheduled).
            holder[0].stop()
            raise ConnectionError("first attempt fails")
        return 2 * x

    @taskq_app.task
    def routine(tag: str) -> str:
        ran.append(tag)
        return tag

    behind = routine.map(tags(0, 3))  # submitted first, but at level 0
    fut = flaky.submit(21)
    worker = taskq.Worker(taskq_app, concurrency=1, burst=True)
    holder.append(worker)
    worker.run()
    assert ran == ["flaky"]

    taskq_app.broker.delay.promote("default", 100)  # due now (the mover may have moved it already)
    assert taskq_app.broker.client.zcard(taskq_app.keys.delayed("default")) == 0
    assert stream_lengths(redis_url, taskq_app) == at_levels({0: 3, 7: 1})

    burst_worker(taskq_app, concurrency=1)
    assert ran == ["flaky", "flaky", *tags(0, 3)]  # the retry still outranks level 0
    assert fut.result(timeout=5) == 42
    assert (fut.state.name, fut.state.attempt) == ("Completed", 2)
    assert taskq_app.broker.producer.run_record("default", fut.run_id)["a"] == "2"
    assert [f.result(timeout=5) for f in behind] == tags(0, 3)


def test_a_scheduled_run_lands_in_its_levels_stream_when_due(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    ran: list[str] = []

    @taskq_app.task
    def record(tag: str) -> str:
        ran.append(tag)
        return tag

    past = datetime.now(UTC) - timedelta(seconds=1)  # due at once: nothing to wait for
    plain = record.with_options(scheduled_at=past).submit("p0")
    urgent = record.with_options(priority=7, scheduled_at=past).submit("p7")
    taskq_app.broker.delay.promote("default", 100)
    assert taskq_app.broker.client.zcard(taskq_app.keys.delayed("default")) == 0
    assert stream_lengths(redis_url, taskq_app) == at_levels({0: 1, 7: 1})

    burst_worker(taskq_app, concurrency=1)
    assert ran == ["p7", "p0"]
    assert (urgent.result(timeout=5), plain.result(timeout=5)) == ("p7", "p0")


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_flow_keeps_its_level_through_suspension_and_children_use_their_own(
    concurrency: int, taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    ran: list[str] = []

    @taskq_app.task(priority=8)
    def urgent(tag: str) -> str:
        ran.append(tag)
        return tag.upper()

    @taskq_app.task
    def routine(tag: str) -> str:
        ran.append(tag)
        return tag.upper()

    @taskq_app.flow(priority=3)
    def two_waves() -> list[str]:
        ran.append("flow")  # once per execution of the body: start and each replay
        first = [f.result() for f in urgent.map(["u1", "u2"])]
        second = [f.result() for f in routine.map(["r1", "r2"])]
        return first + second

    bystanders = routine.map(["b1", "b2", "b3"])  # level 0, submitted before the flow
    fut = two_waves.submit()
    burst_worker(taskq_app, concurrency=concurrency)
    assert fut.result(timeout=5) == ["U1", "U2", "R1", "R2"]
    assert [f.result(timeout=5) for f in bystanders] == ["B1", "B2", "B3"]
    assert sorted(t for t in ran if t != "flow") == ["b1", "b2", "b3", "r1", "r2", "u1", "u2"]
    if concurrency == 1:
        # One slot: the flow suspends at each wait. Level 3 beats the level-0 bystanders,
        # the level-8 children run next, the resumed flow is back on level 3 (before the
        # bystanders), and the level-0 children queue behind the bystanders.
        assert ran == ["flow", "u1", "u2", "flow", "b1", "b2", "b3", "r1", "r2", "flow"]


# -- validation -------------------------------------------------------------------------


def offline_app() -> taskq.App:
    """Decoration never talks to Redis: an unreachable URL is enough."""
    return taskq.App("redis://127.0.0.1:1/0")


def assert_refused_as_bad_priority(exc: pytest.ExceptionInfo[taskq.ConfigurationError]) -> None:
    message = str(exc.value)
    assert "priority" in message
    assert "unknown" not in message  # refused as a bad value, not as an unknown option


@pytest.mark.parametrize("value", BAD_PRIORITIES, ids=repr)
def test_a_bad_priority_is_refused_when_the_decorator_runs(value: object) -> None:
    app = offline_app()

    def body() -> None:
        return None

    with pytest.raises(taskq.ConfigurationError) as on_task:
        app.task(priority=value)(body)  # type: ignore[call-overload]
    assert_refused_as_bad_priority(on_task)
    with pytest.raises(taskq.ConfigurationError) as on_flow:
        app.flow(priority=value)(body)  # type: ignore[call-overload]
    assert_refused_as_bad_priority(on_flow)
    registered = app.task(name="registered")(body)
    with pytest.raises(taskq.ConfigurationError) as on_copy:
        registered.with_options(priority=value)  # type: ignore[arg-type]
    assert_refused_as_bad_priority(on_copy)
    assert registered.options.priority == 0


@pytest.mark.parametrize("value", [0, 9])
def test_priorities_0_and_9_are_accepted(value: int) -> None:
    app = offline_app()

    @app.task(priority=value)
    def task_body() -> None:
        return None

    @app.flow(priority=value)
    def flow_body() -> None:
        return None

    assert task_body.options.priority == value
    assert flow_body.options.priority == value
    assert task_body.with_options(priority=9 - value).options.priority == 9 - value
    assert task_body.options.priority == value


# -- over-delivery ------------------------------------------------------------------------


def test_release_gives_unstarted_deliveries_back_untouched(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    """What a worker does when a blocking read over several levels returns more entries
    than it has slots (Redis >= 7.2): the extras go back to the end of their streams,
    no longer pending, their records still Pending, and they run later as usual."""

    @taskq_app.task
    def record(tag: str) -> str:
        return tag

    futures = submit_levels_0_9_5(record)
    broker = taskq_app.broker
    broker.consumer.ensure_group("default")
    entries = broker.consumer.read(["default"], "greedy", 40, None)
    assert [e[3] for e in entries] == [9] * 30 + [5] * 10  # highest level first
    assert broker.inspect.queue_sizes("default") == (90, 40)

    assert broker.consumer.release("greedy", entries[25:]) == 15
    assert broker.consumer.release("greedy", entries[25:]) == 0  # no longer owned: nothing happens
    assert broker.inspect.queue_sizes("default") == (90, 25)
    assert stream_lengths(redis_url, taskq_app) == at_levels({0: 30, 5: 30, 9: 30})
    assert {f.state.name for f in futures} == {"Pending"}

    broker.consumer.release("greedy", entries[:25])  # the rest too, so a worker can take them all
    burst_worker(taskq_app, concurrency=4)
    assert [f.result(timeout=5) for f in futures] == tags(0) + tags(9) + tags(5)
    assert broker.inspect.queue_sizes("default") == (0, 0)


def test_reclaim_asks_every_level_in_one_round_trip(
    taskq_app: taskq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten levels must not mean ten round trips every half lease: through a slow link
    that multiplied the reclaim cost (the fault suite saw 18 runs/s drop to 3)."""

    @taskq_app.task
    def record(tag: str) -> str:
        return tag

    broker = taskq_app.broker
    broker.consumer.ensure_group("default")
    record.with_options(priority=4).map(tags(4, 3))
    taken = broker.consumer.read(["default"], "stalled", 3, None)
    assert len(taken) == 3

    trips: list[int] = []
    real_send = broker.connection.send

    def counting_send(commands: Any) -> list[Any]:
        trips.append(len(commands))
        return real_send(commands)

    monkeypatch.setattr(broker.connection, "send", counting_send)
    assert broker.consumer.reclaim("default", "rescuer", 3600, 10) == []  # nothing idle that long
    assert trips == [PRIORITIES]  # one pipeline probing every level

    trips.clear()
    stream = broker.keys.stream("default", 4)
    ids = [e[1] for e in taken]  # make them look stalled for a minute (no sleeping)
    real_send([("XCLAIM", stream, "taskq", "stalled", 0, *ids, "IDLE", 60_000, "JUSTID")])
    got = broker.consumer.reclaim("default", "rescuer", 30, 10)
    assert sorted(e[1] for e in got) == sorted(e[1] for e in taken)
    assert {e[3] for e in got} == {4}
    assert len(trips) == 2  # the probe, then one XAUTOCLAIM on the one level that has some
