"""Malformed stream entries go to the dead-letter stream with a reason; valid work goes on."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import msgpack
import pytest

import taskq
from taskq import admission
from taskq.admission import Admission
from taskq.keys import GROUP
from taskq.message import Message, decode_outcome, encode_message, new_run_id
from taskq.testing import BurstWorker


def test_malformed_entries_are_dead_lettered_and_valid_tasks_complete(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def inc(x: int) -> int:
        return x + 1

    taskq_app.configure(max_message_bytes=4096)
    client, stream = taskq_app.broker.client, taskq_app.keys.stream("default")
    ghost = encode_message(Message("ghost-run", "no.such.task", [], {}))
    valid = encode_message(Message("x", inc.name, [1], {}))
    bad_entries = {
        "not msgpack": {"m": b"\xc1\xc1 this is not msgpack"},
        "truncated": {"m": valid[:-4]},
        "unknown task": {"m": ghost},
        "oversize": {"m": msgpack.packb([1, "big", inc.name, ["x" * 10_000], {}, None])},
        "no payload": {"other": b"field"},
    }
    before = inc.map(range(5))
    for fields in bad_entries.values():
        client.xadd(stream, fields)
    after = inc.map(range(5, 10))

    burst_worker(taskq_app)

    assert [f.result(timeout=5) for f in before + after] == list(range(1, 11))
    dead = taskq_app.broker.inspect.dead_entries("default")
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(dead) == len(bad_entries)
    assert "undecodable payload" in reasons[0]
    assert "undecodable payload" in reasons[1]
    assert "no task named 'no.such.task'" in reasons[2]
    assert "exceeds the 4096 byte limit" in reasons[3]
    assert "no 'm' payload field" in reasons[4]
    # Nothing is lost: each dead entry carries the original fields.
    assert dead[0][1][b"m"] == bad_entries["not msgpack"]["m"]
    assert dead[2][1][b"run"] == b"ghost-run"
    # A run that names an unknown task ends Failed, so its waiters wake up.
    ghost_future: taskq.Future[None] = taskq.Future(taskq_app.broker, "default", "ghost-run", "?")
    err = ghost_future.result(timeout=5, raise_on_failure=False)
    assert isinstance(err, taskq.TaskFailedError) and err.error.type == "DeadLettered"
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)


def test_a_duplicate_delivery_of_a_finished_run_does_not_execute(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    calls: list[int] = []

    @taskq_app.task
    def once(x: int) -> int:
        calls.append(x)
        return x

    fut = once.submit(1)
    burst_worker(taskq_app)
    # Re-add the same run's payload as a second stream entry (as a lost ack would).
    payload = encode_message(Message(fut.run_id, once.name, [1], {}))
    taskq_app.broker.client.xadd(taskq_app.keys.stream("default"), {"m": payload})
    burst_worker(taskq_app)
    assert calls == [1]
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)


def test_submit_refuses_what_a_worker_would_dead_letter_and_enqueues_nothing(
    taskq_app: taskq.App,
) -> None:
    @taskq_app.task
    def echo(x: object) -> object:
        return x

    taskq_app.configure(max_message_bytes=4096, max_args=2)
    deep: object = 0
    for _ in range(40):
        deep = [deep]
    refused = [
        ((({1: "a"},), {}), "map key 1 is not a string"),
        (((deep,), {}), "nested deeper than 32"),
        ((("x" * 5000,), {}), "exceeds the 4096 byte limit"),
        (((msgpack.Timestamp(1, 0),), {}), r"extension value \(Timestamp\)"),
    ]
    for (args, kwargs), reason in refused:
        with pytest.raises(taskq.MessageError, match=reason):
            echo.submit(*args, **kwargs)
        with pytest.raises(taskq.MessageError, match=f"map item 1: .*{reason}"):
            echo.map([1, *args])

    @taskq_app.task
    def three(a: int, b: int, c: int) -> int:
        return a + b + c

    with pytest.raises(taskq.MessageError, match="more than 2 arguments"):
        three.submit(1, 2, 3)
    assert taskq_app.broker.inspect.queue_sizes("default") == (0, 0)
    assert taskq_app.broker.client.keys(f"{taskq_app.settings.prefix}:*run:*") == []


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_an_entry_whose_payload_cannot_be_decoded_fails_its_run(
    taskq_app: taskq.App, burst_worker: BurstWorker, signed: bool
) -> None:
    if signed:
        taskq_app.configure(signing_keys=["a-signing-key-of-16+"])

    @taskq_app.task
    def echo(x: object) -> object:
        return x

    broker = taskq_app.broker
    int_key, garbage = new_run_id(), new_run_id()
    payloads = {
        int_key: msgpack.packb([1, int_key, echo.name, [{1: "a"}], {}, None]),
        garbage: b"\xc1\xc1 not msgpack",
    }
    # Written past the producer's checks, as an older or foreign producer would.
    broker.producer.enqueue("default", [(rid, p, "") for rid, p in payloads.items()])

    burst_worker(taskq_app)

    for rid in payloads:
        fut: taskq.Future[object] = taskq.Future(broker, "default", rid, echo.name)
        err = fut.result(timeout=5, raise_on_failure=False)
        assert isinstance(err, taskq.TaskFailedError), rid
        assert err.error.type == "DeadLettered" and "undecodable" in err.error.message
        assert fut.state.name == "Failed"
    dead = {f[b"run"]: f for _, f in broker.inspect.dead_entries("default")}
    assert set(dead) == {rid.encode() for rid in payloads}
    assert dead[garbage.encode()][b"r"] == garbage.encode()  # fields copied intact


def test_a_forged_entry_is_dead_lettered_without_failing_the_run_it_names(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    """With signing on, an entry whose payload does not verify is untrusted, its ``r``
    too (it is outside the MAC): the run it names is left as it was."""
    taskq_app.configure(signing_keys=["a-signing-key-of-16+"])

    @taskq_app.task
    def echo(x: object) -> object:
        return x

    rid = new_run_id()
    client = taskq_app.broker.client
    client.hset(taskq_app.keys.run("default", rid), "s", "Pending")
    forged = msgpack.packb([1, rid, echo.name, [{1: "a"}], {}, None])
    client.xadd(taskq_app.keys.stream("default"), {"m": forged, "r": rid})

    burst_worker(taskq_app)

    (_, fields), *_ = taskq_app.broker.inspect.dead_entries("default")
    assert b"unsigned payload" in fields[b"reason"] and fields[b"run"] == b""
    assert taskq_app.broker.producer.run_record("default", rid)["s"] == "Pending"


def test_a_poison_run_reports_the_attempts_its_record_counts(taskq_app: taskq.App) -> None:
    @taskq_app.task(max_deliveries=1)
    def crashes_its_worker() -> None: ...

    fut = crashes_its_worker.submit()
    broker = taskq_app.broker
    _start_then_take_over(taskq_app)

    err = fut.result(timeout=5, raise_on_failure=False)
    assert isinstance(err, taskq.TaskFailedError) and err.error.type == "DeadLettered"
    assert "max_deliveries=1" in err.error.message
    assert taskq_app.broker.producer.run_record("default", fut.run_id)["a"] == "1"
    assert err.attempts == 1
    assert fut.state.attempt == 1 and fut.state.name == "Failed"
    failed = [f for _, f in broker.inspect.events("default") if f.get("s") == "Failed"]
    assert failed and failed[-1]["a"] == "1"


def test_a_poison_flow_child_tells_its_flow_the_attempts_it_made(taskq_app: taskq.App) -> None:
    @taskq_app.task(max_deliveries=1)
    def crashes_its_worker() -> None: ...

    child = "flowrun00000000.1"
    meta = {"parent": ["default", "flowrun00000000", 0]}
    payload = encode_message(Message(child, crashes_its_worker.name, [], {}, meta))
    taskq_app.broker.producer.enqueue("default", [(child, payload, "")])
    _start_then_take_over(taskq_app)

    results = taskq_app.keys.flow_results("default", "flowrun00000000")
    outcome = decode_outcome(taskq_app.broker.client.hget(results, child))
    assert outcome.error is not None and outcome.error.type == "DeadLettered"
    assert (outcome.state, outcome.attempt) == ("Failed", 1)


def _start_then_take_over(app: taskq.App) -> None:
    """Worker w1 starts attempt 1 of the one queued run, then "dies"; w2 takes the
    delivery over (a second delivery, past max_deliveries=1) and finds it poison."""
    broker, stream = app.broker, app.keys.stream("default")
    broker.consumer.ensure_group("default")
    assert Admission(app, "w1").admit(broker.consumer.read(["default"], "w1", 10, None))
    (pending,) = broker.client.xpending_range(stream, GROUP, "-", "+", 10)
    claimed = broker.client.xclaim(stream, GROUP, "w2", 0, [pending["message_id"]])
    entries = [("default", eid, fields, 0) for eid, fields in claimed]
    assert Admission(app, "w2").admit(entries, fresh=False) == []


@pytest.fixture
def new_version(taskq_app: taskq.App) -> Iterator[taskq.App]:
    """The next version of ``taskq_app`` in a rolling deploy: it adds a task."""
    app = taskq.App(taskq_app.settings.redis_url, prefix=taskq_app.settings.prefix)

    @app.task(name="tasks.added")
    def added(x: int) -> int:
        return x * 2

    yield app
    app.close()


def test_a_run_of_a_task_this_worker_does_not_know_waits_for_one_that_does(
    taskq_app: taskq.App,
    new_version: taskq.App,
    burst_worker: BurstWorker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "_warned_unknown", set())  # as in a fresh worker process
    futures = new_version.get_task("tasks.added").map([1, 2])
    broker = taskq_app.broker

    with caplog.at_level(logging.WARNING, logger="taskq.engine"):
        burst_worker(taskq_app)  # the old version: drains, handing both runs back
    for f in futures:
        record = broker.producer.run_record("default", f.run_id)
        assert record["s"] == "Pending" and record["u"] == "1" and "u0" in record
    assert broker.delay.delayed_count(["default"]) == 2
    assert broker.inspect.dead_entries("default") == []
    warned = [r for r in caplog.records if "no task named 'tasks.added'" in r.getMessage()]
    assert len(warned) == 1  # once per task name, not per run

    burst_worker(new_version)  # a new worker takes them when they come due
    assert [f.result(timeout=5) for f in futures] == [2, 4]
    assert broker.inspect.dead_entries("default") == []


def test_a_run_of_an_unknown_task_is_dead_lettered_once_the_grace_is_spent(
    taskq_app: taskq.App, new_version: taskq.App, burst_worker: BurstWorker
) -> None:
    taskq_app.configure(unknown_task_grace=0.001)
    fut = new_version.get_task("tasks.added").submit(1)
    burst_worker(taskq_app)  # handed back, due in 1 s
    assert taskq_app.broker.producer.run_record("default", fut.run_id)["s"] == "Pending"
    burst_worker(taskq_app)  # waits for it, sees it again past the grace
    err = fut.result(timeout=5, raise_on_failure=False)
    assert isinstance(err, taskq.TaskFailedError) and err.error.type == "DeadLettered"
    assert re.fullmatch(
        r"no task named 'tasks.added' is registered \(waited \d+ s for a worker that knows it\)",
        err.error.message,
    )
    (_, fields), *_ = taskq_app.broker.inspect.dead_entries("default")
    assert fields[b"run"] == fut.run_id.encode()


def test_with_no_grace_a_run_of_an_unknown_task_is_dead_lettered_at_once(
    taskq_app: taskq.App, new_version: taskq.App, burst_worker: BurstWorker
) -> None:
    taskq_app.configure(unknown_task_grace=0)
    fut = new_version.get_task("tasks.added").submit(1)
    burst_worker(taskq_app)
    err = fut.result(timeout=5, raise_on_failure=False)
    assert isinstance(err, taskq.TaskFailedError)
    assert err.error.message == "no task named 'tasks.added' is registered"
    assert taskq_app.broker.delay.delayed_count(["default"]) == 0
