"""A schedule under many worker processes, one pool SIGKILLed: every tick runs exactly
once, and none is skipped while a worker is alive."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskq.schedules import tick_run_id
from tests.reliability import schedapp

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).parents[2]


@pytest.fixture
def env(redis_url: str, taskq_prefix: str) -> Iterator[dict[str, str]]:
    schedapp.app.configure(redis_url=redis_url, prefix=taskq_prefix)
    e = dict(os.environ, TASKQ_REDIS_URL=redis_url, TASKQ_PREFIX=taskq_prefix)
    e["PYTHONPATH"], e["TASKQ_LEASE_SECONDS"] = str(ROOT), "1"
    yield e
    schedapp.app.close()


def pool(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "taskq", "worker", "tests.reliability.schedapp:app"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*cmd, "--processes", "2", "--concurrency", "2", "--log-level", "INFO"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def test_ticks_run_once_each_through_a_sigkill(env: dict[str, str], tmp_path: Path) -> None:
    app, task = schedapp.app, schedapp.tick
    sched = task.options.schedule
    assert sched is not None
    a, b = pool(env, tmp_path / "a.log"), pool(env, tmp_path / "b.log")
    try:
        # The ticks waited for are chosen once a worker watches the schedule (its first
        # tick ran): chosen before, a slow start (a loaded machine) could miss the first
        # of them, which is then (rightly) coalesced with the others it missed.
        first = app.broker.execute("BLPOP", schedapp.ran_key(), 60)
        assert first is not None, "no tick ran within 60 s of starting two pools"
        now = app.broker.control.server_ms()
        ticks = [sched.next_after(now)]
        for _ in range(11):
            ticks.append(sched.next_after(ticks[-1]))
        for t in ticks[:4]:  # both pools (four processes) watch the schedule
            task.future(tick_run_id(task.name, t)).result(timeout=20)
        kill(a, signal.SIGKILL)
        assert a.wait(timeout=30) == -signal.SIGKILL
        for t in ticks[4:]:  # pool B alone: no tick skipped
            task.future(tick_run_id(task.name, t)).result(timeout=20)
    finally:
        for p in (a, b):
            if p.poll() is None:
                kill(p, signal.SIGTERM)
        for p in (a, b):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
            if p.poll() is None:
                kill(p, signal.SIGKILL)
    ran = [r.decode() for r in app.broker.execute("LRANGE", schedapp.ran_key(), 0, -1)]
    wanted = [tick_run_id(task.name, t) for t in ticks]
    # Every tick ran (none skipped, though a pool was killed), as one run each: a tick's
    # body runs twice only if pool A was running it when it was killed (its lease then
    # brings it back: at-least-once), so at most one body ran twice.
    assert set(wanted) <= set(ran)
    assert len(ran) - len(set(ran)) <= 1, ran
    states = [app.future(rid, "ticks").state.name for rid in wanted]
    assert states == ["Completed"] * len(wanted)
