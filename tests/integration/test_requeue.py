"""Requeue and purge of dead-lettered entries (taskq.deadletters, requeue.lua)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import taskq
from taskq import deadletters
from taskq.protocol import RecordField, RequeueReply
from taskq.testing import BurstWorker


@pytest.fixture
def producer(redis_url: str, taskq_app: taskq.App) -> Iterator[taskq.App]:
    """An app on the test's prefix that knows the tasks ``taskq_app``'s worker does not."""
    app = taskq.App(redis_url, prefix=taskq_app.settings.prefix)
    taskq_app.configure(unknown_task_grace=0)  # its worker dead-letters them at once
    yield app
    app.close()


def _dead_letter_one(app: taskq.App, future: taskq.Future[object], reason: str) -> None:
    """What a worker does with a poison delivery, after one attempt ran: start it, then
    dead-letter it (the run ends Failed, dead-lettered, attempt 1)."""
    broker = app.broker
    broker.consumer.ensure_group("default")
    [(queue, eid, fields, level)] = broker.consumer.read(["default"], "gone-worker", 1, None)
    broker.consumer.start(queue, "gone-worker", [(eid, future.run_id, 0, "")])
    broker.consumer.dead_letter(queue, eid, fields, reason, future.run_id, level)


def test_a_requeued_dead_lettered_run_completes_as_its_next_attempt(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(priority=3)
    def double(x: int) -> int:
        return 2 * x

    fut = double.submit(21)
    _dead_letter_one(taskq_app, fut, "delivered 6 times, more than max_deliveries=5")
    err = fut.result(timeout=5, raise_on_failure=False)
    assert isinstance(err, taskq.TaskFailedError) and err.error.type == "DeadLettered"
    [entry] = deadletters.dead_entries(taskq_app.broker, "default")
    assert (entry.run_id, entry.task, entry.level, entry.payload_ok) == (
        fut.run_id,
        double.name,
        3,
        True,
    )
    assert "max_deliveries" in entry.reason
    assert deadletters.dead_entry(taskq_app.broker, "default", entry.entry_id) == entry
    reports: list[tuple[str, RequeueReply, str]] = []
    handled: list[int] = []
    moved = deadletters.requeue(
        taskq_app.broker,
        "default",
        [entry.entry_id],
        progress=handled.append,
        report=lambda e, code, state: reports.append((e.entry_id, code, state)),
    )
    assert moved == 1 and handled == [1]
    assert reports == [(entry.entry_id, RequeueReply.REOPENED, "")]
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert record[RecordField.STATE] == "Pending" and RecordField.DEAD not in record
    assert taskq_app.broker.execute("TTL", taskq_app.keys.run("default", fut.run_id)) == -1
    assert deadletters.dead_entries(taskq_app.broker, "default") == []
    assert taskq_app.broker.inspect.queue_counts(["default"])[0].waiting == 1
    waiter = double.future(fut.run_id)  # `fut` keeps the outcome it already returned
    assert waiter.state.name == "Pending"
    burst_worker(taskq_app)
    assert waiter.result(timeout=5) == 42
    assert waiter.state.name == "Completed" and waiter.state.attempt == 2
    # Back on its level: the entry went to priority 3's stream.
    record = taskq_app.broker.producer.run_record("default", fut.run_id)
    assert record[RecordField.ATTEMPT] == "2"
    assert deadletters.requeue(taskq_app.broker, "default", [entry.entry_id]) == 0  # gone


def test_requeue_and_purge_by_task_and_by_reason(
    taskq_app: taskq.App, producer: taskq.App, burst_worker: BurstWorker
) -> None:
    @producer.task(name="jobs.alpha")
    def alpha(x: int) -> int:
        return x + 1

    @producer.task(name="jobs.beta")
    def beta() -> str:
        return "b"

    alphas, betas = alpha.map([1, 2]), [beta.submit(), beta.submit()]
    burst_worker(taskq_app, ["default"])  # knows neither: all four dead-lettered
    broker = taskq_app.broker
    dead = deadletters.dead_entries(broker, "default")
    assert sorted(e.task or "" for e in dead) == ["jobs.alpha"] * 2 + ["jobs.beta"] * 2
    assert len(deadletters.dead_entries(broker, "default", task="jobs.beta")) == 2
    assert len(deadletters.dead_entries(broker, "default", reason="NO TASK NAMED 'jobs.a")) == 2
    assert len(deadletters.dead_entries(broker, "default", 1)) == 1

    assert deadletters.requeue(broker, "default", task="jobs.alpha") == 2
    assert {e.task for e in deadletters.dead_entries(broker, "default")} == {"jobs.beta"}

    @taskq_app.task(name="jobs.alpha")
    def alpha_here(x: int) -> int:
        return x + 1

    burst_worker(taskq_app, ["default"])
    assert [f.result(timeout=5) for f in alphas] == [2, 3]

    # One beta entry's run completed meanwhile (a duplicate delivery, say): its entry is
    # only removed; the other goes back, and purge takes what came back dead.
    other = next(e for e in deadletters.dead_entries(broker, "default") if e.run_id)
    broker.execute("HSET", taskq_app.keys.run("default", other.run_id or ""), "s", "Completed")
    states: list[tuple[RequeueReply, str]] = []
    moved = deadletters.requeue(
        broker, "default", reason="jobs.beta", report=lambda e, c, s: states.append((c, s))
    )
    assert moved == 1
    assert sorted(states) == [(RequeueReply.REOPENED, ""), (RequeueReply.ENDED, "Completed")]
    burst_worker(taskq_app, ["default"])  # still unknown here: dead again
    [again] = deadletters.dead_entries(broker, "default")
    assert again.task == "jobs.beta"
    assert deadletters.purge(broker, "default", task="jobs.alpha") == 0
    assert deadletters.purge(broker, "default", [again.entry_id]) == 1
    assert deadletters.dead_entries(broker, "default") == []
    assert len(betas) == 2


def test_requeue_of_an_entry_with_no_known_run_puts_it_back(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def noop() -> None:
        pass

    broker = taskq_app.broker
    broker.client.xadd(taskq_app.keys.stream("default"), {"m": b"\xc1\xc1 not msgpack"})
    burst_worker(taskq_app)
    [entry] = deadletters.dead_entries(broker, "default")
    assert (entry.run_id, entry.task, entry.payload_ok) == (None, None, False)
    reports: list[RequeueReply] = []
    assert deadletters.requeue(broker, "default", report=lambda e, c, s: reports.append(c)) == 1
    assert reports == [RequeueReply.ADDED]
    assert broker.execute("XLEN", taskq_app.keys.stream("default")) == 1
    burst_worker(taskq_app)  # still undecodable: dead again, with the same reason
    [back] = deadletters.dead_entries(broker, "default")
    assert back.reason == entry.reason and back.entry_id != entry.entry_id


def test_requeue_of_a_run_whose_record_expired_runs_it_afresh(
    taskq_app: taskq.App, producer: taskq.App, burst_worker: BurstWorker
) -> None:
    @producer.task(name="jobs.gamma")
    def gamma() -> int:
        return 7

    fut = gamma.submit()
    burst_worker(taskq_app, ["default"])
    # Its record expired (result_ttl after the dead letter; a result left of it goes too).
    taskq_app.broker.execute("DEL", taskq_app.keys.run("default", fut.run_id))
    assert deadletters.requeue(taskq_app.broker, "default") == 1
    assert fut.state.name == "Pending"

    @taskq_app.task(name="jobs.gamma")
    def gamma_here() -> int:
        return 7

    burst_worker(taskq_app, ["default"])
    assert fut.result(timeout=5) == 7
