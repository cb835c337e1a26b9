"""Network faults between workers and Redis, through a loopback fault proxy.

N1/N2/N6 of the test matrix (shared/research/reliability.md §7.3). Worker processes
(``taskq worker`` subprocesses) reach Redis only through a :class:`FaultProxy`; the
producer and the checks talk to Redis directly. Workers run with lease 2 s, socket
timeout 3 s and blocking reads of 1 s, so a few seconds of fault exercise every timeout.

* (a) connections reset repeatedly mid-run: 0 lost, 0 duplicate entries, everything
  completes after the heal; re-executions only for runs whose outcome write was cut off
  (at most cuts x slots).
* (b) Redis unreachable for a few seconds, as a blackhole (connections hang) and as
  refused connections (every connection reset): the worker processes use well under 20 %
  of one core meanwhile (no busy loop: capped backoff), they resume within 2 s of the
  heal, and a producer through the blackhole fails within its socket timeout.
* (c) 50 ms added each way on every chunk: 0 lost, 0 duplicate executions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

import taskq
from taskq.errors import RedisUnavailableError
from taskq.message import encode_message
from taskq.testing import RedisServerFactory
from taskq.worker import Worker
from tests.reliability.netapps import (
    QUEUE,
    Pool,
    cpu_seconds,
    enqueue,
    history,
    read_ledger,
    server_ms,
    size,
    wait_all,
    worker_env,
)
from tests.reliability.proxy import FaultProxy

pytestmark = pytest.mark.reliability

LEASE = 2.0
PROCESSES, CONCURRENCY = 2, 4
NET_ENV = {
    "TASKQ_LEASE_SECONDS": str(LEASE),
    "TASKQ_NET_SOCKET_TIMEOUT": "3",
    "TASKQ_NET_BLOCK_SECONDS": "1",
}


@dataclass
class Rig:
    """A private Redis, a fault proxy in front of it, one worker pool behind the proxy."""

    server_url: str
    proxy: FaultProxy
    pool: Pool
    producer: taskq.App
    admin: redis.Redis
    ledger: Path
    worker_pids: list[int] = field(default_factory=list)

    def ids(self, n: int, tag: str) -> list[str]:
        return [f"{tag}{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(n)]

    def pids(self) -> list[int]:
        return [self.pool.proc.pid, *self.worker_pids]


@pytest.fixture
def rig(redis_server_factory: RedisServerFactory, tmp_path: Path) -> Iterator[Rig]:
    server = redis_server_factory()
    prefix = f"nf-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "ledger.txt"
    with FaultProxy(server.port) as proxy:
        env = worker_env(proxy.url, prefix, ledger, **NET_ENV)
        pool = Pool(env, processes=PROCESSES, concurrency=CONCURRENCY, name="proxied pool")
        producer = taskq.App(server.url, prefix=prefix, events_maxlen=1_000_000)
        admin = redis.Redis.from_url(server.url)
        r = Rig(server.url, proxy, pool, producer, admin, ledger)
        try:
            r.worker_pids = pool.wait_ready()
            warm = r.ids(20, "warm")
            enqueue(producer, warm)
            assert wait_all(producer, warm, 30) == []
            yield r
            assert pool.matching("exited with") == [], pool.tail()
            assert pool.alive
        finally:
            code = pool.stop()
            producer.close()
            admin.close()
    assert code == 0, pool.tail()


def check_outcome(r: Rig, run_ids: list[str], timeout: float) -> tuple[list[str], dict[str, int]]:
    """Wait for every run; assert each ran and has exactly one stream entry; return
    ``(unfinished, executions of the runs that ran more than once)``."""
    unfinished = wait_all(r.producer, run_ids, timeout)
    executions, _ = read_ledger(r.ledger)
    enqueued, _ = history(r.admin, r.producer)
    assert unfinished == [], f"{len(unfinished)} runs never finished: {unfinished[:5]}"
    assert all(executions[rid] >= 1 for rid in run_ids)
    assert {rid: enqueued[rid] for rid in run_ids if enqueued[rid] != 1} == {}
    assert r.producer.broker.inspect.queue_sizes(QUEUE) == (0, 0)
    return unfinished, {rid: executions[rid] for rid in run_ids if executions[rid] > 1}


def test_repeated_connection_resets_lose_nothing(rig: Rig) -> None:
    n, cuts = size(600, 5_000), size(6, 20)
    produce_seconds = size(6.0, 30.0)
    run_ids = rig.ids(n, "cut")
    chunks = [run_ids[i :: cuts + 1] for i in range(cuts + 1)]
    t0 = time.monotonic()
    reset = []
    for i, chunk in enumerate(chunks):
        enqueue(rig.producer, chunk, ms=5)
        if i < cuts:
            time.sleep(produce_seconds / (cuts + 1))  # spacing out the injected faults
            reset.append(rig.proxy.cut())
    last_cut = time.monotonic()
    _, duplicated = check_outcome(rig, run_ids, 60)
    done = time.monotonic()
    extra = sum(duplicated.values()) - len(duplicated)
    bound = cuts * PROCESSES * CONCURRENCY
    print(
        f"\n[N-cut] {n} runs, {cuts} cuts ({sum(reset)} connections reset: {reset}), "
        f"{PROCESSES} worker processes x {CONCURRENCY} via the proxy, lease {LEASE:g} s"
        f"\n  all done {done - last_cut:.1f} s after the last cut ({done - t0:.1f} s in all); "
        f"0 lost, 0 duplicate entries; {extra} extra executions of {len(duplicated)} runs "
        f"(bound {bound}: cuts x slots); proxy accepted {rig.proxy.accepted} connections"
    )
    assert extra <= bound


def _outage(rig: Rig, kind: str, seconds: float) -> dict[str, float]:
    """Take Redis away from the workers for ``seconds`` (``blackhole`` or ``down``) while
    runs keep arriving; heal; measure CPU meanwhile and the resumption."""
    busy = rig.ids(4 * PROCESSES * CONCURRENCY, f"{kind}-busy")
    enqueue(rig.producer, busy, ms=50)  # in flight, or about to be, when the fault starts
    probes = rig.ids(30, f"{kind}-probe")
    pids = rig.pids()
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    if kind == "blackhole":
        rig.proxy.blackhole(True)
    else:
        rig.proxy.down(True)
    enqueue(rig.producer, probes)
    time.sleep(seconds)  # the outage itself
    cpu = cpu_seconds(pids) - cpu0
    outage = time.monotonic() - t0
    heal_ms = server_ms(rig.admin)
    healed = time.monotonic()
    rig.proxy.heal()
    first = rig.producer.broker.producer.wait_any(QUEUE, probes, 30)
    first_at = time.monotonic()
    assert first is not None, "no probe finished within 30 s of the heal"
    first_start = int(rig.producer.broker.producer.run_record(QUEUE, first)["t1"])
    _, duplicated = check_outcome(rig, busy + probes, 60)
    return {
        "outage": outage,
        "cpu": cpu,
        "cpu_share": cpu / outage,
        "first_done": first_at - healed,
        "first_start_server": (first_start - heal_ms) / 1000,
        "all_done": time.monotonic() - healed,
        "extra": sum(duplicated.values()) - len(duplicated),
    }


def test_unreachable_redis_costs_no_cpu_and_workers_resume_after_heal(rig: Rig) -> None:
    seconds = size(4.0, 15.0)
    # A producer through the blackhole: bounded by its socket timeout, not stuck.
    stuck = taskq.App(
        rig.proxy.url,
        prefix=rig.producer.settings.prefix,
        connect_timeout=0.5,
        socket_timeout=1.0,
        block_seconds=0.5,
    )
    rig.proxy.blackhole(True)
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailableError):
        enqueue(stuck, rig.ids(1, "stuck"))
    producer_fail = time.monotonic() - t0
    rig.proxy.heal()
    stuck.close()

    figures = {kind: _outage(rig, kind, seconds) for kind in ("blackhole", "down")}
    print(
        f"\n[N-unreachable] {PROCESSES} worker processes x {CONCURRENCY} + supervisor, "
        f"lease {LEASE:g} s, socket timeout 3 s; producer through the blackhole failed "
        f"after {producer_fail:.2f} s (socket timeout 1 s)"
    )
    for kind, f in figures.items():
        print(
            f"  {kind:9s} {f['outage']:.1f} s: CPU {f['cpu']:.2f} s = {f['cpu_share']:.1%} "
            f"of one core for {len(rig.pids())} processes; first probe done "
            f"{f['first_done']:.2f} s after the heal (started "
            f"{f['first_start_server']:.2f} s after it, server clock), "
            f"all done {f['all_done']:.2f} s; {f['extra']:.0f} extra executions"
        )
    assert producer_fail < 2.5
    for f in figures.values():
        assert f["cpu_share"] < 0.20
        assert f["first_done"] < 2.0
        assert f["extra"] <= 4 * PROCESSES * CONCURRENCY


def test_latency_loses_and_duplicates_nothing(rig: Rig) -> None:
    n = size(300, 1_500)
    run_ids = rig.ids(n, "slow")
    rig.proxy.latency(0.05)
    ping_client = redis.Redis.from_url(rig.proxy.url)
    t = time.monotonic()
    ping_client.ping()  # a fresh connection: connect + PING through the proxy
    ping_client.ping()
    rtt = time.monotonic() - t
    ping_client.close()
    t0 = time.monotonic()
    enqueue(rig.producer, run_ids)
    _, duplicated = check_outcome(rig, run_ids, 120)
    elapsed = time.monotonic() - t0
    rig.proxy.heal()
    print(
        f"\n[N-latency] {n} runs through 50 ms each way (2 PINGs with connect took "
        f"{rtt * 1000:.0f} ms), {PROCESSES} worker processes x {CONCURRENCY}, lease {LEASE:g} s:"
        f" {elapsed:.1f} s = {n / elapsed:.0f} runs/s; 0 lost; "
        f"{len(duplicated)} duplicate executions"
    )
    assert duplicated == {}


def test_a_producer_survives_redis_closing_its_idle_connection(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(extra_args=["--timeout", "1"])  # drop clients idle > 1 s
    app = taskq.App(server.url, prefix=f"idle-{uuid.uuid4().hex[:8]}")
    try:
        enqueue(app, ["first"])
        time.sleep(2.5)  # the fault: this connection idles until Redis closes it
        enqueue(app, ["second"])  # Redis is up and healthy: this must not fail
    finally:
        app.close()


def test_a_worker_records_outcomes_after_redis_closed_its_idle_connections(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(extra_args=["--timeout", "1"])
    app = taskq.App(server.url, prefix=f"idle-{uuid.uuid4().hex[:8]}", lease_seconds=1)
    calls: list[int] = []

    @app.task
    def note(i: int) -> int:
        calls.append(i)
        return i

    worker = Worker(app, concurrency=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    producer = taskq.App(server.url, prefix=app.settings.prefix)

    def send(rid: str, arg: int) -> taskq.Future[int]:
        message = note.make_message([arg], {}, rid)
        producer.broker.producer.enqueue(QUEUE, [(rid, encode_message(message), "")])
        return taskq.Future(producer.broker, QUEUE, rid, note.name)

    try:
        assert send("one", 1).result(timeout=30) == 1
        producer.close()  # it reconnects below: only the worker's connections are left idle
        time.sleep(2.5)  # the fault: the task thread's connection idles until Redis closes it
        future = send("two", 2)
        assert future.result(timeout=30) == 2
        record = producer.broker.producer.run_record(QUEUE, future.run_id)
        print(f"\n[N-idle] executions {calls}; run record attempt {record.get('a')}")
        assert calls == [1, 2], "the outcome was dropped and the run executed again"
    finally:
        worker.stop()
        thread.join(30)
        producer.close()
        app.close()
