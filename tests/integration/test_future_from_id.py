"""A Future back from a stored run id: ``app.future(run_id)`` and ``task.future(run_id)``."""

from __future__ import annotations

import pytest

import taskq
from taskq.testing import BurstWorker


def test_a_stored_run_id_gives_back_its_future_in_another_app(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    @taskq_app.task(queue="emails")
    def send(to: str) -> str:
        return f"sent to {to}"

    stored = [add.submit(1, 2).run_id, send.submit("ada").run_id]
    burst_worker(taskq_app)
    # Another process: a fresh App on the same Redis and prefix, knowing only the ids.
    other = taskq.App(taskq_app.settings.redis_url, prefix=taskq_app.settings.prefix)
    try:
        by_app = [other.future(rid) for rid in stored]
        assert [f.queue for f in by_app] == ["default", "emails"]  # found without a hint
        assert [f.result(timeout=5) for f in by_app] == [3, "sent to ada"]
        assert by_app[1].state.name == "Completed"
        assert other.future(stored[1], queue="emails").result(timeout=5) == "sent to ada"
        typed = send.future(stored[1])
        assert (typed.queue, typed.task_name, typed.run_id) == ("emails", send.name, stored[1])
        assert typed.result(timeout=5) == "sent to ada"
    finally:
        other.close()


def test_a_pending_run_can_be_waited_for_from_its_id(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def square(x: int) -> int:
        return x * x

    rid = square.submit(9).run_id
    again = taskq_app.future(rid)
    assert again.state.name == "Pending" and not again.done()
    burst_worker(taskq_app)
    assert [f.result() for f in taskq.as_completed([again], timeout=5)] == [81]


def test_an_unknown_run_id_gives_a_future_in_state_unknown(taskq_app: taskq.App) -> None:
    @taskq_app.task
    def noop() -> None:
        return None

    for fut in (taskq_app.future("no-such-run"), noop.future("no-such-run")):
        assert fut.queue == "default"
        assert fut.state.name == "Unknown"
        assert not fut.done()
        with pytest.raises(taskq.ResultTimeoutError):
            fut.result(timeout=0.05)


@pytest.mark.parametrize("bad", ["", "a*", "x y", "{q}", "a" * 257])
def test_invalid_run_ids_and_queues_are_refused(taskq_app: taskq.App, bad: str) -> None:
    @taskq_app.task
    def noop() -> None:
        return None

    with pytest.raises(taskq.ConfigurationError, match="invalid run id"):
        taskq_app.future(bad)
    with pytest.raises(taskq.ConfigurationError, match="invalid run id"):
        noop.future(bad)
    with pytest.raises(taskq.ConfigurationError, match="invalid queue name"):
        taskq_app.future("abc", queue="bad queue")
