"""Outcomes recorded in one round trip: the plain finish calls of one task stream go in
one ``finish_batch`` script call, each run still fenced by its own attempt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import taskq
from taskq.broker import FinishCall
from taskq.events import read_events
from taskq.message import encode_outcome
from taskq.protocol import split_event


@pytest.fixture
def app(redis_url: str, taskq_prefix: str) -> Iterator[taskq.App]:
    a = taskq.App(redis_url, prefix=taskq_prefix)
    yield a
    a.close()


def _started(app: taskq.App, n: int) -> list[tuple[str, bytes, str]]:
    """``n`` runs submitted, read and started by consumer "c1": (queue, entry id, run id)."""

    @app.task(name="batch.noop")
    def noop(i: int) -> int:
        return i

    ids = [f.run_id for f in noop.map(range(n))]
    consumer = app.broker.consumer
    consumer.ensure_group("default")
    entries = consumer.read(["default"], "c1", n, None)
    assert len(entries) == n
    queue = entries[0][0]
    kinds = consumer.start(
        queue, "c1", [(e[1], rid, 5, "") for e, rid in zip(entries, ids, strict=True)]
    )
    assert [k for k, _, _ in kinds] == [1] * n  # all started, attempt 1
    return [(queue, e[1], rid) for e, rid in zip(entries, ids, strict=True)]


def _call(app: taskq.App, run: tuple[str, bytes, str], attempt: int, **kw: object) -> FinishCall:
    queue, eid, rid = run
    outcome = encode_outcome("Completed", attempt, rid)
    return app.broker.consumer.finish_call(queue, eid, rid, attempt, "Completed", outcome, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["finish_many", "finish_and_read"])
def test_a_batch_records_each_run_and_fences_off_a_stale_one(app: taskq.App, how: str) -> None:
    runs = _started(app, 5)
    consumer = app.broker.consumer
    calls = [
        _call(app, runs[0], 1),
        _call(app, runs[1], 1),
        _call(app, runs[2], 2),  # attempt 2 does not hold the run: fenced off
        _call(app, runs[3], 1, ack=False),  # not plain: its own finish call, left pending
        _call(app, runs[4], 1, error=("ValueError", "bad")),
    ]
    if how == "finish_many":
        results = consumer.finish_many(calls)
    else:
        results, fetched = consumer.finish_and_read(calls, ["default"], "c1", 10)
        assert fetched == []
    assert results == [True, True, False, True, True]
    records = [app.broker.producer.run_record("default", rid) for _, _, rid in runs]
    assert [r["s"] for r in records] == [
        "Completed",
        "Completed",
        "Running",
        "Completed",
        "Completed",
    ]
    assert records[2]["fenced"] == "1"
    assert records[4]["x1"] == "ValueError: bad"
    # Acked and deleted: runs 0, 1 and 4. Pending: the fenced one and the one kept pending.
    assert app.broker.inspect.queue_sizes("default") == (2, 2)
    for _, _, rid in (runs[0], runs[1], runs[4]):
        assert app.future(rid).result(timeout=1) == rid
    ended = {(e.run_id, e.state, e.error_type) for e in read_events(app.broker, "default")}
    assert (runs[0][2], "Completed", "") in ended
    assert (runs[4][2], "Completed", "ValueError") in ended
    assert not any(e[0] == runs[2][2] and e[1] == "Completed" for e in ended)


def test_plain_calls_of_one_stream_share_one_script_call(app: taskq.App) -> None:
    from taskq import scripts
    from taskq.broker import finishing

    runs = _started(app, 3)
    calls = [_call(app, runs[0], 1), _call(app, runs[1], 1, ack=False), _call(app, runs[2], 1)]
    grouped, carried = finishing.group([(c.keys, c.args) for c in calls])
    assert [name for name, _, _ in grouped] == [scripts.FINISH, scripts.FINISH_BATCH]
    assert carried == [[1], [0, 2]]
    assert finishing.spread([1, [1, 0]], carried, 3) == [1, 1, 0]
    boom = RuntimeError("script failed")
    assert finishing.spread([0, boom], carried, 3) == [boom, 0, boom]


def test_a_batch_tells_its_transitions_in_one_event_entry_per_state(app: taskq.App) -> None:
    """Runs enqueued by one call share one Pending entry, runs started together one
    Running entry, runs that end together without an error one entry per final state; a
    run with an error keeps its own. Every reader
    (read_events, run_events, the raw entry through split_event) sees one event per run."""
    runs = _started(app, 4)
    consumer = app.broker.consumer
    results = consumer.finish_many(
        [
            _call(app, runs[0], 1),
            _call(app, runs[1], 1),
            _call(app, runs[2], 1),
            _call(app, runs[3], 1, error=("ValueError", "bad")),
        ]
    )
    assert results == [True] * 4
    ids = [rid for _, _, rid in runs]
    raw = app.broker.execute("XRANGE", app.keys.events("default"), "-", "+")
    entries = [dict(zip(f[::2], f[1::2], strict=True)) for _, f in raw]
    by_state = {}
    for e in entries:
        by_state.setdefault(e[b"s"].decode(), []).append(e)
    assert [e[b"r"].decode() for e in by_state["Pending"]] == [" ".join(ids)]  # one map call
    assert b"a" not in by_state["Pending"][0]
    assert [e[b"r"].decode() for e in by_state["Running"]] == [" ".join(ids)]
    assert by_state["Running"][0][b"a"] == b"1 1 1 1"
    completed = sorted(e[b"r"].decode() for e in by_state["Completed"])
    assert completed == sorted([" ".join(ids[:3]), ids[3]])
    story = [(e.run_id, e.state, e.attempt) for e in read_events(app.broker, "default")]
    for rid in ids:
        assert [(s, a) for r, s, a in story if r == rid] == [
            ("Pending", 0),
            ("Running", 1),
            ("Completed", 1),
        ]
        states = [f["s"] for _, f in app.broker.inspect.run_events("default", rid)]
        assert states == ["Pending", "Running", "Completed"]
    plain = split_event({"r": " ".join(ids[:2]), "s": "Completed", "a": "1 2"})
    assert plain == [
        {"r": ids[0], "s": "Completed", "a": "1"},
        {"r": ids[1], "s": "Completed", "a": "2"},
    ]
    queued = split_event({"r": " ".join(ids[:2]), "s": "Pending"})
    assert queued == [{"r": ids[0], "s": "Pending"}, {"r": ids[1], "s": "Pending"}]


def test_shared_entries_hold_at_most_16_runs(app: taskq.App) -> None:
    """A bulk enqueue's Pending entries name at most 16 runs each (the stream's memory
    stays bounded by its cap, which counts transitions)."""

    @app.task(name="batch.many")
    def many(i: int) -> int:
        return i

    futures = many.map(range(40))
    raw = app.broker.execute("XRANGE", app.keys.events("default"), "-", "+")
    sizes = [len(dict(zip(f[::2], f[1::2], strict=True))[b"r"].split(b" ")) for _, f in raw]
    assert sizes == [16, 16, 8]
    seen = [e.run_id for e in read_events(app.broker, "default") if e.state == "Pending"]
    assert seen == [f.run_id for f in futures]
