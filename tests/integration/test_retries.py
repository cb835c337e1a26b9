"""Retries through the Redis delay queue, end to end with a real worker."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker


def attempt_times(app: taskq.App, fut: taskq.Future[object]) -> list[int]:
    record = app.broker.producer.run_record(fut.queue, fut.run_id)
    return [int(record[f"t{a}"]) for a in range(1, int(record["a"]) + 1)]


SCRIPT_SLACK_MS = 5


def retry_events(app: taskq.App, fut: taskq.Future[object]) -> list[tuple[int, int]]:
    """(event time ms, due ms) of each AwaitingRetry event: both from the server clock.

    The script reads TIME once for the due time; the event's stream id is stamped a
    moment later (Redis 7.0 does not freeze the clock inside a script), so ``due - event
    time`` may fall short of the delay by the script's own running time: never more than
    the delay, and short by at most ``SCRIPT_SLACK_MS`` (2 ms seen on a loaded 2-core
    machine running a 3-node cluster).
    """
    return [
        (int(eid.split("-")[0]), int(f["due"]))
        for eid, f in app.broker.inspect.run_events(fut.queue, fut.run_id)
        if f["s"] == "AwaitingRetry"
    ]


@pytest.mark.parametrize("k", range(6))
def test_fails_k_times_then_succeeds_with_retries_3(
    k: int, taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()
    delays = [0.02, 0.05, 0.1]

    @taskq_app.task(retries=3, retry_delay_seconds=delays)
    def flaky(key: str) -> str:
        calls[key] += 1
        if calls[key] <= k:
            raise ConnectionError(f"failure {calls[key]}")
        return "ok"

    fut = flaky.submit("x")
    burst_worker(taskq_app)
    assert calls["x"] == min(k, 3) + 1
    if k <= 3:
        assert fut.result(timeout=5) == "ok"
        assert fut.state.name == "Completed"
    else:
        with pytest.raises(taskq.TaskFailedError) as info:
            fut.result(timeout=5)
        assert info.value.attempts == 4
        assert info.value.error.type == "ConnectionError"
        assert info.value.error.message == "failure 4"
    # The delays follow the list, by the server clock: due = failure time + delay, and
    # the next attempt starts at or after its due time.
    starts = attempt_times(taskq_app, fut)
    retries = retry_events(taskq_app, fut)
    assert len(retries) == min(k, 3)
    for i, (failed_at, due) in enumerate(retries):
        assert 0 <= int(delays[i] * 1000) - (due - failed_at) <= SCRIPT_SLACK_MS
        assert starts[i + 1] >= due


@pytest.mark.parametrize(
    ("spec", "expected_ms"),
    [
        (0.03, [30, 30]),
        (lambda attempt: 0.01 * attempt, [10, 20]),
        (taskq.exponential_backoff(backoff_factor=0.01), [10, 20]),
        ([0.01], [10, 10]),
    ],
)
def test_fixed_callable_and_backoff_delays(
    spec: object, expected_ms: list[int], taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(retries=2, retry_delay_seconds=spec)  # type: ignore[call-overload]
    def always() -> None:
        raise OSError("down")

    fut = always.submit()
    burst_worker(taskq_app)
    assert fut.state.attempt == 3
    got = [due - at for at, due in retry_events(taskq_app, fut)]
    assert len(got) == 2 and all(
        0 <= e - g <= SCRIPT_SLACK_MS for g, e in zip(got, expected_ms, strict=True)
    )


@pytest.mark.parametrize("skew", [-600.0, 600.0])
def test_retry_never_starts_before_due_by_the_server_clock_whatever_the_worker_clock(
    skew: float, taskq_app: taskq.App, burst_worker: BurstWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's wall clock is set ten minutes off; due times come from Redis TIME."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + skew)
    attempts: list[int] = []

    @taskq_app.task(retries=2, retry_delay_seconds=0.05, retry_jitter_factor=0.5)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise TimeoutError("slow upstream")
        return len(attempts)

    fut = flaky.submit()
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == 3
    starts = attempt_times(taskq_app, fut)
    for i, (failed_at, due) in enumerate(retry_events(taskq_app, fut)):
        assert 31 - SCRIPT_SLACK_MS <= due - failed_at <= 75  # jitter: [0.629 d, 1.5 d]
        assert starts[i + 1] >= due


def test_retry_on_and_condition_stop_retries_in_the_worker(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(retries=5, retry_on=(ConnectionError,))
    def only_network(kind: str) -> None:
        calls[f"net-{kind}"] += 1
        raise ConnectionError("x") if kind == "net" else ValueError("bad input")

    @taskq_app.task(retries=5, retry_condition_fn=lambda task, run, state: run.attempt < 2)
    def twice() -> None:
        calls["twice"] += 1
        raise RuntimeError("again")

    @taskq_app.task(retries=5, no_retry_on=KeyError)
    def never_key() -> None:
        calls["key"] += 1
        raise KeyError("k")

    futures = [
        only_network.submit("net"),
        only_network.submit("val"),
        twice.submit(),
        never_key.submit(),
    ]
    burst_worker(taskq_app)
    assert calls == {"net-net": 6, "net-val": 1, "twice": 2, "key": 1}
    assert all(f.state.name == "Failed" for f in futures)


@pytest.mark.parametrize("async_task", [False, True], ids=["sync-task", "async-task"])
def test_async_retry_condition_fn_is_awaited(
    async_task: bool,
    taskq_app: taskq.App,
    burst_worker: BurstWorker,
    recwarn: pytest.WarningsRecorder,
) -> None:
    calls: Counter[str] = Counter()

    async def transient_only(task: object, task_run: taskq.TaskRun, state: taskq.State) -> bool:
        await asyncio.sleep(0)
        return "transient" in str(state.exception)

    async def predicate(exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    if async_task:

        @taskq_app.task(retries=2, retry_condition_fn=transient_only)
        async def flaky(kind: str) -> None:
            calls[kind] += 1
            raise RuntimeError(kind)

        @taskq_app.task(retries=2, retry_condition_fn=predicate)
        async def net() -> None:
            calls["net"] += 1
            raise ConnectionError("down")

    else:

        @taskq_app.task(retries=2, retry_condition_fn=transient_only)
        def flaky(kind: str) -> None:
            calls[kind] += 1
            raise RuntimeError(kind)

        @taskq_app.task(retries=2, retry_condition_fn=predicate)
        def net() -> None:
            calls["net"] += 1
            raise ConnectionError("down")

    retried, refused, pred = flaky.submit("transient"), flaky.submit("permanent"), net.submit()
    burst_worker(taskq_app)
    # True: every retry is used; False: Failed after the first attempt, not retried.
    assert calls == {"transient": 3, "permanent": 1, "net": 3}
    for fut, attempts in ((retried, 3), (refused, 1), (pred, 3)):
        assert fut.state.name == "Failed"
        with pytest.raises(taskq.TaskFailedError) as info:
            fut.result(timeout=5)
        assert info.value.attempts == attempts
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_failed_attempts_are_logged_retry_at_warning_final_at_error_with_traceback(
    taskq_app: taskq.App, burst_worker: BurstWorker, caplog: pytest.LogCaptureFixture
) -> None:
    @taskq_app.task(retries=2, retry_delay_seconds=[0.01, 0.02])
    def doomed(x: int) -> None:
        raise ValueError(f"bad {x}")

    fut = doomed.submit(7)
    with caplog.at_level(logging.WARNING, logger="taskq.engine"):
        burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError):
        fut.result(timeout=5)
    mine = [r for r in caplog.records if r.name == "taskq.engine" and fut.run_id in r.getMessage()]
    assert [(r.levelno, r.getMessage().split("\n")[0]) for r in mine] == [
        (
            logging.WARNING,
            f"task {doomed.name} run {fut.run_id} attempt 1/3 failed: ValueError: bad 7; "
            "retrying in 0.01 s",
        ),
        (
            logging.WARNING,
            f"task {doomed.name} run {fut.run_id} attempt 2/3 failed: ValueError: bad 7; "
            "retrying in 0.02 s",
        ),
        (
            logging.ERROR,
            f"task {doomed.name} run {fut.run_id} attempt 3/3 failed: ValueError: bad 7",
        ),
    ]
    final = mine[-1].getMessage()
    assert "Traceback (most recent call last)" in final and 'raise ValueError(f"bad {x}")' in final


def test_failure_logging_costs_nothing_when_filtered_out(
    taskq_app: taskq.App,
    burst_worker: BurstWorker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskq.engine import Engine

    @taskq_app.task(retries=1, retry_delay_seconds=0.01)
    def doomed() -> None:
        raise ValueError("bad")

    policies: list[str] = []
    real = Engine._policy

    def counting(self: Engine, d: Any) -> Any:
        policies.append(d.run_id)
        return real(self, d)

    monkeypatch.setattr(Engine, "_policy", counting)
    fut = doomed.submit()
    with caplog.at_level(logging.CRITICAL, logger="taskq.engine"):
        burst_worker(taskq_app)
    assert fut.state.name == "Failed"
    assert not [r for r in caplog.records if r.name == "taskq.engine"]
    # Only the retry decisions looked the policy up (one per failed attempt), not the log.
    assert policies == [fut.run_id, fut.run_id]


def test_retry_signal_and_cancel(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(retries=2, no_retry_on=taskq.Retry)
    def poll() -> str:
        calls["poll"] += 1
        if calls["poll"] < 3:
            raise taskq.Retry(delay=0.01, reason="not ready")
        return "ready"

    @taskq_app.task(retries=1)
    def poll_forever() -> None:
        calls["forever"] += 1
        raise taskq.Retry(delay=0.01)

    @taskq_app.task(retries=5)
    def stop() -> None:
        calls["cancel"] += 1
        raise taskq.Cancel("not wanted")

    ok, exhausted, cancelled = poll.submit(), poll_forever.submit(), stop.submit()
    burst_worker(taskq_app)
    assert ok.result(timeout=5) == "ready" and calls["poll"] == 3
    with pytest.raises(taskq.TaskFailedError) as info:
        exhausted.result(timeout=5)
    assert info.value.attempts == 2 and info.value.error.type == "taskq.errors.Retry"
    with pytest.raises(taskq.TaskCancelledError):
        cancelled.result(timeout=5)
    assert calls["cancel"] == 1


def test_events_tell_the_whole_story_and_taskq_run_shows_attempts(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    calls: list[int] = []

    @taskq_app.task(retries=3, retry_delay_seconds=0.01)
    def twice_bad() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise ValueError(f"bad #{len(calls)}")
        return "good"

    fut = twice_bad.submit()
    burst_worker(taskq_app)
    story = [
        (e.state, e.attempt)
        for e in read_events(taskq_app.broker, "default")
        if e.run_id == fut.run_id
    ]
    assert story == [
        ("Pending", 0),
        ("Running", 1),
        ("AwaitingRetry", 1),
        ("Retrying", 2),
        ("AwaitingRetry", 2),
        ("Retrying", 3),
        ("Completed", 3),
    ]
    root = Path(__file__).parents[2]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskq",
            "run",
            fut.run_id,
            "--redis-url",
            redis_url,
            "--prefix",
            taskq_app.settings.prefix,
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"run {fut.run_id}  queue=default  state=Completed  attempts=3" in text
    assert "attempt 1: started" in text and "failed: ValueError: bad #1" in text
    assert "attempt 2: started" in text and "failed: ValueError: bad #2" in text
    assert "attempt 3: started" in text and "Completed" in text
    missing = subprocess.run(
        [sys.executable, "-m", "taskq", "run", "nope", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr


def _story(app: taskq.App, run_id: str) -> list[tuple[str, int]]:
    return [(e.state, e.attempt) for e in read_events(app.broker, "default") if e.run_id == run_id]


def test_an_attempt_after_a_hand_back_is_running_not_retrying(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def work(x: int) -> int:
        return x + 1

    fut = work.submit(1)
    broker = taskq_app.broker
    broker.consumer.ensure_group("default")
    [(_, eid, fields, _)] = broker.consumer.read(["default"], "stopping-worker", 1, None)
    [(kind, attempt, _)] = broker.consumer.start(
        "default", "stopping-worker", [(eid, fut.run_id, 0, "")]
    )
    assert (kind, attempt) == (1, 1)
    assert broker.consumer.handback(
        "default", "stopping-worker", [(eid, fut.run_id, 1, fields[b"m"])], "x"
    )
    burst_worker(taskq_app)
    assert fut.result(timeout=5) == 2
    # Nothing failed: the second attempt is a plain Running one, not a Retrying.
    assert _story(taskq_app, fut.run_id) == [
        ("Pending", 0),
        ("Running", 1),
        ("Pending", 1),
        ("Running", 2),
        ("Completed", 2),
    ]


def test_an_attempt_after_a_crash_is_running_and_after_a_failure_retrying(
    taskq_app: taskq.App,
) -> None:
    @taskq_app.task
    def work(x: int) -> int:
        return x + 1

    fut = work.submit(1)
    broker = taskq_app.broker
    broker.consumer.ensure_group("default")
    [(_, eid, _, _)] = broker.consumer.read(["default"], "dead-worker", 1, None)
    assert broker.consumer.start("default", "dead-worker", [(eid, fut.run_id, 0, "")])[0][:2] == (
        1,
        1,
    )
    # The lease expired and another worker reclaimed the delivery (XAUTOCLAIM's effect).
    stream = taskq_app.keys.stream("default")
    broker.execute("XCLAIM", stream, "taskq", "healer", 0, eid, "JUSTID")
    assert broker.consumer.start("default", "healer", [(eid, fut.run_id, 5, "")])[0][:2] == (6, 2)
    assert _story(taskq_app, fut.run_id) == [
        ("Pending", 0),
        ("Running", 1),
        ("Crashed", 1),
        ("Running", 2),
    ]


def test_delayed_and_scheduled_submission(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    @taskq_app.task
    def echo(x: int) -> int:
        return x

    later = echo.submit(1, delay=timedelta(milliseconds=80))  # type: ignore[call-arg]
    typed = echo.with_options(delay=0.05).submit(2)
    at = echo.submit(3, scheduled_at=datetime.now(UTC) + timedelta(milliseconds=60))  # type: ignore[call-arg]
    bulk = echo.with_options(delay=0.03).map([4, 5])
    assert later.state.name == "Scheduled" and typed.state.name == "Scheduled"
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in (later, typed, at, *bulk)] == [1, 2, 3, 4, 5]
    events = taskq_app.broker.inspect.events("default")
    for fut in (later, typed, *bulk):
        record = taskq_app.broker.producer.run_record("default", fut.run_id)
        (due,) = [e["due"] for _, e in events if e["r"] == fut.run_id and e["s"] == "Scheduled"]
        assert int(record["t1"]) >= int(due) and "due" not in record  # Pending drops it
    story = [e.state for e in read_events(taskq_app.broker, "default") if e.run_id == later.run_id]
    assert story == ["Scheduled", "Pending", "Running", "Completed"]


def test_retry_deadline_caps_total_retry_time(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(retries=10, retry_delay_seconds=[0.01, 0.2], retry_deadline_seconds=0.1)
    def doomed() -> None:
        raise OSError("still down")

    fut = doomed.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=5)
    assert info.value.attempts == 2  # the 0.2 s retry would pass the 0.1 s deadline


def test_with_options_changes_retries_per_submission(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(retries=0)
    def fragile(key: str) -> None:
        calls[key] += 1
        raise OSError("nope")

    fragile.submit("plain")
    fragile.with_options(retries=2, retry_delay_seconds=[0.01]).submit("patient")
    burst_worker(taskq_app)
    assert calls == {"plain": 1, "patient": 3}
    with pytest.raises(taskq.ConfigurationError, match="cannot be changed per submission"):
        fragile.with_options(retry_condition_fn=lambda e: True).submit("x")


# -- the seed's example: a flaky HTTP fetch with retries=3, retry_delay_seconds=[2, 5, 15] --


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    failures_left: ClassVar[int] = 0
    hits: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        FlakyHandler.hits.append(time.monotonic())
        if FlakyHandler.failures_left > 0:
            FlakyHandler.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"name": "  Ada Lovelace ", "role": " analyst "}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FlakyHandler.failures_left, FlakyHandler.hits = 2, []
    yield f"http://127.0.0.1:{server.server_address[1]}/data"
    server.shutdown()
    thread.join()


def test_seed_example_flaky_fetch_retries_with_scaled_delays(
    flaky_server: str, taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    scale = 0.01  # [2, 5, 15] s -> [20, 50, 150] ms

    @taskq_app.task(retries=3, retry_delay_seconds=[2 * scale, 5 * scale, 15 * scale])
    def fetch_data(url: str) -> dict[str, str]:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    @taskq_app.task
    def transform(raw: dict[str, str]) -> dict[str, str]:
        return {k: v.strip() for k, v in raw.items()}

    fetched = fetch_data.submit(flaky_server)
    burst_worker(taskq_app)
    raw = fetched.result(timeout=5)
    assert fetched.state.attempt == 3 and len(FlakyHandler.hits) == 3
    gaps = [b - a for a, b in zip(FlakyHandler.hits, FlakyHandler.hits[1:], strict=False)]
    assert gaps[0] >= 2 * scale and gaps[1] >= 5 * scale
    got = [due - at for at, due in retry_events(taskq_app, fetched)]
    assert len(got) == 2 and 19 <= got[0] <= 20 and 49 <= got[1] <= 50
    cleaned = transform.submit(raw)
    burst_worker(taskq_app)
    assert cleaned.result(timeout=5) == {"name": "Ada Lovelace", "role": "analyst"}


def test_a_retry_with_no_delay_goes_straight_to_retrying(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    """As in Prefect: no AwaitingRetry stop; the next attempt runs at once on the same
    worker and delivery, and the record keeps each attempt's error and start."""
    calls: list[int] = []

    @taskq_app.task(retries=3)  # Prefect's default delay: 0
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise ValueError(f"attempt {len(calls)} fails")
        return x

    @taskq_app.task(retries=1)
    async def async_flaky() -> str:
        calls.append(0)
        if calls.count(0) == 1:
            raise taskq.Retry(delay=0)
        return "async ok"

    fut, afut = flaky.submit(5), async_flaky.submit()
    worker = burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == 5 and afut.result(timeout=5) == "async ok"
    assert _story(taskq_app, fut.run_id) == [
        ("Pending", 0),
        ("Running", 1),
        ("Retrying", 2),
        ("Retrying", 3),
        ("Completed", 3),
    ]
    assert _story(taskq_app, afut.run_id) == [
        ("Pending", 0),
        ("Running", 1),
        ("Retrying", 2),
        ("Completed", 2),
    ]
    retrying = [e for e in read_events(taskq_app.broker, "default") if e.run_id == fut.run_id][2]
    assert (retrying.error_type, retrying.error_message) == ("ValueError", "attempt 1 fails")
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert record["x1"] == "ValueError: attempt 1 fails"
    assert record["x2"] == "ValueError: attempt 2 fails"
    assert int(record["t1"]) <= int(record["t2"]) <= int(record["t3"])
    assert worker.processed == 2  # one delivery each: the retries ran in place
    assert taskq_app.broker.client.zcard(taskq_app.keys.delayed("default")) == 0


