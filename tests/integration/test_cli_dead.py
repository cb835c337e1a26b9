"""taskq dead list | show | requeue | purge, with real `taskq worker` processes: one that
does not know the tasks dead-letters them, one that knows them runs the requeued runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Cli

#: A worker app that knows none of tests.ops_apps' tasks.
STRANGER = "tests.apps:app"


@pytest.fixture
def dead_runs(cli: Cli, ops: Any) -> Iterator[tuple[list[Any], list[Any]]]:
    """Two runs of add and one of boom, dead-lettered by a worker that knows neither."""
    adds, booms = ops.add.map([1, 2], 1), [ops.boom.submit("x")]
    cli("worker", STRANGER, "--burst", "--processes", "1", "--queues", "default", env=GRACE_0)
    yield adds, booms


GRACE_0 = {"TASKQ_UNKNOWN_TASK_GRACE": "0"}


def test_dead_lists_shows_requeues_by_task_and_the_runs_complete(
    cli: Cli, ops: Any, dead_runs: tuple[list[Any], list[Any]]
) -> None:
    adds, [boom] = dead_runs
    listed = cli.json("dead", "list")
    assert isinstance(listed, list) and len(listed) == 3
    assert sorted(e["task"] for e in listed) == sorted([ops.add.name] * 2 + [ops.boom.name])
    assert all("no task named" in e["reason"] and e["payload_ok"] for e in listed)
    text = cli("dead")  # `taskq dead` alone lists
    assert text.splitlines()[0].split() == ["entry", "time", "run", "task", "reason"]
    assert all(f.run_id in text for f in [*adds, boom])
    assert (
        cli("dead", "--queue", "default", "list", "--task", ops.boom.name).count(boom.run_id) == 1
    )
    entry = next(e for e in listed if e["run_id"] == boom.run_id)
    shown = cli.json("dead", "show", entry["entry_id"])
    assert isinstance(shown, dict) and shown["run_state"] == "Failed"
    assert shown["task"] == ops.boom.name and shown["level"] == 0
    lines = cli("dead", "show", entry["entry_id"]).splitlines()
    assert lines[0].startswith(f"entry {entry['entry_id']}  queue=default  dead-lettered 20")
    assert f"  run: {boom.run_id}  (Failed, attempt 0)" in lines
    assert "no dead-lettered entry '1-0'" in cli("dead", "show", "1-0", code=1)

    out = cli("dead", "requeue", "--all", "--task", ops.add.name)
    assert out.strip().splitlines()[-1] == (
        "requeued 2 entries on queue 'default' (2 run(s) reopened as a new attempt, "
        "0 without a known run)"
    )
    cli.burst("--queues", "default")
    assert [ops.add.future(f.run_id).result(timeout=5) for f in adds] == [2, 3]
    [left] = cli.json("dead", "list")  # type: ignore[misc]
    assert left["run_id"] == boom.run_id


def test_requeue_by_reason_and_of_named_entries_reports_what_it_did(
    cli: Cli, ops: Any, dead_runs: tuple[list[Any], list[Any]]
) -> None:
    adds, [boom] = dead_runs
    entries = {e["run_id"]: e["entry_id"] for e in cli.json("dead", "list")}  # type: ignore[union-attr]
    broker = ops.app.broker
    # A duplicate delivery completed one add run meanwhile: its entry is only removed.
    broker.execute("HSET", ops.app.keys.run("default", adds[0].run_id), "s", "Completed")
    out = cli("dead", "requeue", entries[adds[0].run_id], entries[adds[1].run_id], "1-1")
    assert f"run {adds[0].run_id} is Completed: not requeued, entry removed" in out
    assert "1 entry not found (or not matching)" in out
    assert out.strip().splitlines()[-1].startswith("requeued 1 entry on queue 'default'")
    out = cli("dead", "requeue", "--all", "--reason", f"NO TASK NAMED '{ops.boom.name}'")
    assert out.strip().endswith(
        "requeued 1 entry on queue 'default' (1 run(s) reopened as a new attempt, "
        "0 without a known run)"
    )
    cli.burst("--queues", "default")
    err = ops.boom.future(boom.run_id).result(timeout=5, raise_on_failure=False)
    assert err.error.type == "ValueError" and err.attempts == 1
    assert cli.json("dead", "list") == []


def test_purge_asks_unless_yes_and_deletes_for_good(
    cli: Cli, ops: Any, dead_runs: tuple[list[Any], list[Any]]
) -> None:
    err = cli("dead", "purge", "--all", code=2)
    assert err.strip() == (
        "taskq: error: purge deletes entries for good: pass --yes (stdin is not a terminal)"
    )
    assert cli("dead", "purge", "--all", "--task", ops.boom.name, "--yes") == (
        "purged 1 entry on queue 'default'\n"
    )
    assert len(cli.json("dead", "list")) == 2  # type: ignore[arg-type]
    assert cli("dead", "purge", "--all", "-y") == "purged 2 entries on queue 'default'\n"
    assert cli("dead", "purge", "--all", "-y") == "nothing to purge on queue 'default'\n"
    assert json.loads(cli("dead", "list", "--json")) == []
