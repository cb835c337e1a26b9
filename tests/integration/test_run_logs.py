"""Run logs: get_run_logger() and log_prints write the run's lines to Redis, read back by
Inspection.run_logs and shown by `taskq run ID`, with real burst workers."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

import pytest
from click.testing import CliRunner

import taskq
from taskq.broker.logs import LogLine
from taskq.cli import cli
from taskq.events import read_events
from taskq.runlogs import TRUNCATED, TTL_MARGIN_MS
from taskq.testing import BurstWorker


def logs(app: taskq.App, fut: taskq.Future[object]) -> list[LogLine]:
    return app.broker.inspect.run_logs(fut.queue, fut.run_id)


def messages(app: taskq.App, fut: taskq.Future[object]) -> list[str]:
    return [line.message for line in logs(app, fut)]


def log_exists(app: taskq.App, fut: taskq.Future[object]) -> bool:
    return bool(app.broker.execute("EXISTS", app.keys.run_log(fut.queue, fut.run_id)))


def test_run_logger_lines_are_read_back_and_shown_by_taskq_run(
    taskq_app: taskq.App,
    burst_worker: BurstWorker,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @taskq_app.task
    def greet(name: str) -> str:
        logger = taskq.get_run_logger()
        logger.debug("not kept: below INFO")
        logger.info("hello %s", name)
        logger.warning("careful, %(who)s", {"who": name})
        try:
            raise KeyError("missing")
        except KeyError:
            logger.exception("caught it")
        return name

    caplog.set_level(logging.INFO, logger="taskq.run")
    fut = greet.submit("ann")
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == "ann"

    lines = logs(taskq_app, fut)
    assert [(x.level_name, x.attempt) for x in lines] == [
        ("INFO", 1),
        ("WARNING", 1),
        ("ERROR", 1),
    ]
    assert [x.message.split("\n")[0] for x in lines] == [
        "hello ann",
        "careful, ann",
        "caught it",
    ]
    assert "Traceback (most recent call last)" in lines[2].message
    assert "KeyError: 'missing'" in lines[2].message
    assert all(x.time_ms > 1_600_000_000_000 for x in lines)

    # The same records went to Python logging, with the run in extra and the caller's frame.
    records = [r for r in caplog.records if r.name == "taskq.run"]
    assert [r.getMessage() for r in records] == ["hello ann", "careful, ann", "caught it"]
    assert {getattr(r, "run_id", None) for r in records} == {fut.run_id}
    assert {getattr(r, "task_name", None) for r in records} == {greet.name}
    assert {r.funcName for r in records} == {"greet"}

    out = CliRunner().invoke(
        cli, ["run", fut.run_id, "--redis-url", redis_url, "--prefix", taskq_app.settings.prefix]
    )
    assert out.exit_code == 0, out.output
    shown = out.output.split("  log:\n", 1)[1].splitlines()
    assert "INFO" in shown[0] and "#1" in shown[0] and shown[0].endswith("hello ann")
    assert "WARNING" in shown[1] and shown[1].endswith("careful, ann")
    assert "ERROR" in shown[2] and shown[2].endswith("caught it")
    assert any("KeyError: 'missing'" in s and s.startswith(" " * 20) for s in shown[3:])


def test_a_run_that_logs_nothing_has_no_log_key(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    @taskq_app.task
    def quiet() -> int:
        print("printed, but log_prints is off")
        return 1

    fut = quiet.submit()
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == 1
    assert not log_exists(taskq_app, fut)
    assert logs(taskq_app, fut) == []
    out = CliRunner().invoke(
        cli, ["run", fut.run_id, "--redis-url", redis_url, "--prefix", taskq_app.settings.prefix]
    )
    assert out.exit_code == 0 and "state=Completed" in out.output
    assert "log:" not in out.output


def test_log_prints_in_sync_and_async_tasks_and_not_when_off(
    taskq_app: taskq.App, burst_worker: BurstWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    @taskq_app.task(log_prints=True)
    def sync_prints(x: int) -> int:
        print("sync", "says", x, sep="-")
        print()  # an empty line is not kept
        print("to a file of its own", file=open("/dev/null", "w"))  # noqa: SIM115
        return x

    @taskq_app.task(log_prints=True)
    async def async_prints(x: int) -> int:
        await asyncio.sleep(0)
        print(f"async says {x}   ")
        return x

    @taskq_app.task(log_prints=False)
    def silent(x: int) -> int:
        print(f"silent says {x}")
        return x

    futs = [sync_prints.submit(1), async_prints.submit(2), silent.submit(3)]
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in futs] == [1, 2, 3]
    assert messages(taskq_app, futs[0]) == ["sync-says-1"]
    assert messages(taskq_app, futs[1]) == ["async says 2"]
    assert [x.level_name for x in logs(taskq_app, futs[1])] == ["INFO"]
    assert not log_exists(taskq_app, futs[2])
    out = capsys.readouterr().out  # still printed, every one of them
    assert "sync-says-1" in out and "async says 2" in out and "silent says 3" in out


def test_log_prints_of_a_flow_body_once_across_replays_and_inherited_by_children(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def inherits(x: int) -> int:
        print(f"child {x}")
        return 2 * x

    @taskq_app.task(log_prints=False)
    def opts_out(x: int) -> int:
        print(f"opted out {x}")
        return x

    @taskq_app.flow(log_prints=True, inline_wait_seconds=0)
    def body(x: int) -> int:
        print("flow starts")
        taskq.get_run_logger().info("logged by the flow")
        a = inherits.submit(x).result()  # suspends: the body replays from the top
        print(f"got {a}")
        b = opts_out.submit(a).result()  # suspends again
        print(f"then {b}")
        return b

    fut = body.submit(3)
    burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == 6
    suspended = [
        e
        for e in read_events(taskq_app.broker, "default")
        if e.run_id == fut.run_id and e.state == "AwaitingChildren"
    ]
    assert len(suspended) == 2  # three executions of the body
    assert messages(taskq_app, fut) == ["flow starts", "logged by the flow", "got 6", "then 6"]
    assert {x.attempt for x in logs(taskq_app, fut)} == {1}
    child, other = f"{fut.run_id}.1", f"{fut.run_id}.2"
    assert [x.message for x in taskq_app.broker.inspect.run_logs("default", child)] == ["child 3"]
    assert taskq_app.broker.inspect.run_logs("default", other) == []


def test_prints_of_concurrent_sync_tasks_stay_with_their_runs(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    n = 6
    together = threading.Barrier(n, timeout=30)

    @taskq_app.task(log_prints=True)
    def chatty(tag: str) -> str:
        together.wait()  # every run is inside its body at once
        for i in range(40):
            print(f"{tag} {i}")
            if i == 20:
                together.wait()  # and half-way through, all of them again
        return tag

    futs = [chatty.submit(f"run{k}") for k in range(n)]
    burst_worker(taskq_app, concurrency=n)
    assert [f.result(timeout=5) for f in futs] == [f"run{k}" for k in range(n)]
    for k, f in enumerate(futs):
        assert messages(taskq_app, f) == [f"run{k} {i}" for i in range(40)]


def test_the_log_keeps_its_newest_lines_and_cuts_long_ones(
    redis_url: str, taskq_prefix: str, burst_worker: BurstWorker
) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, run_log_max_lines=5, run_log_line_bytes=100)

    @app.task
    def verbose() -> None:
        logger = taskq.get_run_logger()
        for i in range(250):  # written mid-attempt too (every 100 lines)
            logger.info("line %d", i)
        logger.info("é" * 1000)

    fut = verbose.submit()
    burst_worker(app)
    fut.wait(timeout=5)
    got = messages(app, fut)
    assert got[:4] == ["line 246", "line 247", "line 248", "line 249"]
    assert len(got) == 5
    long = got[4]
    assert long.endswith(TRUNCATED) and long.startswith("é" * 10)
    assert len(long.encode()) <= 100 and len(long.encode()) > 90
    app.close()


def test_retry_and_failure_messages_go_to_the_runs_log_with_their_attempt(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    tries: Counter[str] = Counter()

    @taskq_app.task(retries=1, retry_delay_seconds=0)
    def flaky() -> None:
        tries["flaky"] += 1
        taskq.get_run_logger().info("trying")
        raise ValueError(f"bad #{tries['flaky']}")

    @taskq_app.task
    def never_logs() -> None:
        raise RuntimeError("boom")

    fut, other = flaky.submit(), never_logs.submit()
    burst_worker(taskq_app)
    assert fut.state.name == "Failed" and other.state.name == "Failed"
    lines = logs(taskq_app, fut)
    assert [(x.attempt, x.level_name) for x in lines] == [
        (1, "INFO"),
        (1, "WARNING"),
        (2, "INFO"),
        (2, "ERROR"),
    ]
    assert lines[1].message == "attempt 1/2 failed: ValueError: bad #1; retrying in 0 s"
    assert lines[3].message.startswith("attempt 2/2 failed: ValueError: bad #2\nTraceback")
    assert "in flaky" in lines[3].message
    # A run that never logged still has its failure written (one call, on that path only).
    [only] = logs(taskq_app, other)
    assert only.attempt == 1 and only.level_name == "ERROR"
    assert only.message.startswith("attempt 1/1 failed: RuntimeError: boom\n")


def test_the_log_expires_with_the_run(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task(result_ttl=100)
    def short_lived() -> None:
        taskq.get_run_logger().info("soon gone")

    @taskq_app.task
    def default_ttl() -> None:
        taskq.get_run_logger().info("kept a day")

    a, b = short_lived.submit(), default_ttl.submit()
    burst_worker(taskq_app)
    k = taskq_app.keys
    ttl_a = int(taskq_app.broker.execute("PTTL", k.run_log(a.queue, a.run_id)))
    ttl_b = int(taskq_app.broker.execute("PTTL", k.run_log(b.queue, b.run_id)))
    record = int(taskq_app.broker.execute("PTTL", k.run(a.queue, a.run_id)))
    assert 90_000 < record < ttl_a <= 100_000 + TTL_MARGIN_MS
    day = int(taskq_app.settings.result_ttl * 1000)
    assert day < ttl_b <= day + TTL_MARGIN_MS


def test_get_run_logger_outside_a_run_and_in_a_direct_call(
    taskq_app: taskq.App, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(taskq.MissingContextError, match="outside a task or flow run"):
        taskq.get_run_logger()

    @taskq_app.task(log_prints=True)
    def local(x: int) -> int:
        taskq.get_run_logger().warning("called here with %d", x)
        print("a direct call's print is only printed")
        return x

    caplog.set_level(logging.INFO, logger="taskq.run")
    assert local(4) == 4
    [record] = [r for r in caplog.records if r.name == "taskq.run"]
    assert record.getMessage() == "called here with 4"
    assert getattr(record, "task_name", None) == local.name
    with pytest.raises(taskq.MissingContextError):  # the call is over
        taskq.get_run_logger()
    # Nothing was written for it: a direct call has no run record.
    assert list(taskq_app.broker.connection.scan(f"{taskq_app.keys.prefix}:*:log:*")) == []
