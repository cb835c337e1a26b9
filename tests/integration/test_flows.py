"""Flows: fan-out and fan-in through Redis keys, suspension, replay, nesting."""

from __future__ import annotations

from collections import Counter

import pytest

import taskq
from taskq.events import read_events
from taskq.testing import BurstWorker


def test_seed_pipeline_as_a_flow(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(retries=3, retry_delay_seconds=[0.02, 0.05, 0.15])
    def fetch_data(url: str) -> dict[str, str]:
        calls[url] += 1
        if url.endswith("flaky") and calls[url] < 3:
            raise ConnectionError("503 from upstream")
        return {"url": f"  {url}  ", "body": " payload "}

    @taskq_app.task
    def transform(raw: dict[str, str]) -> dict[str, str]:
        return {k: v.strip() for k, v in raw.items()}

    loaded: list[dict[str, str]] = []

    @taskq_app.task
    def load(rows: list[dict[str, str]]) -> int:
        loaded.extend(rows)
        return len(rows)

    @taskq_app.flow(retries=1)
    def pipeline(urls: list[str]) -> int:
        raws = fetch_data.map(urls)
        cleaned = [transform(r) for r in raws]
        return load(cleaned)

    fut = pipeline.submit(["https://a", "https://b/flaky", "https://c"])
    burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == 3
    assert calls == {"https://a": 1, "https://b/flaky": 3, "https://c": 1}
    assert [r["url"] for r in loaded] == ["https://a", "https://b/flaky", "https://c"]
    assert fut.state.name == "Completed"


def test_direct_call_runs_the_body_here_with_children_on_workers(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    import threading

    @taskq_app.task
    def double(x: int) -> int:
        return 2 * x

    @taskq_app.flow
    def doubled_sum(xs: list[int]) -> int:
        return sum(f.result() for f in double.map(xs))

    # The body blocks in this thread; a burst worker drains the children meanwhile.
    out: list[int] = []
    body = threading.Thread(target=lambda: out.append(doubled_sum([1, 2, 3])))
    body.start()
    worker = taskq.Worker(taskq_app, concurrency=2)
    runner = threading.Thread(target=worker.run)
    runner.start()
    body.join(timeout=30)
    worker.stop()
    runner.join(timeout=30)
    assert out == [12]


def test_fan_out_10000_children_on_one_worker_with_one_slot(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def square(x: int) -> int:
        return x * x

    @taskq_app.flow
    def fan(n: int) -> int:
        futures = square.map(range(n))
        taskq.wait(futures)
        return sum(f.result() for f in futures)

    fut = fan.submit(10_000)
    burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == sum(x * x for x in range(10_000))
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert record["resumes"] == "1"  # one suspension, one resume: set fan-in, not per child
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)


def test_nested_flows_three_deep_on_one_slot(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def leaf(x: int) -> int:
        return x + 1

    @taskq_app.flow
    def inner(x: int) -> int:
        return sum(f.result() for f in leaf.map([x, x * 10]))

    @taskq_app.flow
    def middle(x: int) -> int:
        return inner(x) + inner(x + 1)

    @taskq_app.flow
    def outer(xs: list[int]) -> list[int]:
        futures = [middle.submit(x) for x in xs]
        return [f.result() for f in futures]

    fut = outer.submit([1, 2])
    burst_worker(taskq_app, concurrency=1)
    expected = [(2 + 11) + (3 + 21), (3 + 21) + (4 + 31)]
    assert fut.result(timeout=5) == expected
    children = [e.run_id for e in read_events(taskq_app.broker, "default") if e.state == "Pending"]
    assert f"{fut.run_id}.1.1.1" in children  # outer -> middle -> inner -> leaf ids nest


def test_child_failure_raises_child_failed_error_where_read_and_may_be_caught(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def check(x: int) -> int:
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x

    @taskq_app.flow
    def tolerant(xs: list[int]) -> list[object]:
        out: list[object] = []
        for f in check.map(xs):
            try:
                out.append(f.result())
            except taskq.ChildFailedError as exc:
                out.append((exc.child_id, exc.error.type, exc.error.message))
        return out

    @taskq_app.flow
    def strict(xs: list[int]) -> int:
        return sum(check(x) for x in xs)

    ok = tolerant.submit([1, -2, 3])
    bad = strict.submit([1, -5])
    burst_worker(taskq_app, concurrency=1)
    assert ok.result(timeout=5) == [1, [f"{ok.run_id}.2", "ValueError", "negative: -2"], 3]
    with pytest.raises(taskq.TaskFailedError) as info:
        bad.result(timeout=5)
    assert info.value.error.type == "taskq.errors.ChildFailedError"
    assert "negative: -5" in info.value.error.message


def test_flow_retry_reruns_only_the_failed_child(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task
    def step(name: str) -> str:
        calls[name] += 1
        if name == "b" and calls[name] == 1:
            raise RuntimeError("b fails the first time")
        return name.upper()

    @taskq_app.flow(retries=1, retry_delay_seconds=0.01)
    def abc() -> str:
        return "".join(f.result() for f in step.map(["a", "b", "c"]))

    fut = abc.submit()
    burst_worker(taskq_app, concurrency=2)
    assert fut.result(timeout=5) == "ABC"
    assert calls == {"a": 1, "b": 2, "c": 1}
    assert fut.state.attempt == 2


def test_as_completed_and_wait_inside_a_flow(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def ident(x: int) -> int:
        return x

    @taskq_app.flow
    def gather(n: int) -> list[int]:
        futures = ident.map(range(n))
        seen = [f.result() for f in taskq.as_completed(futures)]
        done = taskq.wait(futures)
        assert len(done.done) == n and not done.not_done
        return sorted(seen)

    fut = gather.submit(25)
    burst_worker(taskq_app, concurrency=3)
    assert fut.result(timeout=5) == list(range(25))


def test_flow_events_and_children_tree_in_taskq_run(
    taskq_app: taskq.App, burst_worker: BurstWorker, redis_url: str
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    @taskq_app.task
    def part(x: int) -> int:
        return x

    @taskq_app.flow
    def whole() -> int:
        return sum(f.result() for f in part.map([1, 2, 3]))

    fut = whole.submit()
    burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == 6
    story = [e.state for e in read_events(taskq_app.broker, "default") if e.run_id == fut.run_id]
    assert story == ["Pending", "Running", "AwaitingChildren", "Resuming", "Running", "Completed"]
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
    assert "children: 3" in out.stdout
    for i in (1, 2, 3):
        assert f"{fut.run_id}.{i}  Completed" in out.stdout


def test_a_child_ends_before_its_flow_resumes_in_the_events(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    # Children on the flow's queue end in one script with the flow's notification, so
    # both events land in one stream, whose order must be causal. (A child on another
    # queue is finished, then notifies: two calls, ordered by construction.)
    @taskq_app.task
    def part(x: int) -> int:
        return x

    @taskq_app.flow(inline_wait_seconds=0)
    def whole() -> int:
        return part(1) + part(2)

    fut = whole.submit()
    burst_worker(taskq_app, concurrency=1)
    assert fut.result(timeout=5) == 3
    story = [
        (e.run_id, e.state)
        for e in read_events(taskq_app.broker, "default")
        if e.run_id.startswith(fut.run_id)
    ]
    resumes = [i for i, (r, s) in enumerate(story) if r == fut.run_id and s == "Resuming"]
    assert len(resumes) == 2, story
    # Each Resuming comes after the Completed of the child whose end woke the flow.
    for child, resumed in zip((f"{fut.run_id}.1", f"{fut.run_id}.2"), resumes, strict=True):
        assert story.index((child, "Completed")) == resumed - 1, story


#: Flipped between a flow's executions by the non-determinism tests.
EXECUTIONS: Counter[str] = Counter()


def test_a_replay_calling_another_child_fails_the_flow_naming_the_child(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task
    def a(x: int) -> str:
        calls["a"] += 1
        return f"a{x}"

    @taskq_app.task
    def b(x: int) -> str:
        calls["b"] += 1
        return f"b{x}"

    @taskq_app.flow(retries=2, inline_wait_seconds=0)
    def fickle() -> list[str]:
        EXECUTIONS["fickle"] += 1
        step = a if EXECUTIONS["fickle"] == 1 else b  # not deterministic
        return [step.submit(1).result()]

    @taskq_app.flow(inline_wait_seconds=0)
    def swallowing() -> str:
        EXECUTIONS["swallowing"] += 1
        x = 1 if EXECUTIONS["swallowing"] == 1 else 2  # same task, other arguments
        try:
            return a.submit(x).result()
        except Exception:  # the body catches it: the flow fails all the same
            return "swallowed"

    EXECUTIONS.clear()
    fut, swallowed = fickle.submit(), swallowing.submit()
    burst_worker(taskq_app, concurrency=1)
    with pytest.raises(taskq.TaskFailedError) as info:
        fut.result(timeout=5)
    error = info.value.error
    assert error.type == "taskq.errors.NonDeterministicFlowError"
    child = f"{fut.run_id}.1"
    assert f"child {child} was a call of {a.name}" in error.message
    assert f"now {b.name} is called in its place" in error.message
    assert info.value.attempts == 1  # not retried: a replay would do the same
    assert EXECUTIONS["fickle"] == 2 and calls["b"] == 0  # b never ran, a's result unused
    with pytest.raises(taskq.TaskFailedError) as info:
        swallowed.result(timeout=5)
    assert info.value.error.type == "taskq.errors.NonDeterministicFlowError"
    assert f"now {a.name} is called with other arguments" in info.value.error.message


def test_a_child_still_running_at_replay_is_checked_when_it_ends(
    taskq_app: taskq.App,
) -> None:
    from taskq.flows.run import FlowRun, call_digest
    from taskq.message import encode_outcome

    @taskq_app.task
    def a(x: int) -> int:
        return x

    @taskq_app.task
    def b(x: int) -> int:
        return x

    @taskq_app.flow
    def outer() -> None: ...

    runner = FlowRun(taskq_app, outer, "flow-1", "default", durable=True)
    runner.load()
    (child,) = runner.map_children(b, [(1,)], {}, "")  # the replay now calls b(1)
    # ... while the child enqueued by an earlier execution, a(1), ends only now.
    recorded = encode_outcome("Completed", 1, 1, call=(a.name, call_digest(a.name, [1], {})))
    taskq_app.broker.flows.notify("default", "flow-1", child.run_id, recorded)
    with pytest.raises(taskq.NonDeterministicFlowError) as info:
        child.result()
    assert (info.value.child_id, info.value.recorded_task) == ("flow-1.1", a.name)
    assert runner.violation is info.value
