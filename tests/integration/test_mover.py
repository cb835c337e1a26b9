"""The delay-queue mover: exactly-once promotion under races and kills, and its wake-ups."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

import taskq
from taskq.message import Message, decode_message, encode_message, new_run_id
from taskq.scheduler import Mover
from taskq.testing import BurstWorker

ROOT = Path(__file__).parents[2]
N = 20_000

#: A mover process: reports "started", waits for "go" on stdin, promotes until the
#: delay queue is empty, then reports how many members it moved.
MOVER_PROCESS = """
import sys

import taskq
from taskq.scheduler import Mover

app = taskq.App()
app.broker.ping()
mover = Mover(app.broker, ["default"], batch=10)
print("started", flush=True)
sys.stdin.readline()
while mover.promote_once() is not None:
    pass
print(f"moved {mover.moved}", flush=True)
"""


def fill_delayed(app: taskq.App, n: int) -> list[bytes]:
    """Put ``n`` distinct payloads, all long due, straight into the delay ZSET.

    Returns:
        The payloads in score order (the order the movers must emit them in).
    """
    payloads = [encode_message(Message(new_run_id(), "t", [i], {})) for i in range(n)]
    client, key = app.broker.client, app.keys.delayed("default")
    for start in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {p: 1_000 + start + j for j, p in enumerate(payloads[start : start + 1000])})
        pipe.execute()
    assert client.zcard(key) == n
    return payloads


def stream_payloads(app: taskq.App) -> list[bytes]:
    return [fields[b"m"] for _, fields in app.broker.client.xrange(app.keys.stream("default"))]


def assert_moved_exactly_once(app: taskq.App, payloads: list[bytes]) -> None:
    client = app.broker.client
    assert client.xlen(app.keys.stream("default")) == len(payloads)
    moved = stream_payloads(app)
    counts = Counter(moved)
    duplicates = [p for p, c in counts.items() if c > 1]
    assert not duplicates, f"{len(duplicates)} payload(s) moved more than once"
    assert counts == Counter(payloads), f"{len(set(payloads) - set(moved))} payload(s) missing"
    # Each promote call takes the lowest-scored due members atomically, so even
    # racing movers append them to the stream in score order.
    assert moved == payloads
    assert client.zcard(app.keys.delayed("default")) == 0


def test_four_movers_racing_over_20000_due_members_move_each_exactly_once(
    taskq_app: taskq.App, redis_url: str, taskq_prefix: str
) -> None:
    payloads = fill_delayed(taskq_app, N)
    apps = [taskq.App(redis_url, prefix=taskq_prefix) for _ in range(4)]
    movers = [Mover(app.broker, ["default"], batch=50) for app in apps]
    go = threading.Barrier(len(movers))
    calls = [0] * len(movers)
    errors: list[BaseException] = []

    def drain(i: int) -> None:
        try:
            go.wait()
            while True:
                calls[i] += 1
                if movers[i].promote_once() is None:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(movers))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
    finally:
        for app in apps:
            app.close()
    assert not errors, errors
    moved = [m.moved for m in movers]
    print(f"moved per mover: {moved}, promote_once calls per mover: {calls}")
    assert sum(moved) == N
    assert_moved_exactly_once(taskq_app, payloads)


@pytest.fixture
def mover_env(redis_url: str, taskq_prefix: str) -> dict[str, str]:
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_movers_killed_mid_run_still_move_each_member_exactly_once(
    taskq_app: taskq.App, mover_env: dict[str, str], spawn: list[subprocess.Popen[str]]
) -> None:
    payloads = fill_delayed(taskq_app, N)
    for _ in range(4):
        spawn.append(
            subprocess.Popen(
                [sys.executable, "-c", MOVER_PROCESS],
                env=mover_env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in spawn:
        line = p.stdout.readline() if p.stdout else ""
        assert line == "started\n", f"mover process failed to start: {line!r}"
    # Release all four at once, then kill two once a quarter of the members have
    # reached the stream: they die in the middle of the run.
    for p in spawn:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    stream = taskq_app.keys.stream("default")
    seen, last = 0, "0-0"
    while seen < N // 4:
        reply = taskq_app.broker.client.xread({stream: last}, count=N, block=10_000)
        assert reply, f"the movers stalled after moving {seen} members"
        entries = reply[0][1]
        seen, last = seen + len(entries), entries[-1][0]
    victims, survivors = spawn[:2], spawn[2:]
    for p in victims:
        p.kill()
    moved_when_killed = taskq_app.broker.client.xlen(stream)
    for p in victims:
        p.communicate(timeout=30)
        assert p.returncode == -9
    survivor_moved = []
    for p in survivors:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        survivor_moved.append(int(out.split()[-1]))

    final = Mover(taskq_app.broker, ["default"], batch=10)
    assert final.promote_once() is None
    print(
        f"in stream when two movers were killed: {moved_when_killed}; "
        f"survivors moved {survivor_moved}; the killed ones "
        f"{N - sum(survivor_moved) - final.moved}; the final promote_once {final.moved}"
    )
    assert_moved_exactly_once(taskq_app, payloads)


def await_command(monitor: Any, what: str, *words: str) -> str:
    """Block on the MONITOR feed until a command containing every word has run."""
    try:
        while True:
            command: str = monitor.next_command()["command"]
            if all(w in command for w in words):
                return command
    except redis.TimeoutError:
        pytest.fail(f"Redis saw no {' '.join(words)} in 10 s: {what}")


def test_mover_sleeps_until_due_and_is_woken_by_a_nearer_member(
    taskq_app: taskq.App, redis_url: str
) -> None:
    broker, keys = taskq_app.broker, taskq_app.keys
    channel, delayed, stream = (
        keys.wake_channel("default"),
        keys.delayed("default"),
        keys.stream("default"),
    )
    runs = []
    for due in ("d60000", "d50"):
        rid = new_run_id()
        runs.append((rid, encode_message(Message(rid, "t", [due], {})), due))
    (far_id, far, _), (near_id, near, _) = runs

    spy = redis.Redis.from_url(redis_url, socket_timeout=10)
    mover = Mover(broker, ["default"])
    try:
        with spy.monitor() as monitor:
            mover.start()
            # The Mover loses a wake-up published before its listener has subscribed
            # (it then sleeps up to IDLE_SECONDS), so enqueue only once Redis has run
            # the SUBSCRIBE: this test is about the wake-up itself.
            await_command(monitor, "the mover never subscribed", "SUBSCRIBE", channel)
            broker.producer.enqueue("default", [runs[0]])
            await_command(monitor, "enqueue published no wake-up", "PUBLISH", channel)
            # The mover has looked at the queue since the 60 s member arrived: it now
            # sleeps for about 60 s, unless a nearer member wakes it.
            await_command(monitor, "the wake-up did not wake the mover", "ZRANGE", delayed)
            broker.producer.enqueue("default", [runs[1]])
        got = broker.client.xread({stream: "0-0"}, block=5000)
        assert got, "the 50 ms member did not reach the stream within 5 s"
    finally:
        mover.stop()
        mover.join(timeout=10)
        spy.close()
    [(_, entries)] = got
    assert [fields[b"m"] for _, fields in entries] == [near]
    assert decode_message(near).run_id == near_id
    assert stream_payloads(taskq_app) == [near]
    assert broker.client.zrange(delayed, 0, -1) == [far]
    assert broker.producer.run_record("default", far_id)["s"] == "Scheduled"
    assert mover.moved == 1


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_scheduled_run_becomes_pending_when_it_is_promoted(
    taskq_app: taskq.App, burst_worker: BurstWorker, signed: bool
) -> None:
    if signed:
        taskq_app.configure(signing_keys=["a-signing-key-of-16+"])

    @taskq_app.task
    def inc(x: int) -> int:
        return x + 1

    past = datetime.now(UTC) - timedelta(seconds=5)  # due at once, Scheduled until moved
    futures = [
        inc.with_options(scheduled_at=past).submit(1),
        inc.with_options(scheduled_at=past, priority=3).submit(2),
    ]
    broker = taskq_app.broker
    for f in futures:
        assert broker.producer.run_record("default", f.run_id)["s"] == "Scheduled"

    assert Mover(broker, ["default"]).promote_once() is None  # nothing left to wait for

    for f, level in zip(futures, (0, 3), strict=True):
        record = broker.producer.run_record("default", f.run_id)
        assert record["s"] == "Pending" and "due" not in record
        [(_, fields)] = broker.client.xrange(taskq_app.keys.stream("default", level))
        assert fields[b"r"] == f.run_id.encode()
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in futures] == [2, 3]
    for f in futures:
        states = [e["s"] for _, e in broker.inspect.events("default") if e["r"] == f.run_id]
        assert states == ["Scheduled", "Pending", "Running", "Completed"]


def test_a_member_whose_run_id_cannot_be_read_is_still_moved(taskq_app: taskq.App) -> None:
    delayed, stream = taskq_app.keys.delayed("default"), taskq_app.keys.stream("default")
    taskq_app.broker.client.zadd(delayed, {b"\xc1\xc1 not msgpack": 1_000})
    assert Mover(taskq_app.broker, ["default"]).promote_once() is None
    [(_, fields)] = taskq_app.broker.client.xrange(stream)
    assert fields == {b"m": b"\xc1\xc1 not msgpack"}  # the worker dead-letters it


def test_a_retry_stays_awaiting_retry_until_it_starts(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    # A retry with a delay (one with none goes on at once, Retrying: test_retries).
    @taskq_app.task(retries=1, retry_delay_seconds=0.01)
    def flaky(x: int) -> int:
        if broker.client.incr(taskq_app.keys.run("default", "calls")) == 1:
            raise ValueError("first attempt fails")
        return x

    broker = taskq_app.broker
    fut = flaky.submit(7)
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == 7
    states = [e["s"] for _, e in broker.inspect.events("default") if e["r"] == fut.run_id]
    assert states == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
