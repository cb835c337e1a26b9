"""A worker killed at each step of a run's path: the state converges and nothing is lost.

Each scenario plays a worker that dies at one point by calling the broker's steps
itself and then stopping (as SIGKILL would: no clean-up), then lets a healthy worker
with a 1 s lease take over. Steps that are one script (outcome + ack + event in
``finish``; a retry's ack + ZADD + event in ``retry``) cannot be split by a crash,
so the points are the gaps between scripts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import taskq
from taskq.events import read_events
from taskq.message import decode_message, encode_outcome

pytestmark = pytest.mark.reliability


@pytest.fixture
def app(redis_url: str, taskq_prefix: str) -> Iterator[taskq.App]:
    app = taskq.App(redis_url, prefix=taskq_prefix, lease_seconds=1)
    yield app
    app.close()


def healthy_worker_until(app: taskq.App, done: Callable[[], object]) -> taskq.Worker:
    """Run a worker (it reclaims expired leases) until ``done()`` returns, then stop it."""
    worker = taskq.Worker(app, concurrency=2)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        done()
    finally:
        worker.stop()
        thread.join(timeout=30)
    return worker


def dead_worker_reads(app: taskq.App) -> tuple[bytes, str]:
    entries = app.broker.consumer.read(["default"], "doomed-worker", 1, None)
    assert len(entries) == 1
    _, eid, fields, _ = entries[0]
    return eid, decode_message(fields[b"m"]).run_id


def age_past_the_lease(app: taskq.App, queue: str, eid: bytes) -> None:
    """The dead worker's lease runs out (its idle time set to a minute, as if it passed)."""
    stream = app.keys.stream(queue)
    app.broker.execute("XCLAIM", stream, "taskq", "doomed-worker", 0, eid, "IDLE", 60_000, "JUSTID")


@pytest.mark.parametrize("step", ["after fetch", "after start", "after the body ran"])
def test_a_worker_killed_between_steps_loses_nothing(app: taskq.App, step: str) -> None:
    calls: Counter[int] = Counter()

    @app.task
    def work(x: int) -> int:
        calls[x] += 1
        return x * 3

    fut = work.submit(7)
    app.broker.consumer.ensure_group("default")
    eid, rid = dead_worker_reads(app)
    if step != "after fetch":
        [(kind, attempt, _)] = app.broker.consumer.start(
            "default", "doomed-worker", [(eid, rid, 0, "")]
        )
        assert (kind, attempt) == (1, 1)
    if step == "after the body ran":
        calls[7] += 1  # the body ran here; its outcome was never recorded
    age_past_the_lease(app, "default", eid)
    healthy_worker_until(app, lambda: fut.result(timeout=30))
    assert fut.result() == 21
    story = [e.state for e in read_events(app.broker, "default") if e.run_id == rid]
    if step == "after fetch":
        assert story == ["Pending", "Running", "Completed"] and calls[7] == 1
    else:  # the dead attempt is recorded Crashed; the new one completes
        assert story == ["Pending", "Running", "Crashed", "Running", "Completed"]
        assert fut.state.attempt == 2
    assert app.broker.inspect.queue_sizes("default") == (0, 0)


@pytest.mark.parametrize("step", ["after the outcome, before notify", "after notify, before ack"])
def test_a_flow_child_killed_between_its_scripts_converges(app: taskq.App, step: str) -> None:
    calls: Counter[str] = Counter()

    @app.task(name="kill.child", queue="side")
    def child(x: int) -> int:
        calls[f"child{x}"] += 1
        return x + 100

    @app.flow(name="kill.flow")
    def parent() -> list[int]:
        return [f.result() for f in child.map([1, 2])]

    fut = parent.submit()
    # Run the flow alone until it suspends (its children are on a queue nobody reads yet).
    flow_worker = taskq.Worker(app, ["default"], concurrency=1)
    t = threading.Thread(target=flow_worker.run)
    t.start()
    after = "0-0"
    while True:
        events = read_events(app.broker, "default", after, 100, block=5)
        assert events, "the flow never suspended"
        after = events[-1].id
        if any(e.run_id == fut.run_id and e.state == "AwaitingChildren" for e in events):
            break
    flow_worker.stop()
    t.join(timeout=30)

    # A worker takes child 1, runs it, records the outcome and dies before finishing up.
    app.broker.consumer.ensure_group("side")
    entries = app.broker.consumer.read(["side"], "doomed-worker", 1, None)
    (_, eid, _fields, _) = entries[0]
    child_id = f"{fut.run_id}.1"
    app.broker.consumer.start("side", "doomed-worker", [(eid, child_id, 0, "")])
    outcome = encode_outcome("Completed", 1, 101)
    consumer = app.broker.consumer
    assert consumer.finish(
        consumer.finish_call("side", eid, child_id, 1, "Completed", outcome, ack=False)
    )
    if step == "after notify, before ack":
        assert not app.broker.flows.notify("default", fut.run_id, child_id, outcome)
    age_past_the_lease(app, "side", eid)

    def converged() -> None:
        fut.result(timeout=30)
        # The dead worker's delivery is reclaimed, recognised as ended, re-notified, acked.
        while app.broker.inspect.queue_sizes("side") != (0, 0):
            app.broker.execute("BLPOP", app.keys.flow_ping("default", fut.run_id), "0.2")

    healthy_worker_until(app, converged)
    assert fut.result() == [101, 102]
    assert calls == {"child2": 1}  # child 1 ran once, on the dead worker; never again
    record = app.broker.producer.run_record("default", fut.run_id)
    assert record["resumes"] == "1" and record["rn"] == record["wn"]
    assert app.broker.inspect.queue_sizes("side") == (0, 0)
    assert app.broker.inspect.queue_sizes("default") == (0, 0)
