"""Prefect's result options: ``persist_result``, ``result_storage_key``, ``description``
and ``version`` (the last two shown by ``taskq tasks``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import taskq
from taskq.message import decode_outcome
from taskq.testing import BurstWorker


def test_persist_result_false_keeps_the_end_but_not_the_value(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(persist_result=False)
    def fire(n: int) -> object:
        return object() if n else "x" * 10_000  # unstorable, or large: neither is kept

    @taskq_app.task
    def normal() -> str:
        return "kept"

    a, b = fire.submit(1), fire.submit(0)
    c = normal.with_options(persist_result=False).submit()
    d = normal.submit()
    burst_worker(taskq_app)
    for fut in (a, b, c):
        state = fut.wait(timeout=5)
        assert state.name == "Completed"
        with pytest.raises(taskq.ResultNotPersistedError, match="persist_result=False"):
            fut.result(timeout=5)
        with pytest.raises(taskq.ResultNotPersistedError):
            state.result()
        raw = taskq_app.broker.producer.peek_results(fut.queue, [fut.run_id])[0]
        assert raw is not None and len(raw) < 40  # no value in it
        outcome = decode_outcome(raw)
        assert outcome.kept is False and outcome.value is None
    assert d.result(timeout=5) == "kept"


def test_a_failed_run_without_persisted_result_still_raises_its_error(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(persist_result=False)
    def bad() -> None:
        raise ValueError("still reported")

    fut = bad.submit()
    burst_worker(taskq_app)
    with pytest.raises(taskq.TaskFailedError, match="still reported"):
        fut.result(timeout=5)


def test_a_flow_child_without_persisted_result_still_gives_its_flow_the_value(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(persist_result=False)
    def part(x: int) -> int:
        return x * 3

    @taskq_app.flow
    def whole(x: int) -> int:
        return part(x) + 1

    fut = whole.submit(4)
    burst_worker(taskq_app)
    assert fut.result(timeout=10) == 13


def test_persist_result_false_refuses_options_that_need_the_value(
    taskq_app: taskq.App,
) -> None:
    with pytest.raises(taskq.ConfigurationError, match="nothing to cache"):

        @taskq_app.task(persist_result=False, cache_policy=taskq.INPUTS)
        def cached() -> None: ...

    with pytest.raises(taskq.ConfigurationError, match="result_storage_key"):

        @taskq_app.task(persist_result=False, result_storage_key="k")
        def named() -> None: ...

    with pytest.raises(taskq.ConfigurationError, match="persist_result must be True or False"):

        @taskq_app.task(persist_result="no")  # type: ignore[arg-type]
        def odd() -> None: ...


def test_result_storage_key_stores_the_value_by_name(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(result_storage_key="square-{parameters[x]}", result_ttl=600)
    def square(x: int) -> int:
        return x * x

    @taskq_app.task(result_storage_key="{task_run.task_name}-{flow_run.id}")
    def inner() -> str:
        return "from a flow"

    @taskq_app.flow
    def outer() -> str:
        return inner()

    runs = [square.submit(3), square.submit(x=5)]
    flow = outer.submit()
    burst_worker(taskq_app)
    assert [f.result(timeout=5) for f in runs] == [9, 25]
    assert square.stored_result("square-3") == 9
    assert square.stored_result("square-5") == 25
    key = taskq_app.broker.keys.stored("default", "square-3")
    assert 0 < int(taskq_app.broker.execute("PTTL", key)) <= 600_000
    assert flow.result(timeout=10) == "from a flow"
    assert inner.stored_result(f"{inner.name}-{flow.run_id}") == "from a flow"
    with pytest.raises(taskq.ResultNotFoundError, match="square-4"):
        square.stored_result("square-4")


def test_a_storage_key_that_cannot_be_filled_fails_the_run_once(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(result_storage_key="v-{parameters[missing]}", retries=3)
    def value(x: int) -> int:
        return x

    fut = value.submit(1)
    burst_worker(taskq_app)
    state = fut.wait(timeout=5)
    assert state.name == "Failed" and state.attempt == 1  # deterministic: not retried
    with pytest.raises(taskq.TaskFailedError, match="cannot be filled"):
        fut.result(timeout=5)


def test_a_storage_key_template_with_unknown_fields_is_refused(taskq_app: taskq.App) -> None:
    with pytest.raises(taskq.ConfigurationError, match=r"uses \{x\}"):

        @taskq_app.task(result_storage_key="k-{x}")
        def t(x: int) -> int:
            return x


def test_description_and_version_are_shown_by_taskq_tasks(tmp_path: Path) -> None:
    (tmp_path / "described.py").write_text(
        textwrap.dedent(
            '''
            import taskq

            app = taskq.App()

            @app.task(version="2.1", persist_result=False)
            def ingest(x: int) -> None:
                """Load one batch.

                More detail here.
                """

            @app.flow(description="Nightly rollup", result_storage_key="rollup-{parameters[day]}")
            def rollup(day: str) -> int:
                return 1
            '''
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "taskq", "tasks", "described:app"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("described.ingest  task  queue=default  retries=0  version=2.1")
    assert "persist_result=False" in lines[0]
    assert lines[1] == "  Load one batch."
    assert lines[2].startswith("described.rollup  flow  queue=default")
    assert "result_storage_key='rollup-{parameters[day]}'" in lines[2]
    assert lines[3] == "  Nightly rollup"


def test_a_task_describes_itself(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def documented() -> None:
        """What it does."""

    @taskq_app.task(description="Given", version="7")
    def given() -> None:
        """Ignored docstring."""

    assert documented.description == "What it does." and documented.version is None
    assert given.description == "Given" and given.version == "7"
