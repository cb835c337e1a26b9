"""Real `taskq worker` processes: the pool shares a queue, restarts dead processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import apps

ROOT = Path(__file__).parents[2]


@pytest.fixture
def pool_env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    apps.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    yield env
    apps.app.close()


def taskq_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskq", *args]


@pytest.mark.slow
def test_two_processes_share_10000_tasks_each_runs_exactly_once(
    pool_env: dict[str, str], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    n = 10_000
    futures = apps.record.map(range(n), ledger=str(ledger))
    proc = subprocess.run(
        taskq_cmd(
            "worker",
            "tests.apps:app",
            "--processes",
            "2",
            "--concurrency",
            "8",
            "--burst",
            "--log-level",
            "WARNING",
        ),
        env=pool_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = ledger.read_text().splitlines()
    counts = Counter(int(line.split()[0]) for line in lines)
    assert len(lines) == n
    assert set(counts) == set(range(n)) and set(counts.values()) == {1}
    pids = Counter(line.split()[1] for line in lines)
    assert len(pids) == 2, f"both processes should have worked: {pids}"
    assert apps.app.broker.inspect.queue_sizes("default") == (0, 0)
    assert [f.result(timeout=5) for f in futures[:3]] == [0, 1, 2]


def test_supervisor_restarts_a_worker_process_that_dies(pool_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        taskq_cmd("worker", "tests.apps:app", "--processes", "1", "--concurrency", "1"),
        env=pool_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert apps.add.submit(1, 1).result(timeout=60) == 2
        doomed = apps.die.submit()
        survivor = apps.add.submit(2, 2)
        assert survivor.result(timeout=60) == 4  # served by the restarted process
        record = apps.app.broker.producer.run_record
        assert record("default", doomed.run_id)["w"] != record("default", survivor.run_id)["w"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "exited with 17; restarting" in out
