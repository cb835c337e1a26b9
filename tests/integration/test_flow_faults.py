"""Flows under faults: a worker SIGKILLed mid-flow, duplicate child notifications, and a
crash between a child's outcome and its notification of the flow.

Nothing here waits on a clock: every wait blocks on Redis (the events stream, a list a
held run pushes to, a run's result) or on a process or thread ending.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskq
from taskq.events import Event, read_events
from taskq.message import decode_message, encode_outcome
from taskq.testing import BurstWorker
from tests import apps

ROOT = Path(__file__).parents[2]
WORKER_CMD = [sys.executable, "-m", "taskq", "worker", "tests.apps:app"]

# -- helpers ------------------------------------------------------------------------------


def await_event(app: taskq.App, queue: str, run_id: str, state: str, reads: int = 6) -> Event:
    """Block on ``queue``'s events stream until ``run_id`` enters ``state``."""
    after = "0-0"
    for _ in range(reads):
        for ev in read_events(app.broker, queue, after, block=5.0):
            after = ev.id
            if ev.run_id == run_id and ev.state == state:
                return ev
    pytest.fail(f"run {run_id} did not reach {state} within {reads * 5} s")


def run_events(app: taskq.App, queue: str, run_id: str) -> list[str]:
    return [f["s"] for _, f in app.broker.inspect.run_events(queue, run_id)]


def last_event_id(app: taskq.App, queue: str) -> str:
    recent = app.broker.inspect.recent_events(queue, 1)
    return recent[-1][0] if recent else "0-0"


# -- 1. SIGKILL the worker pool in the middle of a 200-child flow -------------------------


@pytest.fixture
def pool_env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    apps.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    env["TASKQ_LEASE_SECONDS"] = "1"  # a killed worker's deliveries come back fast
    for name in (apps.HOLD_CHILDREN_FROM, apps.HOLD_FLOW):
        env.pop(name, None)
    yield env
    apps.app.close()


