"""Malformed stream entries go to the dead-letter stream with a reason; valid work goes on."""

from __future__ import annotations

import msgpack

import taskq
from taskq.message import Message, encode_message
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
    dead = taskq_app.broker.dead_entries("default")
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
    assert taskq_app.broker.queue_sizes("default") == (0, 0)


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
    assert taskq_app.broker.queue_sizes("default") == (0, 0)
