"""Prefect's cache policies on real workers: each policy's hits and misses (issue 14)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import taskq
from taskq.cache import flow_parameters_digest
from taskq.events import read_events
from taskq.testing import BurstWorker


def _states(app: taskq.App, run_ids: list[str]) -> list[str]:
    return [app.future(r).state.name for r in run_ids]


def test_run_id_caches_within_a_flow_run_only(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @taskq_app.task(cache_policy=taskq.RUN_ID)
    def stamp(x: int) -> int:
        calls.append(x)
        return len(calls)

    @taskq_app.flow
    def twice() -> list[int]:
        first = stamp.submit(1).result()
        return [first, stamp.submit(2).result()]  # the same flow run: the first's value

    a = twice.submit()
    burst_worker(taskq_app)
    b = twice.submit()
    burst_worker(taskq_app)
    assert a.result() == [1, 1] and b.result() == [2, 2]
    assert _states(taskq_app, [f"{a.run_id}.1", f"{a.run_id}.2"]) == ["Completed", "Cached"]
    assert _states(taskq_app, [f"{b.run_id}.1", f"{b.run_id}.2"]) == ["Completed", "Cached"]
    # Top-level runs key on their own run ids: two submissions never share an entry.
    c, d = stamp.submit(1), stamp.submit(1)
    burst_worker(taskq_app)
    assert sorted([c.result(), d.result()]) == [3, 4]
    assert calls == [1, 1, 1, 1]


def test_flow_parameters_cache_children_of_flows_with_the_same_parameters(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[str] = []

    @taskq_app.task(cache_policy=taskq.FLOW_PARAMETERS)
    def report(note: str) -> str:
        calls.append(note)
        return f"{note}#{len(calls)}"

    @taskq_app.flow
    def daily(day: str, region: str = "eu") -> str:
        return report(f"{day}/{region}")

    runs = [daily.submit("mon")]
    burst_worker(taskq_app)
    runs += [daily.submit(day="mon", region="eu"), daily.submit("tue")]
    burst_worker(taskq_app)
    assert [r.result() for r in runs] == ["mon/eu#1", "mon/eu#1", "tue/eu#2"]
    assert _states(taskq_app, [f"{r.run_id}.1" for r in runs]) == [
        "Completed",
        "Cached",
        "Completed",
    ]
    # A top-level run has no flow parameters: no key, so it always runs.
    top = [report.submit("x"), report.submit("x")]
    burst_worker(taskq_app)
    assert [f.state.name for f in top] == ["Completed", "Completed"]
    assert calls == ["mon/eu", "tue/eu", "x", "x"]


class Seen(taskq.CachePolicy):
    """Records the flow parameters each run's key is computed with; never caches."""

    def __init__(self, reads: bool) -> None:
        super().__init__()
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "seen", [])

    def uses_flow_parameters(self) -> bool:
        return bool(self.reads)  # type: ignore[attr-defined]

    def compute_key(
        self,
        task_ctx: taskq.TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        self.seen.append(flow_parameters)  # type: ignore[attr-defined]
        return None


def test_flow_parameters_reach_only_children_whose_policy_reads_them(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    reads, ignores = Seen(True), Seen(False)

    @taskq_app.task(cache_policy=reads)
    def reader(x: int) -> int:
        return x

    @taskq_app.task(cache_policy=ignores)
    def other(x: int) -> int:
        return x

    @taskq_app.flow
    def both(day: str) -> int:
        return reader(1) + other(1)

    @taskq_app.flow
    def bare() -> int:
        return reader(1)

    runs = [both.submit("mon"), both.submit("mon"), both.submit("tue"), bare.submit()]
    burst_worker(taskq_app)
    assert [r.result() for r in runs] == [2, 2, 2, 1]
    mon = flow_parameters_digest(both.fn, ["mon"], {}, "")
    tue = flow_parameters_digest(both.fn, ["tue"], {}, "")
    assert mon is not None and tue is not None and mon != tue
    assert Counter(reads.seen) == {mon.hex(): 2, tue.hex(): 1, None: 1}  # type: ignore[attr-defined]
    assert ignores.seen == [None, None, None]  # type: ignore[attr-defined]


def test_inputs_exclude_and_subtraction(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(cache_policy=taskq.INPUTS - "client")
    def fetch(url: str, client: str) -> str:
        calls["fetch"] += 1
        return f"{url} via {client}"

    @taskq_app.task(cache_policy=taskq.Inputs(exclude=["client"]) + taskq.TASK_SOURCE)
    def fetch2(url: str, client: str = "default") -> str:
        calls["fetch2"] += 1
        return f"{url} via {client}"

    first = [fetch.submit("a", "c1"), fetch2.submit("a", client="c1")]
    burst_worker(taskq_app)
    again = [fetch.submit("a", client="c2"), fetch2.submit("a"), fetch.submit("b", "c1")]
    burst_worker(taskq_app)
    assert [f.result() for f in first + again] == ["a via c1"] * 4 + ["b via c1"]
    assert [f.state.name for f in again] == ["Cached", "Cached", "Completed"]
    assert calls == {"fetch": 2, "fetch2": 1}


class Parity(taskq.CachePolicy):
    """A custom policy: one entry for even x, one for odd; none for negative x."""

    def compute_key(
        self,
        task_ctx: taskq.TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: str | None,
        **kwargs: Any,
    ) -> str | None:
        x = inputs["x"]
        return None if x < 0 else f"{task_ctx.task.name}:{x % 2}"


def test_custom_policy(taskq_app: taskq.App, burst_worker: BurstWorker) -> None:
    calls: list[int] = []

    @taskq_app.task(cache_policy=Parity())
    def echo(x: int) -> int:
        calls.append(x)
        return x

    first = [echo.submit(2), echo.submit(-1)]
    burst_worker(taskq_app)
    again = [echo.submit(4), echo.submit(3), echo.submit(-1)]
    burst_worker(taskq_app)
    assert [f.result() for f in first + again] == [2, -1, 2, 3, -1]
    assert [f.state.name for f in again] == ["Cached", "Completed", "Completed"]
    assert sorted(calls) == [-1, -1, 2, 3]


def test_no_cache_plus_inputs_caches_and_no_cache_alone_does_not(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: Counter[str] = Counter()

    @taskq_app.task(cache_policy=taskq.NO_CACHE + taskq.INPUTS)
    def cached(x: int) -> int:
        calls["cached"] += 1
        return x

    @taskq_app.task(cache_policy=taskq.NO_CACHE)
    def uncached(x: int) -> int:
        calls["uncached"] += 1
        return x

    futures = [cached.submit(1), uncached.submit(1)]
    burst_worker(taskq_app)
    futures += [cached.submit(1), uncached.submit(1)]
    burst_worker(taskq_app)
    assert [f.state.name for f in futures] == ["Completed", "Completed", "Cached", "Completed"]
    assert calls == {"cached": 1, "uncached": 2}


def test_conflicting_isolation_levels_are_refused_and_a_sum_keeps_its_parts_level(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    serializable = taskq.INPUTS.configure(isolation_level="SERIALIZABLE")
    with pytest.raises(taskq.ConfigurationError, match="different isolation levels"):
        taskq_app.task(
            cache_policy=serializable
            + taskq.TASK_SOURCE.configure(isolation_level="READ_COMMITTED")
        )(lambda x: x)
    calls: list[int] = []

    @taskq_app.task(cache_policy=serializable + taskq.TASK_SOURCE)
    def expensive(x: int) -> int:
        calls.append(x)
        # Hold the key until the other two runs have started (they then wait on it).
        started, after = 0, "0-0"
        while started < 3:
            events = read_events(taskq_app.broker, "default", after, 100, block=5)
            assert events, "the other runs never started"
            after = events[-1].id
            started += sum(e.state == "Running" for e in events)
        return x * 10

    futures = expensive.map([7, 7, 7])
    burst_worker(taskq_app, concurrency=3)
    assert [f.result() for f in futures] == [70, 70, 70]
    assert calls == [7]
    assert sorted(f.state.name for f in futures) == ["Cached", "Cached", "Completed"]


def test_a_renamed_function_with_the_same_body_hits_the_cache(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[str] = []

    # Version 1 of a task, then the same body under a new function (and task) name.
    @taskq_app.task(cache_policy=taskq.INPUTS + taskq.TASK_SOURCE)
    def area(w: int, h: int) -> int:
        calls.append("run")
        return w * h

    @taskq_app.task(cache_policy=taskq.INPUTS + taskq.TASK_SOURCE)
    def rectangle_area(w: int, h: int) -> int:
        calls.append("run")
        return w * h

    @taskq_app.task(cache_key_fn=taskq.task_input_hash)
    def perimeter(w: int, h: int) -> int:
        calls.append("run")
        return 2 * (w + h)

    @taskq_app.task(cache_key_fn=taskq.task_input_hash)
    def rectangle_perimeter(w: int, h: int) -> int:
        calls.append("run")
        return 2 * (w + h)

    @taskq_app.task(cache_policy=taskq.INPUTS + taskq.TASK_SOURCE)
    def changed_area(w: int, h: int) -> int:
        calls.append("run")
        return w * h + 0  # another body: its own entry

    first = [area.submit(2, 3), perimeter.submit(2, 3)]
    burst_worker(taskq_app)
    renamed = [rectangle_area.submit(2, 3), rectangle_perimeter.submit(2, 3)]
    renamed += [changed_area.submit(2, 3)]
    burst_worker(taskq_app)
    assert [f.result() for f in first + renamed] == [6, 10, 6, 10, 6]
    assert [f.state.name for f in renamed] == ["Cached", "Cached", "Completed"]
    assert len(calls) == 3


def test_inputs_alone_is_scoped_to_the_task_name(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[str] = []

    @taskq_app.task(cache_policy=taskq.INPUTS)
    def left(x: int) -> int:
        calls.append("left")
        return x

    @taskq_app.task(cache_policy=taskq.INPUTS)
    def right(x: int) -> int:
        calls.append("left")
        return x

    a = left.submit(1)
    burst_worker(taskq_app)
    b = right.submit(1)
    burst_worker(taskq_app)
    assert (a.state.name, b.state.name) == ("Completed", "Completed")
    assert len(calls) == 2
