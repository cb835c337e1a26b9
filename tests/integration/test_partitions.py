"""Partitioned queues: one logical queue over N hash tags, on a real Redis.

Spreading (round robin, ``partition_key``), retries and delays kept in their partition,
lookups without the partition, priorities, flows and caching across partitions, the CLI
view, the ``TASKQ_PARTITIONS`` setting, and unpartitioned queues' keys unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import taskq
from taskq.config import Settings
from taskq.events import read_events
from taskq.keys import PRIORITIES
from taskq.partitions import logical_queue, partition_names
from taskq.testing import BurstWorker, raw_client

ROOT = Path(__file__).parents[2]
HOT = partition_names("hot", 4)


@pytest.fixture
def app(redis_url: str, taskq_prefix: str) -> Iterator[taskq.App]:
    """An App whose queue ``hot`` has 4 partitions (``default`` is not partitioned)."""
    a = taskq.App(redis_url, prefix=taskq_prefix, partitions={"hot": 4})
    yield a
    a.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = raw_client(redis_url)
    yield c
    c.close()


def backlog(client: redis.Redis, app: taskq.App, queue: str) -> int:
    """Entries in every priority stream of ``queue`` (a physical queue)."""
    return sum(int(client.xlen(app.keys.stream(queue, level))) for level in range(PRIORITIES))


def states_of(app: taskq.App, queue: str, run_id: str) -> list[str]:
    return [e.state for e in read_events(app.broker, queue) if e.run_id == run_id]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    return subprocess.run(
        [sys.executable, "-m", "taskq", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        timeout=60,
    )


# -- declaration --------------------------------------------------------------------------


def test_one_place_maps_a_queue_to_its_physical_names(app: taskq.App) -> None:
    assert app.settings.queue_names("hot") == HOT
    assert app.settings.queue_names("default") == ["default"]
    assert [logical_queue(n) for n in HOT] == ["hot"] * 4
    assert len({app.keys.stream(n) for n in HOT}) == 4
    assert app.physical_queues(["hot", "default"]) == [*HOT, "default"]


def test_the_environment_declares_the_same_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_PARTITIONS", " hot=4, bulk=2 ,")
    s = Settings.from_env()
    assert dict(s.partitions) == {"hot": 4, "bulk": 2}
    assert s.queue_names("hot") == HOT
    # An App argument replaces the environment's value as a whole.
    assert dict(Settings.from_env(partitions={"other": 3}).partitions) == {"other": 3}


@pytest.mark.parametrize(
    "raw", ["hot=0", "hot=x", "hot", "=4", "hot=4,hot=2", "a b=2", "hot=1025", "hot=-1"]
)
def test_a_bad_taskq_partitions_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TASKQ_PARTITIONS", raw)
    with pytest.raises(taskq.ConfigurationError, match="TASKQ_PARTITIONS"):
        taskq.App()


@pytest.mark.parametrize(
    "bad", [{"hot": 0}, {"hot": 1025}, {"hot": True}, {"hot": 2.0}, {"a{b": 2}, "hot=8"]
)
def test_a_bad_partitions_setting_is_refused(bad: object) -> None:
    with pytest.raises(taskq.ConfigurationError, match="partitions"):
        taskq.App(partitions=bad)


def test_a_bad_taskq_partitions_makes_the_cli_exit_2(redis_url: str) -> None:
    for args in (("queues",), ("worker", "tests.apps:app", "--check")):
        res = cli(*args, env={"TASKQ_REDIS_URL": redis_url, "TASKQ_PARTITIONS": "hot=zero"})
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines() == [
            "taskq: error: TASKQ_PARTITIONS='hot=zero': the partitions of queue 'hot' "
            "must be a whole number, got 'zero'"
        ]


def test_partition_key_is_a_per_submission_string(app: taskq.App) -> None:
    @app.task(queue="hot")
    def noop() -> None: ...

    with pytest.raises(taskq.ConfigurationError, match="partition_key must be a string"):
        noop.with_options(partition_key=42)  # type: ignore[arg-type]
    with pytest.raises(taskq.ConfigurationError, match="per submission"):
        app.task(partition_key="k")(lambda: None)  # type: ignore[call-overload]


# -- unpartitioned queues -----------------------------------------------------------------


def test_an_unpartitioned_queue_keeps_its_keys(
    app: taskq.App, client: redis.Redis, burst_worker: BurstWorker
) -> None:
    @app.task(retries=1)
    def flaky(n: int) -> int:
        if n == 0 and not flaky_calls:
            flaky_calls.append(n)
            raise ValueError("once")
        return n

    flaky_calls: list[int] = []
    fut = flaky.submit(0)
    assert fut.queue == "default"
    p, rid = app.settings.prefix, fut.run_id
    assert sorted(k.decode() for k in client.scan_iter(match=f"{p}:*")) == [
        f"{p}:{{default}}:events",
        f"{p}:{{default}}:run:{rid}",
        f"{p}:{{default}}:stream",
    ]
    burst_worker(app, ["default"])
    assert fut.result(timeout=5) == 0
    assert {k.decode() for k in client.scan_iter(match=f"{p}:*")} >= {
        f"{p}:{{default}}:result:{rid}",
        f"{p}:{{default}}:stream:p9",
    }
    assert all("#" not in k.decode() for k in client.scan_iter(match=f"{p}:*"))


# -- spreading ----------------------------------------------------------------------------


def test_submit_and_map_spread_runs_over_every_partition(
    app: taskq.App, client: redis.Redis, burst_worker: BurstWorker
) -> None:
    @app.task(queue="hot")
    def double(x: int) -> int:
        return 2 * x

    submitted = [double.submit(i) for i in range(8)]
    assert [backlog(client, app, q) for q in HOT] == [2, 2, 2, 2]
    assert Counter(f.queue for f in submitted) == dict.fromkeys(HOT, 2)
    mapped = double.map(range(10))
    per = [backlog(client, app, q) for q in HOT]
    assert sum(per) == 18 and max(per) - min(per) <= 1
    burst_worker(app, ["hot"])
    assert [f.result(timeout=5) for f in mapped] == [2 * i for i in range(10)]
    assert [f.result(timeout=5) for f in submitted] == [2 * i for i in range(8)]
    assert [backlog(client, app, q) for q in HOT] == [0, 0, 0, 0]


def test_a_partition_key_keeps_its_runs_on_one_partition_in_order(
    app: taskq.App, burst_worker: BurstWorker
) -> None:
    ran: list[tuple[str, int]] = []

    @app.task(queue="hot")
    def step(user: str, n: int) -> None:
        ran.append((user, n))

    home = HOT[zlib.crc32(b"user-42") % 4]
    futures = []
    for n in range(12):
        futures.append(step.with_options(partition_key="user-42").submit("user-42", n))
        step.submit("other", n)  # round robin, in between
    futures += step.with_options(partition_key="user-42").map(["user-42"] * 3, [12, 13, 14])
    assert {f.queue for f in futures} == {home}
    burst_worker(app, ["hot"], concurrency=1)
    assert [n for user, n in ran if user == "user-42"] == list(range(15))


# -- retries, delays, lookups -------------------------------------------------------------


def test_retries_and_delays_stay_in_their_partition(
    app: taskq.App, client: redis.Redis, burst_worker: BurstWorker
) -> None:
    attempts: Counter[int] = Counter()

    @app.task(queue="hot", retries=2, retry_delay_seconds=0.05)
    def flaky(n: int) -> int:
        attempts[n] += 1
        if attempts[n] < 3:
            raise ConnectionError("flaky")
        return n

    futures = flaky.map(range(4))
    later = flaky.with_options(delay=0.2).submit(9)
    assert int(client.zcard(app.keys.delayed(later.queue))) == 1
    burst_worker(app, ["hot"])  # it waits for the delayed runs of every partition
    assert [f.result(timeout=5) for f in [*futures, later]] == [0, 1, 2, 3, 9]
    for f in [*futures, later]:
        others = [q for q in HOT if q != f.queue]
        assert app.broker.producer.holder(others, f.run_id) is None
        story = states_of(app, f.queue, f.run_id)
        assert story.count("AwaitingRetry") == 2 and story[-1] == "Completed", story
    assert all(int(client.zcard(app.keys.delayed(q))) == 0 for q in HOT)


def test_results_and_futures_find_runs_without_their_partition(
    app: taskq.App, redis_url: str, burst_worker: BurstWorker
) -> None:
    @app.task(queue="hot")
    def echo(x: int) -> int:
        return x

    futures = echo.map(range(8))
    burst_worker(app, ["hot"])
    # Another process: the same declaration, nothing else shared.
    other = taskq.App(redis_url, prefix=app.settings.prefix, partitions={"hot": 4})
    try:

        @other.task(name=echo.name, queue="hot")
        def echo_there(x: int) -> int:
            return x

        for f in futures:
            assert other.future(f.run_id).queue == f.queue  # found by SCAN
            assert other.future(f.run_id, queue="hot").queue == f.queue  # one EXISTS each
            typed = echo_there.future(f.run_id)
            assert typed.queue == f.queue and typed.result(timeout=5) == f.result(timeout=5)
        missing = other.future("no-such-run", queue="hot")
        assert missing.queue == HOT[0] and missing.state.name == "Unknown"
    finally:
        other.close()


def test_a_worker_given_no_queues_consumes_the_default_queues_partitions(
    redis_url: str, taskq_prefix: str, burst_worker: BurstWorker
) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, partitions={"default": 3})
    try:

        @app.task
        def one(i: int) -> int:
            return 1

        futures = one.map(range(6))
        assert len({f.queue for f in futures}) == 3
        worker = burst_worker(app)
        assert worker.queues == partition_names("default", 3)
        assert sum(f.result(timeout=5) for f in futures) == 6
    finally:
        app.close()


# -- priorities ---------------------------------------------------------------------------


def test_priority_is_strict_within_a_partition_and_on_one_node_across_them(
    app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    ran: list[str] = []

    @app.task(queue="hot")
    def record(tag: str) -> None:
        ran.append(tag)

    one = record.with_options(partition_key="k")
    one.map([f"k0-{i}" for i in range(5)])
    one.with_options(priority=9).map([f"k9-{i}" for i in range(5)])
    record.map([f"r0-{i}" for i in range(8)])  # round robin over the partitions
    record.with_options(priority=5).map([f"r5-{i}" for i in range(8)])
    burst_worker(app, ["hot"], concurrency=1)
    assert [t for t in ran if t.startswith("k")] == [f"k9-{i}" for i in range(5)] + [
        f"k0-{i}" for i in range(5)
    ]
    if redis_url.startswith("redis+cluster://"):
        return  # each partition is a slot of its own: strict priority holds within each only
    # One node: the worker's fetch serves level 9 of every partition, then 8, ... then 0.
    levels = [int(t[1]) for t in ran]
    assert levels == sorted(levels, reverse=True)


# -- flows and caching --------------------------------------------------------------------


def test_a_flow_and_its_children_across_partitions(
    app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[tuple[str, int]] = Counter()

    @app.task(queue="hot", retries=1)
    def square(x: int, tag: str) -> int:
        calls[tag, x] += 1
        if x == 3 and calls[tag, x] == 1:
            raise ConnectionError("once")
        return x * x

    @app.flow(queue="hot", inline_wait_seconds=0)
    def total(n: int, tag: str) -> int:
        first = [square(i, tag) for i in range(2)]  # one by one: a suspension each
        rest = square.map(range(2, n), [tag] * (n - 2))
        return sum(first) + sum(f.result() for f in rest)

    flows = [total.submit(8, tag) for tag in "abc"]
    burst_worker(app, ["hot"], concurrency=2)
    assert [f.result(timeout=5) for f in flows] == [sum(i * i for i in range(8))] * 3
    # Every child ran once (no replay enqueued one again elsewhere); child 3 retried once.
    assert calls == {(t, x): 2 if x == 3 else 1 for t in "abc" for x in range(8)}
    for f in flows:
        children = [f"{f.run_id}.{n}" for n in range(1, 9)]
        where = [app.broker.producer.holder(HOT, c) for c in children]
        assert None not in where and len(set(where)) == 4, where
        assert {q for q in where if q != f.queue}  # children on other partitions than the flow
        assert "AwaitingChildren" in states_of(app, f.queue, f.run_id)


def test_a_replay_finds_its_pending_children_on_their_partitions(
    app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    calls: Counter[int] = Counter()

    @app.task(queue="hot")
    def square(x: int) -> int:
        calls[x] += 1
        return x * x

    @app.flow(queue="hot", inline_wait_seconds=0)
    def in_turn(n: int) -> list[int]:
        # Resumed as each child ends, while the others still wait: every replay submits
        # those again, which must find them where they are (or they would run twice).
        return [f.result() for f in taskq.as_completed(square.map(range(n)))]

    fut = in_turn.submit(7)  # 7, not a multiple of 4: each replay's round robin would shift
    burst_worker(app, ["hot"], concurrency=1)
    assert sorted(fut.result(timeout=5)) == [x * x for x in range(7)]
    assert calls == dict.fromkeys(range(7), 1)
    # Every replay submits all 7 children again. On one node the worker's fetch takes
    # the flow's resumption between children (two replays at least); on a Cluster it
    # turns over the partitions' slots, and one replay may find every child ended.
    replays = 1 if redis_url.startswith("redis+cluster://") else 2
    assert states_of(app, fut.queue, fut.run_id).count("Resuming") >= replays


def test_a_cache_entry_is_found_by_runs_on_every_partition(
    app: taskq.App, client: redis.Redis, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @app.task(queue="hot", cache_key_fn=lambda ctx, args: f"sq-{args['x']}")
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    first = square.submit(7)
    burst_worker(app, ["hot"])
    again = [square.submit(7) for _ in range(4)]  # round robin: every partition
    assert {f.queue for f in again} == set(HOT)
    burst_worker(app, ["hot"])
    assert [f.result(timeout=5) for f in [first, *again]] == [49] * 5
    assert calls == [7]
    assert [f.state.name for f in again] == ["Cached"] * 4
    home = HOT[zlib.crc32(b"sq-7") % 4]
    stored = [q for q in HOT if client.exists(app.keys.cache(q, "sq-7"))]
    assert stored == [home]


def test_a_result_stored_by_name_lives_on_its_home_partition(
    app: taskq.App, client: redis.Redis, burst_worker: BurstWorker
) -> None:
    @app.task(queue="hot", result_storage_key="cube-{parameters[x]}")
    def cube(x: int) -> int:
        return x**3

    futures = [cube.submit(x) for x in range(4)]  # round robin: every partition
    assert {f.queue for f in futures} == set(HOT)
    burst_worker(app, ["hot"])
    assert [cube.stored_result(f"cube-{x}") for x in range(4)] == [0, 1, 8, 27]
    for x in range(4):
        name = f"cube-{x}"
        home = HOT[zlib.crc32(name.encode()) % 4]
        assert [q for q in HOT if client.exists(app.keys.stored(q, name))] == [home]


def test_serializable_caching_computes_once_across_partitions(
    app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @app.task(
        queue="hot",
        cache_key_fn=lambda ctx, args: "shared",
        cache_policy=taskq.INPUTS.configure(isolation_level="SERIALIZABLE"),
    )
    def slow(x: int) -> int:
        calls.append(x)
        # Holds the lock while the other seven (fetched in the same read) start, find
        # it taken and wait for this run; not a wait for work.
        time.sleep(0.3)
        return 100

    futures = slow.map(range(8))  # two on each partition
    assert len({f.queue for f in futures}) == 4
    burst_worker(app, ["hot"], concurrency=8)
    assert [f.result(timeout=10) for f in futures] == [100] * 8
    assert len(calls) == 1
    assert sorted(f.state.name for f in futures) == ["Cached"] * 7 + ["Completed"]


# -- the CLI ------------------------------------------------------------------------------


def test_the_cli_shows_a_partitioned_queue_as_one(
    app: taskq.App, redis_url: str, burst_worker: BurstWorker
) -> None:
    @app.task(queue="hot")
    def echo(x: int) -> int:
        return x

    @app.task
    def plain() -> None: ...

    done = echo.map(range(4))
    burst_worker(app, ["hot"])
    echo.map(range(6))  # waiting: 2, 2, 1, 1
    plain.submit()
    # No TASKQ_PARTITIONS here: the CLI finds the partitions under the prefix.
    env = {"TASKQ_REDIS_URL": redis_url, "TASKQ_PREFIX": app.settings.prefix}
    res = cli("queues", env=env)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert rows[0] == ["queue", "partitions", "waiting", "pending", "delayed", "dead"]
    assert rows[1] == ["default", "-", "1", "0", "0", "0"]
    assert rows[2] == ["hot", "4", "6", "0", "0", "0"]
    assert [r[0] for r in rows[3:]] == HOT
    assert sorted(int(r[1]) for r in rows[3:]) == [1, 1, 2, 2]
    for f in done[:2]:
        for args in (("run", f.run_id), ("run", f.run_id, "-q", "hot")):
            shown = cli(*args, env=env)
            assert shown.returncode == 0, shown.stderr
            assert f"run {f.run_id}  queue={f.queue}  state=Completed" in shown.stdout
    events = cli("events", "-q", "hot", "-n", "1000", env=env)
    assert events.returncode == 0, events.stderr
    assert {line.split()[0] for line in events.stdout.splitlines()} == set(HOT)
    assert sum(" Completed " in line for line in events.stdout.splitlines()) == 4
    empty = cli("events", "-q", "nothing", env=env)
    assert "queues under prefix" in empty.stdout and "hot (4 partitions)" in empty.stdout