def test_a_retry_in_place_gets_a_fresh_time_limit(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @taskq_app.task(retries=1, timeout_seconds=1.0)
    def slowish() -> int:
        calls.append(1)
        time.sleep(0.6)  # each attempt within the limit, the two together past it
        if len(calls) == 1:
            raise RuntimeError("first attempt fails late")
        return len(calls)

    fut = slowish.submit()
    worker = burst_worker(taskq_app)
    assert fut.result(timeout=10) == 2
    assert worker.timed_out == 0
    assert [s for s, _ in _story(taskq_app, fut.run_id)][-2:] == ["Retrying", "Completed"]


def test_a_retry_in_place_respects_the_retry_deadline(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(retries=5, retry_deadline_seconds=0.2)
    def stubborn() -> None:
        time.sleep(0.3)
        raise RuntimeError("always")

    fut = stubborn.submit()
    burst_worker(taskq_app)
    state = fut.wait(timeout=10)
    assert state.name == "Failed" and state.attempt == 1  # a retry now is past the deadline


def test_a_flow_with_no_retry_delay_still_waits_in_the_delay_queue(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    """A flow's retry replays its body afresh through a new delivery (see README)."""
    tries: list[int] = []

    @taskq_app.flow(retries=1)
    def shaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("flow fails once")
        return "flow ok"

    fut = shaky.submit()
    burst_worker(taskq_app)
    assert fut.result(timeout=10) == "flow ok"
    assert [s for s, _ in _story(taskq_app, fut.run_id)] == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]


def test_a_stale_entry_of_a_running_run_is_dropped_not_taken_for_a_crash(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    """A second entry of a run that is running from another (left behind when a flow's
    child was reset and enqueued again) is acked and dropped; before, start.lua took it
    for a lost worker's delivery, recorded a crash and ran the run a second time."""
    calls: list[int] = []

    @taskq_app.task
    def once(x: int) -> int:
        calls.append(x)
        return x

    fut = once.submit(1)
    broker, stream = taskq_app.broker, taskq_app.keys.stream("default")
    broker.consumer.ensure_group("default")
    [(_, eid, fields, _)] = broker.consumer.read(["default"], "busy-worker", 1, None)
    assert broker.consumer.start("default", "busy-worker", [(eid, fut.run_id, 0, "")])[0][:2] == (
        1,
        1,
    )
    stale = broker.execute("XADD", stream, "*", "m", fields[b"m"], "r", fut.run_id)
    burst_worker(taskq_app)
    assert calls == []  # not run again: busy-worker still runs it
    record = broker.producer.run_record("default", fut.run_id)
    assert (record["s"], record["a"], record["e"]) == ("Running", "1", eid.decode())
    assert broker.execute("XPENDING", stream, "taskq", stale, stale, 1) == []  # acked
    assert [s for s, _ in _story(taskq_app, fut.run_id)] == ["Pending", "Running"]
