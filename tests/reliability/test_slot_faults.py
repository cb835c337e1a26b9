"""Concurrency slots under SIGKILL: the slots a killed worker held come back with their
leases, the runs it held run again, the ones waiting for the key run, none leaks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pool import Pool
from tests.reliability import concapp

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).parents[2]


@pytest.fixture
def env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    concapp.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    e = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    e["PYTHONPATH"], e["TASKQ_LEASE_SECONDS"] = str(ROOT), "1"
    yield e
    concapp.app.close()


def pool(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "taskq", "worker", "tests.reliability.concapp:app"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*cmd, "--processes", "1", "--concurrency", "4", "--log-level", "INFO"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def started(n: int) -> list[str]:
    got = []
    for _ in range(n):
        reply = concapp.app.broker.execute("BLPOP", concapp.started_key(), 20)
        assert reply is not None, f"only {got} started"
        got.append(reply[1].decode())
    return got


def test_slots_of_a_killed_worker_come_back_and_none_leaks(
    env: dict[str, str], tmp_path: Path
) -> None:
    app, task = concapp.app, concapp.held
    first = [task.submit(f"a{i}", "k") for i in range(2)]
    a = pool(env, tmp_path / "a.log")
    b: subprocess.Popen[bytes] | None = None
    try:
        assert sorted(started(2)) == ["a0", "a1"]  # both slots of key k held in pool A
        waiting = [task.submit(f"w{i}", "k") for i in range(2)]  # the key is full: they wait
        kill(a, signal.SIGKILL)
        assert a.wait(timeout=30) == -signal.SIGKILL
        for name in ("a0", "a1", "w0", "w1"):  # every body finishes as soon as it runs
            app.broker.execute("RPUSH", concapp.release_key(name), "go")
        b = pool(env, tmp_path / "b.log")
        assert [f.result(timeout=60) for f in first + waiting] == ["released"] * 4
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                kill(p, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
                if p.poll() is None:
                    kill(p, signal.SIGKILL)
    slots = app.keys.conc("conc", f"{task.name}:k")
    assert app.broker.client.zcard(slots) == 0  # nothing leaked
    for f in first:  # killed mid-run: ran again after their lease, as attempt 2
        record = app.broker.producer.run_record("conc", f.run_id)
        assert (record["s"], record["a"]) == ("Completed", "2"), record


def live_workers(pool: Pool, timeout: float = 30.0) -> list[int]:
    """The pool's worker pids, once it has one (a process killed soon after it started is
    restarted after a back-off that doubles, up to seconds)."""
    deadline = time.monotonic() + timeout
    while not (pids := pool.workers()):
        assert time.monotonic() < deadline, pool.output()
        time.sleep(0.05)  # a process to appear, not work to happen
    return pids


def test_no_slot_leaks_under_a_sigkill_storm(env: dict[str, str]) -> None:
    """The worker process is SIGKILLed again and again (the supervisor restarts it) while
    runs of two keys limited to 2 each go through: every run completes and no slot is left."""
    app, task = concapp.app, concapp.brief
    futures = [task.submit(i, "k" if i % 2 else "j") for i in range(24)]
    pool = Pool(env, ["--processes", "1", "--concurrency", "4"], "tests.reliability.concapp:app")
    kills = 0
    try:
        for _ in range(5):  # after every few starts, kill the process running them
            started(3)
            pids = live_workers(pool)  # the supervisor may be backing off a restart
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[0], signal.SIGKILL)
            kills += 1
            deadline = time.monotonic() + 30
            while pids[0] in pool.workers():  # its exit, seen by the test (no work waited on)
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert [f.result(timeout=120) for f in futures] == list(range(24))
    finally:
        pool.close()
    assert kills == 5
    for key in ("j", "k"):
        assert app.broker.client.zcard(app.keys.conc("conc", f"{task.name}:{key}")) == 0
