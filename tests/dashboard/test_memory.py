"""The feed's ring and the figures keep bounded state (no Redis: entries are appended
as the reader would)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from taskq.dashboard.feed import Feed
from taskq.dashboard.stats import Stats
from taskq.runview import NamedEvent


def no_records(broker: Any, queue: str, runs: MutableMapping[str, str | None]) -> None:
    """Stands in for reading run records: "late" is named there, no other run."""
    if "late" in runs:
        runs["late"] = "myapp.late"


def feed(ring: int = 4) -> Feed:
    got = Feed(None, list, ring=ring, names=no_records)  # type: ignore[arg-type]  # no Redis
    return got


def add(f: Feed, ms: int, run: str, state: str = "Pending", **more: str) -> None:
    f._append([("q", f"{ms}-0", {"r": run, "s": state, **more})])


def test_the_ring_keeps_the_newest_entries_and_a_late_client_is_told_to_reset() -> None:
    f = feed(ring=4)
    for i in range(1, 7):
        add(f, 1000 + i, f"run{i}")
    assert f.head() == 6
    entries, lost = f.since(0)
    assert lost and [e.events[0].run_id for e in entries] == ["run3", "run4", "run5", "run6"]
    entries, lost = f.since(4)
    assert not lost and [e.events[0].run_id for e in entries] == ["run5", "run6"]
    assert f.since(6) == ([], False)


def test_resume_from_an_id_in_the_ring_or_newer_than_its_oldest() -> None:
    f = feed(ring=4)
    for i in range(1, 7):
        add(f, 1000 + i, f"run{i}")
    assert f.resume(None) == 6  # a new client: only what comes next
    assert f.resume("1004-0@q") == 4  # still held: right after it
    assert f.resume("1004-5@other") == 4  # not held, within the ring: after what is older
    assert f.resume("1001-0@q") is None  # fell out of the ring: reset
    assert f.resume("not-an-id") is None


def test_task_names_carry_from_the_pending_event_to_the_later_ones() -> None:
    f = feed(ring=10)
    add(f, 1001, "a", k="myapp.add")
    add(f, 1002, "a", "Running", a="1")
    add(f, 1003, "b", "Running", a="1")
    add(f, 1004, "late", "Running", a="1")  # its Pending came before the dashboard
    add(f, 1005, "late", "Completed", a="1")
    named = {(e.run_id, e.state): e.task for e in f.recent(10)}
    assert named == {
        ("a", "Pending"): "myapp.add",
        ("a", "Running"): "myapp.add",
        ("b", "Running"): None,
        ("late", "Running"): "myapp.late",
        ("late", "Completed"): "myapp.late",
    }


def test_batch_entries_tell_one_event_per_run() -> None:
    f = feed()
    add(f, 1001, "a b c", "Running", a="1 1 2")
    got = [(e.run_id, e.attempt) for e in reversed(f.recent(10))]
    assert got == [("a", 1), ("b", 1), ("c", 2)]


def ev(ms: int, run: str, state: str, **kw: Any) -> NamedEvent:
    return NamedEvent(f"{ms}-0", ms, "q", run, None, state, kw.get("attempt"), None, None)


def test_latency_is_running_minus_pending_and_throughput_counts_final_states() -> None:
    s = Stats()
    s.add([ev(10_000, "a", "Pending"), ev(10_000, "b", "Pending")])
    s.add([ev(10_250, "a", "Running", attempt=1), ev(10_400, "b", "Running", attempt=1)])
    s.add([ev(11_100, "a", "Completed"), ev(11_200, "b", "Failed")])
    by_t = {x["t"]: x for x in s.series()}
    assert by_t[10]["started"] == 2 and by_t[10]["latency_avg_ms"] == 325
    assert by_t[10]["latency_max_ms"] == 400
    assert by_t[11]["completed"] == 1 and by_t[11]["failed"] == 1
    assert s.tracked_runs() == 0


def test_the_figures_are_bounded() -> None:
    s = Stats(window_s=5, tracked=2)
    s.add([ev(1000, "a", "Pending"), ev(1000, "b", "Pending"), ev(1000, "c", "Pending")])
    assert s.tracked_runs() == 2  # "a", the oldest, is forgotten: its start is not measured
    s.add([ev(1500, "a", "Running", attempt=1)])
    assert sum(x["started"] for x in s.series()) == 0
    for t in range(20):
        s.add([ev(t * 1000, f"r{t}", "Completed")])
    assert [x["t"] for x in s.series()] == [15, 16, 17, 18, 19]
