"""The supervisor of a real ``taskq worker`` pool: signals, its own death, heartbeats."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pool_apps
from tests.pool import ROOT, Pool, wait_gone

app = pool_apps.app


@pytest.fixture
def pool_env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    app.configure(redis_url=redis_url, prefix=taskq_prefix)
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    yield env
    app.close()


def wait_started(n: int, timeout: float = 60.0) -> list[str]:
    """Block on the started list until ``n`` runs announced themselves."""
    names = []
    for _ in range(n):
        got = app.broker.execute("BLPOP", pool_apps.started_key(), timeout)
        assert got is not None, f"only {names} started"
        names.append(got[1].decode())
    return names


def release(name: str) -> None:
    app.broker.execute("RPUSH", pool_apps.release_key(name), "go")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd"])
def test_one_signal_to_the_process_group_keeps_the_grace_a_second_ends_it(
    pool_env: dict[str, str], sig: signal.Signals
) -> None:
    pool = Pool(pool_env, ["--processes", "1", "--concurrency", "2", "--grace", "60"])
    try:
        a, b = pool_apps.hold.submit("a"), pool_apps.hold.submit("b")
        assert sorted(wait_started(2)) == ["a", "b"]
        os.killpg(pool.pid, sig)  # Ctrl-C, or systemd's KillMode=control-group: the group
        pool.wait_line(lambda ln: "(#1): stopping" in ln)
        with pytest.raises(subprocess.TimeoutExpired):
            pool.proc.wait(2)  # still inside its 60 s grace: nothing was handed back
        release("a")
        assert a.result(timeout=30) == "released"  # finished within the grace
        record = app.broker.producer.run_record("default", a.run_id)
        assert record["s"] == "Completed" and record["a"] == "1" and "x1" not in record
        os.killpg(pool.pid, sig)  # a second one, > 0.5 s later: no more grace
        assert pool.proc.wait(20) == 0
        record = app.broker.producer.run_record("default", b.run_id)
        assert record["s"] == "Pending", pool.output()  # handed back for redelivery
        assert record["x1"].startswith("Interrupted"), record
    finally:
        pool.close()


@pytest.mark.slow
def test_worker_processes_hand_back_and_exit_when_their_supervisor_is_killed(
    pool_env: dict[str, str],
) -> None:
    pool = Pool(pool_env, ["--processes", "2", "--concurrency", "1", "--grace", "60"])
    try:
        running = pool_apps.hold.submit("a")
        wait_started(1)
        children = pool.workers()
        assert len(children) == 2, pool.output()
        os.kill(pool.pid, signal.SIGKILL)  # an OOM kill, a `kill -9` of the service's pid
        pool.proc.wait(10)
        assert wait_gone(children, timeout=3) == [], pool.output()  # about a second, + slack
        record = app.broker.producer.run_record("default", running.run_id)
        assert record["s"] == "Pending", record  # handed back, not left to its lease
        assert record["x1"].startswith("Interrupted"), record
    finally:
        pool.close()


def test_the_supervisor_keeps_touching_its_heartbeat_file(
    pool_env: dict[str, str], tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    env = dict(pool_env, TASKQ_HEARTBEAT_FILE=str(beat))
    pool = Pool(env, ["--processes", "1", "--concurrency", "1"])
    try:
        assert pool_apps.hold.submit("a", 0.0).result(timeout=60) == "expired"  # it runs
        assert beat.exists(), pool.output()
        first = beat.stat().st_mtime_ns
        old = time.time() - 120
        os.utime(beat, (old, old))  # as if the supervisor had hung two minutes ago
        deadline = time.monotonic() + 10
        while beat.stat().st_mtime_ns <= first and time.monotonic() < deadline:
            time.sleep(0.1)  # polling a file's age, bounded: the probe's own view
        assert beat.stat().st_mtime_ns > first, "not touched again within 10 s"
        assert time.time() - beat.stat().st_mtime < 5
        os.kill(pool.pid, signal.SIGTERM)
        assert pool.proc.wait(30) == 0
        assert not beat.exists()  # a stopped worker leaves no fresh-looking heartbeat
    finally:
        pool.close()
