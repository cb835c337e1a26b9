"""Periodic tasks fired by the workers themselves: once per tick however many run, the
latest missed tick caught up once (or skipped), listed by ``taskq schedules``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import taskq
from taskq.schedules import ScheduleRunner, tick_run_id


def test_each_tick_runs_once_with_many_workers(taskq_app: taskq.App) -> None:
    ran = f"{taskq_app.settings.prefix}:ran"

    @taskq_app.task(schedule=0.4)
    def tick() -> str:
        run_id = taskq.context().run_id
        taskq_app.broker.execute("RPUSH", ran, run_id)
        return run_id

    sched = tick.options.schedule
    assert sched is not None
    now = taskq_app.broker.control.server_ms()
    taskq_app.broker.control.record_tick("default", tick.name, sched.latest_at_or_before(now))
    ticks = [sched.next_after(now)]
    for _ in range(2):
        ticks.append(sched.next_after(ticks[-1]))
    workers = [taskq.Worker(taskq_app, concurrency=2) for _ in range(3)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        futures = [tick.future(tick_run_id(tick.name, t)) for t in ticks]
        assert [f.result(timeout=15) for f in futures] == [f.run_id for f in futures]
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)
    done = [r.decode() for r in taskq_app.broker.execute("LRANGE", ran, 0, -1)]
    for f in futures:
        assert done.count(f.run_id) == 1  # fired by three workers, run once
    assert len(done) == len(set(done))
    assert sum(w.schedules.fired for w in workers) >= 3


@pytest.mark.parametrize("policy", ["once", "skip"])
def test_the_latest_missed_tick_is_caught_up_once_or_skipped(
    taskq_app: taskq.App, policy: str
) -> None:
    @taskq_app.task(schedule=3600, missed_ticks=policy)
    def hourly() -> None: ...

    sched = hourly.options.schedule
    assert sched is not None
    control = taskq_app.broker.control
    now = control.server_ms()
    latest = sched.latest_at_or_before(now)
    control.record_tick("default", hourly.name, latest - 3 * 3_600_000)  # 3 ticks missed
    # This worker started watching after the ticks came due (every worker was down).
    runner = ScheduleRunner(taskq_app, [hourly], since_ms=now + 10_000)
    runner.step()
    record = taskq_app.broker.producer.run_record("default", tick_run_id(hourly.name, latest))
    older = tick_run_id(hourly.name, latest - 3_600_000)
    assert not taskq_app.broker.producer.run_record("default", older)  # never more than one
    if policy == "once":
        assert record.get("s") == "Pending" and runner.fired == 1
    else:
        assert record == {} and runner.fired == 0
    assert control.last_tick("default", hourly.name) == latest
    runner.step()  # a second look changes nothing
    assert runner.fired == (1 if policy == "once" else 0)


def test_a_new_schedule_starts_now(taskq_app: taskq.App) -> None:
    @taskq_app.task(schedule="* * * * *")
    def minutely() -> None: ...

    runner = ScheduleRunner(taskq_app, [minutely])
    wait = runner.step()
    assert runner.fired == 0 and 0 < wait <= 1.0
    sched = minutely.options.schedule
    assert sched is not None
    last = taskq_app.broker.control.last_tick("default", minutely.name)
    assert last == sched.latest_at_or_before(taskq_app.broker.control.server_ms())


def test_schedules_are_checked_at_decoration(taskq_app: taskq.App) -> None:
    with pytest.raises(taskq.ConfigurationError, match="callable without arguments"):

        @taskq_app.task(schedule=60)
        def needs(x: int) -> None: ...

    @taskq_app.task(schedule=60)
    def fine() -> None: ...

    with pytest.raises(taskq.ConfigurationError, match="cannot change per submission"):
        fine.with_options(schedule=30)  # type: ignore[call-arg]


def test_taskq_schedules_lists_them(tmp_path: Path, redis_url: str, taskq_prefix: str) -> None:
    (tmp_path / "timed.py").write_text(
        textwrap.dedent(
            f"""
            import taskq

            app = taskq.App({redis_url!r}, prefix={taskq_prefix!r})

            @app.task(schedule="0 9 * * 1-5", schedule_tz="Europe/Paris", missed_ticks="skip")
            def standup() -> None: ...

            @app.task
            def other() -> None: ...
            """
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "taskq", "schedules", "timed:app"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    [line] = res.stdout.splitlines()
    assert line.startswith("timed.standup  cron '0 9 * * 1-5' (Europe/Paris)  missed=skip")
    assert "last=never" in line and "next=20" in line and "T09:00:00+0" in line
