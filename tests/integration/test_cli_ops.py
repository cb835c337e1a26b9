"""The operator commands: taskq info, runs, run, events, enqueue (text and --json), their
errors; against real Redis and real `taskq worker` processes (the ``cli`` and ``ops``
fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest

import taskq
from taskq.presence import Presence
from tests.integration.conftest import Cli


def test_info_shows_queues_levels_partitions_workers_and_throughput(cli: Cli, ops: Any) -> None:
    m = ops

    done = m.add.map(range(5), 1)
    cli.burst("--queues", "default")
    assert [f.result(timeout=5) for f in done] == [1, 2, 3, 4, 5]
    m.add.submit(1, 1)
    m.urgent.submit()
    m.heat.map(range(4))
    broker = m.app.broker
    Presence(broker, "box-7-aa", m.app.physical_queues(["hot"]), 8, lambda: 3, 5.0).beat()
    got = cli.json("info")
    assert isinstance(got, dict)
    queues = {q["queue"]: q for q in got["queues"]}
    assert set(queues) == {"default", "hot"}
    d, h = queues["default"], queues["hot"]
    assert (d["backlog"], d["in_flight"], d["delayed"], d["dead"]) == (2, 0, 0, 0)
    assert d["levels"] == [
        {"level": 0, "backlog": 1, "in_flight": 0},
        {"level": 5, "backlog": 1, "in_flight": 0},
    ]
    assert d["consumers_alive"] == 0 and d["throughput_per_s"] == pytest.approx(5 / 60, abs=0.01)
    assert h["partitions"] == m.app.physical_queues(["hot"]) and len(h["partitions"]) == 3
    assert (h["backlog"], h["consumers_alive"], h["throughput_per_s"]) == (4, 1, 0)
    [w] = got["workers"]
    assert w["worker_id"] == "box-7-aa" and w["queues"] == ["hot"] and w["alive"] is True
    assert (w["slots"], w["busy"]) == (8, 3) and w["last_heartbeat_ms"] >= w["started_ms"] > 0
    text = cli("info")
    rows = [line.split() for line in text.splitlines()]
    assert rows[0][:4] == ["queue", "level", "partitions", "backlog"]
    assert ["default", "all", "-", "2", "0", "0", "0", "0", "0.08"] in rows
    assert ["p5", "1", "0"] in rows and ["p0", "1", "0"] in rows
    assert ["hot", "all", "3", "4", "0", "0", "0", "1", "0.00"] in rows
    assert "workers: 1 alive" in text
    [line] = [r for r in rows if r and r[0] == "box-7-aa"]
    assert line[1:5] == [socket.gethostname(), str(os.getpid()), "hot", "3/8"]
    assert line[6:9] == ["s", "ago", "alive"]  # "<age> s ago  alive  <started>"
    one = cli.json("info", "-q", "hot")
    assert isinstance(one, dict) and [q["queue"] for q in one["queues"]] == ["hot"]


def test_runs_lists_recent_runs_with_task_names_and_filters(cli: Cli, ops: Any) -> None:
    m = ops

    ok = m.add.map(range(3), 10)
    bad = m.boom.submit("no")
    cli.burst("--queues", "default")
    waiting = m.add.submit(0, 0)
    got = cli.json("runs")
    assert isinstance(got, list), got
    assert got[0]["run_id"] == waiting.run_id  # newest first
    assert got[0]["state"] == "Pending" and got[0]["task"] == m.add.name
    by_id = {r["run_id"]: r for r in got}
    assert {by_id[f.run_id]["state"] for f in ok} == {"Completed"}
    assert by_id[bad.run_id] == {**by_id[bad.run_id], "state": "Failed", "task": m.boom.name}
    assert by_id[bad.run_id]["attempt"] == 1
    failed = cli.json("runs", "--state", "failed")
    assert [r["run_id"] for r in failed] == [bad.run_id]  # type: ignore[index]
    adds = cli.json("runs", "--task", m.add.name, "-n", "2")
    assert isinstance(adds, list) and len(adds) == 2 and adds[0]["run_id"] == waiting.run_id
    assert adds[1]["run_id"] in {f.run_id for f in ok}
    text = cli("runs", "--queue", "default")
    assert text.splitlines()[0].split() == ["updated", "run", "queue", "task", "state", "attempt"]
    line = next(x for x in text.splitlines() if bad.run_id in x)
    assert line.split()[2:] == ["default", m.boom.name, "Failed", "1"]
    assert "Z" in line.split()[0] and "T" in line.split()[0]
    assert cli("runs", "--task", "nope") == "no runs found\n"


def test_run_shows_the_task_result_error_and_a_flows_child_tree(cli: Cli, ops: Any) -> None:
    m = ops

    flow = m.outer.submit(3)
    bad = m.boom.submit("boom!")
    cli.burst("--queues", "default", "--concurrency", "4")
    assert flow.result(timeout=5) == 7
    text = cli("run", flow.run_id)
    assert f"  task: {m.outer.name}" in text.splitlines()
    assert "  result: 7" in text.splitlines()
    tree = text.split("  children: 2\n", 1)[1].splitlines()
    assert tree[0].strip() == f"├─ {flow.run_id}.1  Completed  {m.inner.name}"
    assert [t.strip() for t in tree[1:4]] == [
        f"├─ {flow.run_id}.1.{i}  Completed  {m.add.name}" for i in (1, 2)
    ] + [f"└─ {flow.run_id}.1.3  Completed  {m.add.name}"]
    assert tree[1].startswith(" " * 8) and tree[0].startswith(" " * 4)
    assert tree[4].strip() == f"└─ {flow.run_id}.2  Completed  {m.add.name}"
    detail = cli.json("run", flow.run_id)
    assert isinstance(detail, dict)
    assert (detail["task"], detail["state"], detail["result"]) == (m.outer.name, "Completed", "7")
    assert [c["run_id"] for c in detail["children"]] == [f"{flow.run_id}.1", f"{flow.run_id}.2"]
    assert detail["children"][0]["spawned"] == 3
    assert detail["events"][0]["state"] == "Pending" and detail["events"][0]["task"] == m.outer.name
    assert detail["attempts"][0]["attempt"] == 1 and detail["attempts"][0]["started_ms"] > 0
    failed = cli.json("run", bad.run_id, "-q", "default")
    assert isinstance(failed, dict)
    assert failed["error"] == "ValueError: boom!" and failed["result"] is None
    assert failed["attempts"][0]["error"] == "ValueError: boom!"
    assert "  error: ValueError: boom!" in cli("run", bad.run_id).splitlines()
    assert "no run 'nope'" in cli("run", "nope", "--json", code=1)


def test_events_have_task_names_readable_times_and_filters(cli: Cli, ops: Any) -> None:
    m = ops

    ok = m.add.submit(1, 2)
    bad = m.boom.submit("x")
    cli.burst("--queues", "default")
    lines = cli("events").splitlines()
    mine = [x for x in lines if ok.run_id in x]
    assert [x.split()[2:4] for x in mine] == [
        [m.add.name, s] for s in ("Pending", "Running", "Completed")
    ]
    stamp = mine[0].split()[0]
    assert len(stamp) == 24 and stamp[10] == "T" and stamp.endswith("Z")
    failed = [x for x in lines if bad.run_id in x and " Failed " in x]
    assert failed and failed[0].endswith("attempt=1  ValueError: x")
    only = cli("events", "--task", m.boom.name).splitlines()
    assert only and all(bad.run_id in x for x in only)
    done = [json.loads(x) for x in cli("events", "--state", "completed", "--json").splitlines()]
    assert [(e["run_id"], e["task"], e["state"]) for e in done] == [
        (ok.run_id, m.add.name, "Completed")
    ]
    assert done[0]["time_ms"] > 0 and done[0]["attempt"] == 1 and done[0]["queue"] == "default"
    assert cli("events", "--task", "nope") == "no matching events on queue 'default'\n"


@pytest.mark.timeout(60)
def test_events_follow_prints_new_events_of_the_task_asked_for(cli: Cli, ops: Any) -> None:
    m = ops

    follower = cli.popen(
        "events", "--follow", "--task", m.add.name, "--state", "Completed", "--json"
    )
    try:
        m.boom.submit("not shown")
        fut = m.add.submit(2, 2)
        cli.burst("--queues", "default")
        assert follower.stdout is not None
        event = json.loads(follower.stdout.readline())  # blocks until the follower prints
        assert (event["run_id"], event["task"], event["state"]) == (
            fut.run_id,
            m.add.name,
            "Completed",
        )
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_enqueue_submits_and_waits(cli: Cli, ops: Any) -> None:
    m = ops

    rid = cli("enqueue", "tests.ops_apps:add", "--args", "[2, 3]").strip()
    cli.burst("--queues", "default")
    assert m.app.future(rid, "default").result(timeout=5) == 5
    sent = cli.json("enqueue", "tests.ops_apps:add", "--kwargs", '{"x": 1, "y": 1}', "--delay", "0")
    assert isinstance(sent, dict) and sent["task"] == m.add.name and sent["queue"] == "default"
    waiter = cli.popen("enqueue", "tests.ops_apps:add", "--args", "[20, 22]", "--wait")
    try:
        assert waiter.stdout is not None
        rid = waiter.stdout.readline().strip()  # the run id comes first, at once
        cli.burst("--queues", "default")
        out, _ = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0 and out == "42\n"
    assert m.app.future(rid, "default").result(timeout=5) == 42
    failing = cli.popen("enqueue", "tests.ops_apps:boom", "--args", '["bad"]', "--wait", "--json")
    cli.burst("--queues", "default")
    out, _ = failing.communicate(timeout=30)
    assert failing.returncode == 1
    assert json.loads(out)["state"] == "Failed" and "ValueError: bad" in json.loads(out)["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", "[1,"], "--args is not valid JSON"),
        (["--args", '{"x": 1}'], "--args must be a JSON list, got dict"),
        (["--kwargs", "[1]"], "--kwargs must be a JSON object, got list"),
    ],
)
def test_enqueue_refuses_bad_json_in_one_line(cli: Cli, args: list[str], message: str) -> None:
    err = cli("enqueue", "tests.ops_apps:add", *args, code=2)
    assert err.startswith(f"taskq: error: {message}") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.ops_apps:nope", "module 'tests.ops_apps' has no attribute 'nope'"),
        ("tests.ops_apps:not_a_task", "tests.ops_apps:not_a_task is not a taskq task (got int)"),
        ("tests.ops_apps", "name the task as MODULE:TASK, not 'tests.ops_apps'"),
        ("no_such_module_x:add", "cannot import module 'no_such_module_x'"),
    ],
)
def test_enqueue_of_a_missing_task_is_one_line_and_exit_2(
    cli: Cli, spec: str, message: str
) -> None:
    err = cli("enqueue", spec, code=2)
    assert err.startswith(f"taskq: error: {message}") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "--state", "Bogus"],
        ["events", "--state", "nope"],
        ["info", "--queue", "bad name!"],
        ["runs", "-n", "0"],
        ["dead", "requeue"],
        ["dead", "purge", "1-0", "--all"],
        ["dead", "purge", "--all"],  # not a terminal: --yes is required
        ["dead", "list", "--queue", "{x}"],
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(cli: Cli, args: list[str]) -> None:
    err = cli(*args, code=2)
    assert err.startswith("taskq: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["runs"],
        ["events"],
        ["dead"],
        ["dead", "list"],
        ["dead", "requeue", "--all"],
        ["run", "x", "--json"],
        ["enqueue", "tests.ops_apps:add", "--args", "[1, 2]"],
    ],
)
def test_unreachable_redis_names_the_url_without_the_password(cli: Cli, args: list[str]) -> None:
    url = "redis://user:hunter2@127.0.0.1:1/0"
    err = cli(*args, "--redis-url", url, code=1)
    line = err.strip()
    assert "redis://user:***@127.0.0.1:1/0" in line and "hunter2" not in line
    assert len(line.splitlines()) == 1


def test_every_read_command_says_json_in_its_help(cli: Cli) -> None:
    for command in (["info"], ["runs"], ["run"], ["events"], ["dead", "list"], ["dead", "show"]):
        assert "--json" in cli(*command, "--help"), command
    assert taskq.App  # the package imports without rich being touched
