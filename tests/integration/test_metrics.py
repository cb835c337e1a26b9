"""Prometheus metrics of a real `taskq worker --metrics-port` pool of two processes,
scraped over HTTP: runs by final state, retries, dead letters, histograms, runs in
progress summed over the processes, and the queue depths read from Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import taskq
from taskq.errors import TaskFailedError
from tests import apps

ROOT = Path(__file__).parents[2]
SERVING = re.compile(r"serving Prometheus metrics on http://127\.0\.0\.1:(\d+)/metrics")

WORKER = (sys.executable, "-m", "taskq", "worker", "tests.apps:app")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def pool_env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    apps.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    env = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    env["PYTHONPATH"] = str(ROOT)
    env["TASKQ_UNKNOWN_TASK_GRACE"] = "0"  # a run of a task it does not know: dead at once
    env["TASKQ_LEASE_SECONDS"] = "1"  # a SIGKILLed process's run is reclaimed within seconds
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    yield env
    apps.app.close()


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        body = reply.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def task(t: taskq.Task[..., object]) -> str:
    return t.name


def hold_both(key: str) -> tuple[list[taskq.Future[int]], list[int]]:
    """Two `hold` runs, returned (with the pids running them) once both run: with
    --concurrency 1, one in each process (and each process has recorded the metrics of
    every run it ran before)."""
    holds = [apps.hold.submit(key) for _ in range(2)]
    pids = [int(apps._blpop(f"{key}:arrived")) for _ in range(2)]
    assert len(set(pids)) == 2, "the two holds should run in two processes"
    return holds, pids


def release(key: str) -> None:
    apps.app.broker.execute("RPUSH", f"{key}:go", "x", "x")


@pytest.mark.slow
def test_a_two_process_pool_serves_its_runs_and_queue_depths(
    pool_env: dict[str, str], redis_url: str, taskq_prefix: str, tmp_path: Path
) -> None:
    out = tmp_path / "worker.log"
    with out.open("w") as log_file:
        proc = subprocess.Popen(
            [*WORKER, "--processes", "2", "--concurrency", "1", "--metrics-port", "0"],
            env=pool_env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        # Phase 1: runs that complete, fail, retry and are dead-lettered.
        ghost_app = taskq.App(redis_url, prefix=taskq_prefix)
        ghost = ghost_app.task(name="tests.nowhere.ghost")(lambda: None)
        adds = apps.add.map(range(10), 1)
        failed, retried, dead = apps.boom.submit(), apps.flaky.submit(), ghost.submit()
        assert [f.result(timeout=60) for f in adds] == list(range(1, 11))
        assert retried.result(timeout=60) == "ok"
        with pytest.raises(TaskFailedError, match="RuntimeError"):
            failed.result(timeout=60)
        with pytest.raises(TaskFailedError, match="DeadLettered"):
            dead.result(timeout=60)
        ghost_app.close()
        found = SERVING.search(out.read_text())
        assert found, out.read_text()
        port = int(found.group(1))

        # Phase 2: both processes busy, so a priority-3 run waits in its stream.
        holds, _ = hold_both("first")
        waiting = apps.add.with_options(priority=3).submit(20, 1)
        later = apps.add.with_options(delay=3600).submit(30, 1)
        s = scrape(port)
        q = {"queue": "default"}
        assert value(s, "taskq_runs_total", **q, task=task(apps.add), state="Completed") == 10
        assert value(s, "taskq_runs_total", **q, task=task(apps.boom), state="Failed") == 1
        assert value(s, "taskq_runs_total", **q, task=task(apps.flaky), state="Completed") == 1
        assert value(s, "taskq_retries_total", **q, task=task(apps.flaky)) == 1
        assert value(s, "taskq_dead_letters_total", **q, reason="unknown_task") == 1
        assert value(s, "taskq_fenced_writes_total", **q, task=task(apps.add)) == 0
        for name in ("taskq_run_duration_seconds_count", "taskq_start_latency_seconds_count"):
            assert value(s, name, **q, task=task(apps.add)) == 10
        assert value(s, "taskq_run_duration_seconds_count", **q, task=task(apps.flaky)) == 2
        lateness = ("taskq_retry_lateness_seconds_count", "taskq_retry_lateness_seconds_bucket")
        assert value(s, lateness[0], **q, task=task(apps.flaky)) == 1
        assert value(s, lateness[1], **q, task=task(apps.flaky), le="+Inf") == 1
        assert value(s, "taskq_start_latency_seconds_count", **q, task=task(apps.add)) == 10
        # Summed over the two processes, each running one hold.
        assert value(s, "taskq_runs_in_progress", **q, task=task(apps.hold)) == 2
        assert value(s, "taskq_queue_depth", **q, level="3") == 1
        assert value(s, "taskq_queue_depth", **q, level="0") == 0
        assert value(s, "taskq_queue_in_flight", **q, level="0") == 2
        assert value(s, "taskq_queue_delayed", **q) == 1
        assert value(s, "taskq_queue_dead_letters", **q) == 1

        # Phase 3: the holds and the waiting run ended; two more holds prove each
        # process recorded them.
        release("first")
        assert len({f.result(timeout=60) for f in holds}) == 2
        assert waiting.result(timeout=60) == 21
        holds, pids = hold_both("second")
        s = scrape(port)
        assert value(s, "taskq_runs_total", **q, task=task(apps.hold), state="Completed") == 2
        assert value(s, "taskq_runs_total", **q, task=task(apps.add), state="Completed") == 11
        assert value(s, "taskq_runs_in_progress", **q, task=task(apps.hold)) == 2
        assert value(s, "taskq_queue_depth", **q, level="3") == 0
        assert value(s, "taskq_lease_reclaims_total", **q) == 0

        # Phase 4: one process SIGKILLed mid-run. The other is busy (one slot), so the
        # process started in its place reclaims the run once its lease (1 s) expires,
        # and runs it again: the dead process's gauge is gone (the supervisor dropped it
        # before starting the new one), its counters stay.
        os.kill(pids[0], signal.SIGKILL)
        again = int(apps._blpop("second:arrived"))
        assert again not in pids
        s = scrape(port)
        assert value(s, "taskq_lease_reclaims_total", **q) == 1
        assert value(s, "taskq_runs_in_progress", **q, task=task(apps.hold)) == 2
        assert value(s, "taskq_runs_total", **q, task=task(apps.add), state="Completed") == 11
        release("second")
        assert {f.result(timeout=60) for f in holds} == {pids[1], again}
        assert later.state.name == "Scheduled"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, out.read_text()


def test_the_metrics_port_without_the_extra_is_one_line_and_exit_2(
    pool_env: dict[str, str],
) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None; from taskq.cli import main; "
        "main(['worker', 'tests.apps:app', '--metrics-port', '9464'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=pool_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "taskq: error: --metrics-port needs prometheus-client: pip install 'taskq[metrics]'"
    ]
