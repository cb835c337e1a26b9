"""Burst mode waits only for delay-queue runs due soon (``burst_wait``), then exits
and says what it left scheduled."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskq
from taskq.testing import BurstWorker
from tests import apps

ROOT = Path(__file__).parents[2]
LEFT = re.compile(r"burst: 1 run\(s\) left scheduled on queue 'default', next due in (\d+) s")


def test_a_run_an_hour_ahead_does_not_keep_a_burst_worker(
    taskq_app: taskq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    later = add.with_options(delay=3600).submit(1, 2)
    now = add.submit(2, 3)
    worker = taskq.Worker(taskq_app, burst=True)
    caplog.set_level(logging.WARNING, logger="taskq.worker")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():  # before the fix it waits an hour
        worker.stop()
        worker.stop()
        thread.join(timeout=30)
        pytest.fail("a run scheduled an hour ahead kept the burst worker alive")
    assert now.result(timeout=1) == 5
    assert worker.processed == 1
    assert later.state.name == "Scheduled"
    found = [m for r in caplog.records if (m := LEFT.search(r.getMessage()))]
    assert len(found) == 1
    assert 3590 <= int(found[0].group(1)) <= 3600


def test_runs_due_within_burst_wait_are_waited_for(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    future = add.with_options(delay=1).submit(1, 2)
    left = burst_worker(taskq_app, burst_wait=0)  # passed through: due in 1 s is too late
    assert left.processed == 0 and future.state.name == "Scheduled"
    waited = burst_worker(taskq_app, burst_wait=5)
    assert waited.processed == 1 and future.result(timeout=1) == 3


def test_burst_wait_must_not_be_negative(taskq_app: taskq.App) -> None:
    with pytest.raises(ValueError, match="burst_wait"):
        taskq.Worker(taskq_app, burst=True, burst_wait=-1)


@pytest.fixture
def pool_env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    apps.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    yield env
    apps.app.close()


def test_cli_burst_exits_and_says_what_was_left_scheduled(pool_env: dict[str, str]) -> None:
    later = apps.add.with_options(delay=3600).submit(1, 2)
    now = apps.add.submit(2, 3)
    cmd = [sys.executable, "-m", "taskq", "worker", "tests.apps:app", "--burst", "-p", "1"]
    proc = subprocess.Popen(
        cmd, env=pool_env, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # before the fix it waits an hour
        os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its worker process
        proc.communicate()
        pytest.fail("a run scheduled an hour ahead kept `taskq worker --burst` alive")
    assert proc.returncode == 0, stderr
    assert LEFT.search(stderr), stderr
    assert now.result(timeout=1) == 5
    assert later.state.name == "Scheduled"
