"""Redis server faults: ``redis-server`` SIGKILLed mid-run, and producers against a dead Redis.

S1/S2 of the test matrix (shared/research/reliability.md §7.2): two ``taskq worker``
supervisors consume while a producer thread submits runs with client-made ids, retrying
each enqueue with the *same* id until Redis acknowledges it; meanwhile ``redis-server``
(AOF on) is SIGKILLed K times and restarted on the same port and directory.

What is asserted, per ``--appendfsync`` mode:

* ``always`` (an fsync before each reply): **0 acknowledged enqueues lost**, strictly.
* ``everysec``: a SIGKILL (not an OS crash) loses only what Redis had not yet
  ``write(2)``-n, and Redis postpones that write by up to 2 s while a background fsync is
  slow. So every acknowledged run must survive **except** possibly those acknowledged in
  the 2 s before a kill; the figures are printed (normally 0 lost).
* In both: every surviving run completes; **0 duplicate stream entries** (one enqueue
  event per run id: the retried enqueues were deduplicated); executions counted by a
  ledger file outside Redis, duplicates only for runs whose first attempt was cut off by
  a kill (their outcome could not be recorded, so the lease brought them back: the
  record shows the earlier attempt ``Crashed``), at most kills x slots; workers resume
  within 3 s of Redis accepting connections again; no worker process exited.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import taskq
from taskq.backoff import Backoff
from taskq.errors import BrokerError, RedisUnavailableError
from taskq.testing import RedisServerFactory
from tests.reliability.netapps import (
    QUEUE,
    Pool,
    history,
    payload,
    read_ledger,
    server_ms,
    size,
    wait_all,
    worker_env,
)

pytestmark = pytest.mark.reliability

LEASE = 2.0
PROCESSES, CONCURRENCY = 2, 4  # two supervisors, one worker process each


class Producer(threading.Thread):
    """Submits ``run_ids`` at ``rate`` per second; each enqueue is retried, same id, until acked."""

    def __init__(self, app: taskq.App, run_ids: list[str], rate: float) -> None:
        super().__init__(name="producer", daemon=True)
        self.app, self.run_ids, self.rate = app, run_ids, rate
        self.acked: dict[str, float] = {}  # run id -> monotonic time of the acknowledgement
        self.already_known = 0  # a retry found the id known: the first try had gone through
        self.unavailable = 0
        self.broker_errors: Counter[str] = Counter()
        self.retry_time = 0.0

    def run(self) -> None:
        start = time.monotonic()
        for i, rid in enumerate(self.run_ids):
            body = payload(rid, ms=2)
            backoff, failed_at = Backoff(base=0.02, cap=0.25), None
            while True:
                try:
                    added = self.app.broker.producer.enqueue(QUEUE, [(rid, body, "")])[0]
                    break
                except RedisUnavailableError:
                    self.unavailable += 1
                except BrokerError as exc:  # e.g. LOADING while Redis replays its AOF
                    self.broker_errors[str(exc).split(":", 3)[-1].strip()[:60]] += 1
                failed_at = failed_at or time.monotonic()
                time.sleep(backoff.next())  # retry spacing, not a wait for work
            self.acked[rid] = time.monotonic()
            if failed_at is not None:
                self.retry_time += self.acked[rid] - failed_at
                self.already_known += added == 0
            ahead = start + (i + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing: spread the submissions over the kills


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_redis_sigkill_mid_run_loses_no_acknowledged_enqueue(
    fsync: str, redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    n, kills = size(1_000, 5_000), size(3, 5)
    produce_seconds = size(8, 20)
    server = redis_server_factory(appendonly=True, extra_args=["--appendfsync", fsync])
    prefix = f"rf-{fsync}-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "ledger.txt"
    env = worker_env(server.url, prefix, ledger, TASKQ_LEASE_SECONDS=str(LEASE))
    admin = redis.Redis.from_url(server.url)
    producer_app = taskq.App(
        server.url, prefix=prefix, events_maxlen=1_000_000, connect_timeout=0.5, socket_timeout=3
    )
    pools = [Pool(env, concurrency=CONCURRENCY, name=f"supervisor-{i}") for i in range(PROCESSES)]
    rng = random.Random(f"{fsync}-{n}-{kills}")
    try:
        for pool in pools:
            pool.wait_ready()
        run_ids = [f"r{i:05d}-{uuid.uuid4().hex[:8]}" for i in range(n)]
        producer = Producer(producer_app, run_ids, rate=n / produce_seconds)
        t0 = time.monotonic()
        producer.start()
        kill_log: list[tuple[float, float, int]] = []  # (killed at, restarted at, server ms)
        spacing = produce_seconds / (kills + 1)
        for _ in range(kills):
            time.sleep(spacing * rng.uniform(0.6, 1.0))  # spacing out the injected faults
            killed_at = time.monotonic()
            server.kill()
            time.sleep(rng.uniform(0.2, 0.8))  # Redis stays down this long
            server.restart()
            kill_log.append((killed_at, time.monotonic(), server_ms(admin)))
        producer.join(produce_seconds * 10)
        assert not producer.is_alive(), "the producer never got all its runs acknowledged"
        produced_at = time.monotonic()

        # Acknowledged runs whose record did not survive the kills (nothing is killed now).
        pipe = admin.pipeline(transaction=False)
        for rid in run_ids:
            pipe.exists(producer_app.keys.run(QUEUE, rid))
        exists = dict(zip(run_ids, pipe.execute(), strict=True))
        lost = [rid for rid in run_ids if not exists[rid]]
        unfinished = wait_all(producer_app, [rid for rid in run_ids if exists[rid]], 60)
        drained_at = time.monotonic()

        executions, by_pid = read_ledger(ledger)
        duplicates = {rid: c for rid, c in executions.items() if c > 1}
        extra = sum(duplicates.values()) - len(duplicates)
        enqueued, running = history(admin, producer_app)
        entry_dups = {rid: c for rid, c in enqueued.items() if c > 1}
        resume_ms = [
            min((t for t in running if t >= restart_ms), default=-1) - restart_ms
            for _, _, restart_ms in kill_log
        ]
        records = {rid: producer_app.broker.producer.run_record(QUEUE, rid) for rid in duplicates}
        exited = [line for pool in pools for line in pool.matching("exited with")]
        sizes = producer_app.broker.inspect.queue_sizes(QUEUE)

        print(
            f"\n[S-{fsync}] {n} runs, {kills} SIGKILLs of redis-server (AOF appendfsync {fsync}), "
            f"{PROCESSES} worker processes x {CONCURRENCY}, lease {LEASE:g} s"
            f"\n  produce {produced_at - t0:.1f} s, then drain {drained_at - produced_at:.1f} s"
            f"\n  producer: {len(producer.acked)} acknowledged, {producer.unavailable} "
            f"RedisUnavailableError retries ({producer.retry_time:.1f} s retrying), "
            f"{producer.already_known} retried ids already known, broker errors "
            f"{dict(producer.broker_errors) or 0}"
            f"\n  lost acknowledged enqueues: {len(lost)}; unfinished: {len(unfinished)}"
            f"\n  duplicate stream entries: {len(entry_dups)}; executions {executions.total()} "
            f"for {len(executions)} runs: {extra} extra executions of {len(duplicates)} runs "
            f"(bound {kills * PROCESSES * CONCURRENCY}: kills x slots); by pid {dict(by_pid)}"
            f"\n  workers resumed (first start after Redis was back, server clock): "
            f"{resume_ms} ms; stream/PEL at the end {sizes}; 'exited with' lines {len(exited)}"
        )
        for rid in list(duplicates)[:5]:
            r = records[rid]
            print(f"  duplicate {rid}: a={r.get('a')} x1={r.get('x1')!r} state={r.get('s')}")

        if fsync == "always":
            assert lost == [], f"acknowledged enqueues lost despite appendfsync always: {lost[:10]}"
        else:
            window = [(k - 2.0, k) for k, _, _ in kill_log]
            unexplained = [
                rid for rid in lost if not any(a <= producer.acked[rid] <= b for a, b in window)
            ]
            assert unexplained == [], f"lost outside the everysec window: {unexplained[:10]}"
        assert unfinished == []
        assert set(executions) == set(run_ids) - set(lost)
        assert entry_dups == {}, f"a retried enqueue added a second entry: {entry_dups}"
        assert extra <= kills * PROCESSES * CONCURRENCY
        for rid, record in records.items():  # each re-execution follows a cut-off attempt
            assert int(record["a"]) >= 2 and record.get("x1", "").startswith("Crashed"), (
                rid,
                record,
            )
        assert all(0 <= ms <= 3000 for ms in resume_ms), resume_ms
        assert sizes == (0, 0)
        assert exited == [] and all(pool.alive for pool in pools)
    finally:
        codes = [pool.stop() for pool in pools]
        producer_app.close()
        admin.close()
    assert codes == [0] * PROCESSES, [pool.tail() for pool in pools]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_producer_against_a_dead_redis_fails_fast_naming_the_url_without_password() -> None:
    port = _free_port()  # nothing listens here
    secret = "s3cret-Pa55"
    url = f"redis://producer:{secret}@127.0.0.1:{port}/0"
    app = taskq.App(
        url, prefix="deadredis", connect_timeout=0.5, socket_timeout=1.0, block_seconds=0.5
    )

    @app.task
    def noop(x: int) -> int:
        return x

    future = taskq.Future(app.broker, QUEUE, "some-run", noop.name)
    calls: dict[str, Callable[[], Any]] = {
        "submit": lambda: noop.submit(1),
        "map": lambda: noop.map(range(10)),
        "broker.enqueue": lambda: app.broker.producer.enqueue(QUEUE, [("rid", b"x", "")]),
        "future.result": lambda: future.result(timeout=5),
        "broker.ping": app.broker.ping,
    }
    figures = {}
    for name, call in calls.items():
        t0 = time.monotonic()
        with pytest.raises(RedisUnavailableError) as info:
            call()
        elapsed = time.monotonic() - t0
        figures[name] = f"{elapsed * 1000:.0f} ms"
        text = "".join(traceback.format_exception(info.value))
        assert elapsed < 3.0, (name, elapsed)
        assert f"127.0.0.1:{port}" in str(info.value), (name, str(info.value))
        assert "producer:***@" in str(info.value), (name, str(info.value))
        assert secret not in text, (name, text)
    print(f"\n[S-dead] RedisUnavailableError raised after: {figures}; e.g. {info.value}")
    app.close()
