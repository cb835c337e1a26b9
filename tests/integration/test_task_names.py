"""Task names on events and run records, at no cost to a queued run."""

from __future__ import annotations

import taskq
from taskq.protocol import DeadField, EventField, RecordField, StateName
from taskq.testing import BurstWorker


def test_pending_and_scheduled_events_name_the_task_and_start_records_it(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    @taskq_app.task(name="shop.add")
    def add(x: int, y: int) -> int:
        return x + y

    @taskq_app.task(name="shop.other")
    def other() -> None:
        pass

    @taskq_app.task(name="shop." + "x" * 70)  # too long for the record to stay compact
    def long_named() -> None:
        pass

    one = add.submit(1, 2)
    many = add.map(range(20), 1)
    later = other.with_options(delay=0.01).submit()
    broker = taskq_app.broker
    assert RecordField.TASK not in broker.producer.run_record("default", one.run_id)
    events = broker.inspect.recent_events("default", 100)
    named = {f[EventField.RUN]: f.get(EventField.TASK) for _, f in events}
    assert named[one.run_id] == add.name
    assert all(named[f.run_id] == add.name for f in many)
    assert named[later.run_id] == other.name
    states = {f[EventField.RUN]: f[EventField.STATE] for _, f in events}
    assert states[later.run_id] == StateName.SCHEDULED
    long_run = long_named.submit()
    burst_worker(taskq_app)
    assert one.result(timeout=5) == 3
    assert taskq_app.broker.producer.run_record("default", long_run.run_id)[RecordField.TASK] == ""
    encoding = broker.execute("OBJECT", "ENCODING", taskq_app.keys.run("default", one.run_id))
    assert encoding in (b"listpack", b"ziplist")
    record = broker.producer.run_record("default", one.run_id)
    assert record[RecordField.TASK] == add.name
    assert broker.producer.run_record("default", later.run_id)[RecordField.TASK] == other.name


def test_dead_letter_entries_record_their_priority_level(
    taskq_app: taskq.App, burst_worker: BurstWorker
) -> None:
    client = taskq_app.broker.client
    client.xadd(taskq_app.keys.stream("default", 7), {"m": b"\xc1\xc1 not msgpack"})
    client.xadd(taskq_app.keys.stream("default"), {"m": b"\xc1\xc1 not msgpack"})

    @taskq_app.task(priority=7)
    def noop() -> None:
        pass

    burst_worker(taskq_app)
    dead = taskq_app.broker.inspect.dead_entries("default")
    levels = sorted(f[DeadField.PRIORITY.encode()] for _, f in dead)
    assert levels == [b"0", b"7"]