def start_pool(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``taskq worker`` (1 process, concurrency 4) in a process group of its own."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*WORKER_CMD, "--processes", "1", "--concurrency", "4", "--log-level", "WARNING"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def await_held(count: int, reads: int = 8) -> list[str]:
    """Block until ``count`` held runs announced themselves (BLPOP in 5 s slices)."""
    got: list[str] = []
    for _ in range(reads):
        reply = apps.app.broker.execute("BLPOP", apps.held_key(), "5")
        if reply is not None:
            got.append(reply[1].decode())
            if len(got) == count:
                return got
    pytest.fail(f"only {got} of {count} held runs announced themselves within {reads * 5} s")


def read_ledger(path: Path) -> tuple[Counter[int], Counter[int], dict[int, list[str]]]:
    """Per child: "start" lines, "end" lines, and the pids of its "end" lines."""
    starts: Counter[int] = Counter()
    ends: Counter[int] = Counter()
    end_pids: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        kind, i, pid = line.split()
        if kind == "start":
            starts[int(i)] += 1
        else:
            ends[int(i)] += 1
            end_pids.setdefault(int(i), []).append(pid)
    return starts, ends, end_pids


@pytest.mark.slow
@pytest.mark.parametrize("flow_at_kill", ["suspended", "running"])
def test_sigkill_the_worker_running_a_flow_midway_flow_completes_children_run_once(
    pool_env: dict[str, str], tmp_path: Path, flow_at_kill: str
) -> None:
    """Worker pool A is SIGKILLed (supervisor and worker process) with 50 of 200 children
    done and the rest pending: pool B reclaims A's deliveries and finishes the flow.

    The kill point is deterministic: in A, children 50 and up write their "start" line,
    announce themselves on a Redis list and block, so once every slot of A holds such a
    child no child of A is between its "end" line and its outcome (a random kill could
    land there, and the run would then rightly run again: at-least-once). With
    ``flow_at_kill == "running"`` the flow body also blocks in A, right after enqueueing
    its children, so its own delivery is reclaimed too (a Crashed flow attempt).
    """
    n, done_before_kill = 200, 50
    ledger = tmp_path / "ledger.txt"
    env_a = dict(pool_env)
    env_a[apps.HOLD_CHILDREN_FROM] = str(done_before_kill)
    held_children = 4
    if flow_at_kill == "running":
        env_a[apps.HOLD_FLOW] = "1"
        held_children = 3  # the flow keeps one of the 4 slots

    flow = apps.ledger_fan_out.submit(n, str(ledger))
    pool_a = start_pool(env_a, tmp_path / "worker-a.log")
    pool_b: subprocess.Popen[bytes] | None = None
    try:
        held = await_held(held_children + (flow_at_kill == "running"))
        # Every slot of A holds a blocked run, so everything else A took has ended
        # (outcome, notification and ack: a slot frees only after all three).
        expected_held = {
            f"child {i}" for i in range(done_before_kill, done_before_kill + held_children)
        }
        if flow_at_kill == "running":
            expected_held.add("flow")
        assert set(held) == expected_held
        record = apps.app.broker.producer.run_record("default", flow.run_id)
        assert record["s"] == ("AwaitingChildren" if flow_at_kill == "suspended" else "Running")
        starts, ends, end_pids = read_ledger(ledger)
        assert sorted(ends) == list(range(done_before_kill))
        pid_a = end_pids[0][0]

        kill_group(pool_a, signal.SIGKILL)
        assert pool_a.wait(timeout=30) == -signal.SIGKILL

        pool_b = start_pool(pool_env, tmp_path / "worker-b.log")
        assert flow.result(timeout=60) == sum(i * i for i in range(n))
        pool_b.terminate()  # SIGTERM to B's supervisor: a graceful stop
        assert pool_b.wait(timeout=60) == 0
    finally:
        for proc in (pool_a, pool_b):
            if proc is not None and proc.poll() is None:
                kill_group(proc, signal.SIGKILL)
                proc.wait(timeout=30)
    log_b = (tmp_path / "worker-b.log").read_text()

    # Every child ended exactly once; the only unmatched "start" lines are the runs
    # that were blocked in A when it was killed.
    starts, ends, end_pids = read_ledger(ledger)
    assert set(ends) == set(range(n)) and set(ends.values()) == {1}, ends
    killed = sorted(i for i in range(n) if starts[i] > ends[i])
    print(f"children killed mid-run in worker A: {killed}")
    assert killed == list(range(done_before_kill, done_before_kill + held_children))
    assert all(starts[i] == 2 for i in killed)
    assert all(starts[i] == 1 for i in range(n) if i not in killed)
    for i in killed:  # ran again in B, as attempt 2 after a recorded crash
        assert end_pids[i] != [pid_a]
        child_id = f"{flow.run_id}.{i + 1}"
        rec = apps.app.broker.producer.run_record("default", child_id)
        assert (rec["s"], rec["a"]) == ("Completed", "2"), rec
        assert run_events(apps.app, "default", child_id) == [
            "Pending",
            "Running",
            "Crashed",
            "Running",
            "Completed",
        ]
    assert "reclaimed" in log_b, log_b

    # The flow resumed once per satisfied wait, never twice for one wait.
    record = apps.app.broker.producer.run_record("default", flow.run_id)
    story = run_events(apps.app, "default", flow.run_id)
    print(f"flow record: {record}\nflow events: {story}")
    assert record["s"] == "Completed"
    assert int(record.get("resumes", 0)) == story.count("Resuming")
    assert record.get("rn") == record.get("wn")
    if flow_at_kill == "suspended":
        assert record["a"] == "1" and "Crashed" not in story
        assert int(record["resumes"]) >= 1
    else:
        assert record["a"] == "2" and story.count("Crashed") == 1
    assert apps.app.broker.inspect.queue_sizes("default") == (0, 0)


# -- 2 and 3: a flow whose three children wait on a queue nobody consumes yet ------------

CHILD = "tests.flow_faults.side_child"
FLOW = "tests.flow_faults.three_children"


def register_flow(app: taskq.App, calls: list[int]) -> taskq.Flow[[], list[int]]:
    """A flow on "default" with three children on "side"; ``calls`` records child runs."""

    def side_child(i: int) -> int:
        calls.append(i)
        return i * 10

    child = app.task(name=CHILD, queue="side")(side_child)

    def three_children() -> list[int]:
        futures = [child.submit(i) for i in (1, 2, 3)]
        return [f.result() for f in futures]

    return app.flow(name=FLOW)(three_children)


def run_until_suspended(app: taskq.App, flow_id: str) -> None:
    """Run the flow on a worker of "default" only (concurrency 1: the flow holds the only
    slot, so it suspends at once) until it is AwaitingChildren, then stop that worker."""
    worker = taskq.Worker(app, ["default"], concurrency=1)
    thread = threading.Thread(target=worker.run, name="flow-worker")
    thread.start()
    try:
        event = await_event(app, "default", flow_id, "AwaitingChildren")
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the flow worker did not stop"
    assert event.attempt == 1


def flow_snapshot(app: taskq.App, flow_id: str) -> dict[str, object]:
    client, keys = app.broker.client, app.keys
    return {
        "record": app.broker.producer.run_record("default", flow_id),
        "results": client.hgetall(keys.flow_results("default", flow_id)),
        "order": client.lrange(keys.flow_order("default", flow_id), 0, -1),
        "wait": client.smembers(keys.flow_wait("default", flow_id)),
        "default": app.broker.inspect.queue_sizes("default"),
        "side": app.broker.inspect.queue_sizes("side"),
    }


def test_duplicate_child_completions_do_not_resume_the_parent_twice_or_early(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []
    flow = register_flow(taskq_app, calls)
    fut = flow.submit()
    run_until_suspended(taskq_app, fut.run_id)
    broker, keys, client = taskq_app.broker, taskq_app.keys, taskq_app.broker.client
    children = [f"{fut.run_id}.{i}" for i in (1, 2, 3)]
    assert client.smembers(keys.flow_wait("default", fut.run_id)) == {c.encode() for c in children}

    # Child 1 "completes" twice before any child ran (e.g. a redelivered duplicate).
    injected = encode_outcome("Completed", 1, 111)
    assert broker.flows.notify("default", fut.run_id, children[0], injected) is False
    assert broker.flows.notify("default", fut.run_id, children[0], injected) is False
    snap = flow_snapshot(taskq_app, fut.run_id)
    record = snap["record"]
    assert isinstance(record, dict)
    assert record["s"] == "AwaitingChildren" and record["wn"] == "1" and "rn" not in record
    assert snap["wait"] == {children[1].encode(), children[2].encode()}
    assert snap["order"] == [children[0].encode()]
    assert snap["default"] == (0, 0)  # the flow was not re-enqueued
    assert snap["side"] == (3, 0)  # only the three children, none delivered
    assert "Resuming" not in run_events(taskq_app, "default", fut.run_id)

    burst_worker(taskq_app, ["default", "side"])
    # The first recorded outcome of child 1 is the one the flow sees.
    assert fut.result(timeout=10) == [111, 20, 30]
    assert sorted(calls) == [1, 2, 3]
    record = broker.producer.run_record("default", fut.run_id)
    assert record["s"] == "Completed"
    assert (record["resumes"], record["wn"], record["rn"]) == ("1", "1", "1")
    assert run_events(taskq_app, "default", fut.run_id).count("Resuming") == 1

    # Late duplicates of finished children change nothing.
    before = flow_snapshot(taskq_app, fut.run_id)
    after_id = last_event_id(taskq_app, "default")
    for child in children[:2]:
        again = encode_outcome("Completed", 2, -1)
        assert broker.flows.notify("default", fut.run_id, child, again) is False
    assert flow_snapshot(taskq_app, fut.run_id) == before
    assert read_events(broker, "default", after_id) == []
    assert before["default"] == (0, 0) and before["side"] == (0, 0)


@pytest.mark.parametrize("then", ["dies", "hands back"])
def test_a_crash_between_child_outcome_and_notify_is_repaired_by_redelivery(
    redis_url: str, taskq_prefix: str, then: str
) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, lease_seconds=1)
    try:
        calls: list[int] = []
        flow = register_flow(app, calls)
        fut = flow.submit()
        run_until_suspended(app, fut.run_id)
        broker = app.broker
        child1 = f"{fut.run_id}.1"

        # A fake worker takes child 1, records its outcome and "dies" before notifying
        # the flow (and so before acking): the delivery stays pending.
        broker.consumer.ensure_group("side")
        [(queue, eid, fields, _)] = broker.consumer.read(["side"], "fake-consumer", 1, None)
        assert decode_message(fields[b"m"]).run_id == child1
        assert broker.consumer.start(queue, "fake-consumer", [(eid, child1, 5, "")]) == [(1, 1, 1)]
        outcome = encode_outcome("Completed", 1, 10)
        call = broker.consumer.finish_call(queue, eid, child1, 1, "Completed", outcome, ack=False)
        assert broker.consumer.finish(call)
        assert broker.producer.run_record("side", child1)["s"] == "Completed"
        assert broker.producer.run_record("default", fut.run_id)["s"] == "AwaitingChildren"
        assert broker.inspect.queue_sizes("side") == (3, 1)
        if then == "hands back":
            # A stopping worker hands back what it holds: a run that already ended is
            # left pending (acking it would lose the flow's notification for good).
            handed = broker.consumer.handback(
                queue, "fake-consumer", [(eid, child1, 1, fields[b"m"])], "worker stopping"
            )
            assert handed == 0
            assert broker.inspect.queue_sizes("side") == (3, 1)

        worker = taskq.Worker(app, ["default", "side"], concurrency=2)
        thread = threading.Thread(target=worker.run, name="repair-worker")
        thread.start()
        try:
            result = fut.result(timeout=30)
        finally:
            worker.stop()
            thread.join(timeout=30)
        assert not thread.is_alive()

        assert result == [10, 20, 30]
        assert sorted(calls) == [2, 3]  # child 1 never ran on a worker
        # Its pending delivery was reclaimed, found ended (kind 0), re-notified and acked:
        rec1 = broker.producer.run_record("side", child1)
        assert (rec1["s"], rec1["a"], rec1["w"]) == ("Completed", "1", "fake-consumer")
        assert run_events(app, "side", child1) == ["Pending", "Running", "Completed"]
        record = broker.producer.run_record("default", fut.run_id)
        assert record["s"] == "Completed"
        assert (record["resumes"], record["wn"], record["rn"]) == ("1", "1", "1")
        assert run_events(app, "default", fut.run_id).count("Resuming") == 1
        assert broker.inspect.queue_sizes("side") == (0, 0)
        assert broker.inspect.queue_sizes("default") == (0, 0)
    finally:
        app.close()


# -- a stale start: a worker that stalled between XREADGROUP and start.lua ---------------


def test_a_stale_start_does_not_resume_a_flow_waiting_for_children(
    redis_url: str, taskq_prefix: str, burst_worker: BurstWorker
) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, lease_seconds=1)
    try:
        calls: list[int] = []

        def side_child(i: int) -> int:
            calls.append(i)
            return i

        child = app.task(name=CHILD, queue="side")(side_child)

        def two_waves() -> int:
            first = sum(f.result() for f in [child.submit(i) for i in (1, 2)])
            return first + sum(f.result() for f in [child.submit(i) for i in (3, 4)])

        fut = app.flow(name=FLOW)(two_waves).submit()
        broker = app.broker
        run_until_suspended(app, fut.run_id)  # wait 1: children 1 and 2
        burst_worker(app, ["side"])  # they end: the flow is Resuming, its entry E2 queued
        assert broker.producer.run_record("default", fut.run_id)["s"] == "Resuming"
        # A worker reads E2, then stalls (GC pause, SIGSTOP) for longer than the lease.
        [(_, e2, _, _)] = broker.consumer.read(["default"], "stalled-worker", 1, None)
        # A healthy worker reclaims E2, resumes the flow, which spawns children 3 and 4
        # and suspends again (wait 2), acking and deleting E2.
        worker = taskq.Worker(app, ["default"], concurrency=1)
        thread = threading.Thread(target=worker.run, name="healthy-worker")
        thread.start()
        try:
            after = "0-0"
            waits = 0
            for _ in range(6):
                for ev in read_events(broker, "default", after, block=5.0):
                    after = ev.id
                    waits += ev.run_id == fut.run_id and ev.state == "AwaitingChildren"
                if waits == 2:
                    break
        finally:
            worker.stop()
            thread.join(timeout=30)
        assert waits == 2  # the healthy worker reclaimed E2 (the only way to resume)
        before = broker.producer.run_record("default", fut.run_id)
        assert (before["s"], before["wn"], before["rn"], before["resumes"]) == (
            "AwaitingChildren",
            "2",
            "1",
            "1",
        )

        # The stalled worker wakes up and starts E2, which it no longer holds.
        [(kind, _, _)] = broker.consumer.start(
            "default", "stalled-worker", [(e2, fut.run_id, 5, "")]
        )
        assert kind != 2, "a stale delivery resumed the flow a second time for wait 1"
        assert broker.producer.run_record("default", fut.run_id) == before
        burst_worker(app, ["default", "side"])
        assert fut.result(timeout=10) == 10
        assert sorted(calls) == [1, 2, 3, 4]
    finally:
        app.close()
