"""Hard timeouts of ``taskq worker``: the supervisor kills a process whose task overran.

The task holds the GIL in one C call (``sum(range(...))``), so no thread of its own
process (the in-process watchdog) can act before it returns.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator

import pytest

import taskq
from taskq.admission import Admission
from taskq.deadlines import Deadlines, Reporter
from taskq.engine import Engine
from tests import pool_apps
from tests.pool import ROOT, Pool

app = pool_apps.app


@pytest.fixture
def pool_env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    app.configure(redis_url=redis_url, prefix=taskq_prefix)
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    yield env
    app.close()


def wait_started(name: str, timeout: float = 60.0) -> None:
    got = app.broker.execute("BLPOP", pool_apps.started_key(), timeout)
    assert got is not None and got[1].decode() == name, got


@pytest.mark.slow
def test_a_gil_holding_task_is_timed_out_by_the_supervisor_and_its_neighbour_handed_back(
    pool_env: dict[str, str],
) -> None:
    pool = Pool(pool_env, ["--processes", "1", "--concurrency", "2"])
    try:
        neighbour = pool_apps.hold.submit("b")
        wait_started("b")
        stuck = pool_apps.spin.submit("spin")
        wait_started("spin")
        with pytest.raises(taskq.TaskFailedError) as info:
            stuck.result(timeout=60)
        assert info.value.error.type == "taskq.errors.TaskTimeoutError"
        record = app.broker.producer.run_record("default", stuck.run_id)
        assert record["s"] == "Failed" and record["a"] == "1", record
        failed = [
            eid
            for eid, f in app.broker.inspect.run_events("default", stuck.run_id)
            if f.get("s") == "Failed"
        ]
        assert failed, pool.output()
        overran = int(failed[0].split("-")[0]) - int(record["t1"])  # server ms
        # Limit 1 s; recorded within about a second of it (not when sum() returns).
        assert overran < 2200, f"recorded {overran} ms after the attempt started"
        # The neighbour was handed back at once and runs again in the new process.
        wait_started("b")
        app.broker.execute("RPUSH", pool_apps.release_key("b"), "go")
        assert neighbour.result(timeout=30) == "released"
        record = app.broker.producer.run_record("default", neighbour.run_id)
        assert record["x1"].startswith("Interrupted"), record
        assert record["a"] == "2", record
        assert "killed" in pool.output()
    finally:
        pool.close()


@pytest.mark.slow
def test_a_gil_holding_task_asked_to_stop_is_killed_after_its_cancel_grace(
    pool_env: dict[str, str],
) -> None:
    env = {**pool_env, "TASKQ_CANCEL_GRACE_SECONDS": "0.5"}
    pool = Pool(env, ["--processes", "1", "--concurrency", "2"])
    try:
        stuck = pool_apps.grind.submit("grind")  # no time limit: only the cancel stops it
        wait_started("grind")
        assert stuck.cancel("stop grinding") is taskq.CancelReply.REQUESTED
        with pytest.raises(taskq.TaskCancelledError, match="stop grinding"):
            stuck.result(timeout=60)
        record = app.broker.producer.run_record("default", stuck.run_id)
        assert record["s"] == "Cancelled" and record["a"] == "1", record
        cancelled = [
            eid
            for eid, f in app.broker.inspect.run_events("default", stuck.run_id)
            if f.get("s") == "Cancelled"
        ]
        took = int(cancelled[0].split("-")[0]) - int(record["t1"])  # server ms
        assert took < 4000, f"recorded {took} ms after it started (sum() takes longer)"
        assert "did not stop within its cancel grace" in pool.output()
        # The process was replaced: the pool runs the next task.
        assert pool_apps.hold.submit("after", 0).result(timeout=30) == "expired"
    finally:
        pool.close()


class _Process:
    """Stands in for the killed worker process (the test's "child" is this test)."""

    pid = 0

    def __init__(self) -> None:
        self.killed = False

    def is_alive(self) -> bool:
        return not self.killed

    def kill(self) -> None:
        self.killed = True

    def join(self) -> None:
        pass


def test_a_timeout_the_childs_watchdog_already_recorded_is_not_recorded_again(
    pool_env: dict[str, str], redis_url: str
) -> None:
    future = pool_apps.spin.with_options(retries=1).submit("x")
    other = pool_apps.hold.submit("y")
    broker = app.broker
    broker.consumer.ensure_group("default")
    engine = Engine(app)
    first, second = Admission(app, "child-1").admit(
        broker.consumer.read(["default"], "child-1", 2, None)
    )
    reader, writer = multiprocessing.Pipe(duplex=False)
    reporter = Reporter(writer)
    reporter.hello("child-1")
    reporter.timed(first, time.monotonic() - 5)  # long overdue
    engine.handle_timeout(first)  # the child's watchdog won the race
    recorded = broker.producer.run_record("default", future.run_id)
    events = broker.inspect.run_events("default", future.run_id)
    assert recorded["s"] == "AwaitingRetry"

    deadlines = Deadlines("tests.pool_apps:app", redis_url)
    deadlines.attach(0, reader)
    deadlines.receive()
    process = _Process()
    assert deadlines.enforce({0: process}) == [0] and process.killed
    # The second recording changed nothing (no second attempt used up, no event)...
    assert broker.producer.run_record("default", future.run_id) == recorded
    assert broker.inspect.run_events("default", future.run_id) == events
    # ...and the child's other run was handed back.
    record = broker.producer.run_record("default", other.run_id)
    assert record["s"] == "Pending" and record["x1"].startswith("Interrupted"), record
    assert second.run_id == other.run_id
