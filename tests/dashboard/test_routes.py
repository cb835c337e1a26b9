"""The JSON routes on a real Redis: what they show, that a GET changes nothing and
reads boundedly, and that every action needs --allow-actions and the token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

import taskq
from taskq import deadletters
from taskq.testing import BurstWorker
from tests.dashboard.conftest import TOKEN, Serve
from tests.dashboard.monitor import monitored, write_commands

GETS = (
    "/",
    "/runs",
    "/dead",
    "/api/config",
    "/api/queues",
    "/api/workers",
    "/api/runs",
    "/api/runs?state=Completed&limit=10",
    "/api/dead",
    "/api/depth",
    "/api/stats",
    "/api/recent",
    "/static/app.js",
)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=20) as resp:
        body = resp.read()
        return json.loads(body) if resp.headers["content-type"] == "application/json" else body


def post(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def dead_run(redis_url: str, taskq_app: taskq.App, burst_worker: BurstWorker) -> taskq.Future[Any]:
    """A run dead-lettered by a worker that does not know its task."""
    producer = taskq.App(redis_url, prefix=taskq_app.settings.prefix)

    @producer.task(name="elsewhere.only")
    def only_there(x: int) -> int:
        return x

    taskq_app.configure(unknown_task_grace=0)
    future = only_there.submit(7)
    burst_worker(taskq_app)
    assert len(deadletters.dead_entries(taskq_app.broker, "default")) == 1
    return future


def test_the_views_show_runs_dead_letters_and_queues(
    taskq_app: taskq.App, serve_dashboard: Serve, burst_worker: BurstWorker, dead_run: Any
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    done = add.submit(1, 2)
    burst_worker(taskq_app)
    board = serve_dashboard(taskq_app)
    runs = get(board.url + "/api/runs")["runs"]
    assert {(r["run_id"], r["state"]) for r in runs} >= {(done.run_id, "Completed")}
    detail = get(board.url + f"/api/runs/{done.run_id}?queue=default")["run"]
    assert detail["state"] == "Completed" and detail["result"] == "3"
    assert [a["attempt"] for a in detail["attempts"]] == [1]
    [entry] = get(board.url + "/api/dead")["entries"]
    assert entry["run_id"] == dead_run.run_id and entry["task"] == "elsewhere.only"
    [queue] = get(board.url + "/api/queues")["queues"]
    assert queue["queue"] == "default" and queue["dead"] == 1
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(board.url + "/api/runs/no-such-run?queue=default")
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bad:
        get(board.url + "/api/runs?queue=no{braces}")
    assert bad.value.code == 400


def test_gets_change_nothing_and_read_streams_with_a_count(
    taskq_app: taskq.App,
    serve_dashboard: Serve,
    burst_worker: BurstWorker,
    dead_run: Any,
    redis_url: str,
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    add.map(range(50), range(50))
    burst_worker(taskq_app)
    board = serve_dashboard(taskq_app, actions=True)  # even with actions on, GETs only read
    writes = write_commands(redis_url) | {"EVAL", "EVALSHA", "FCALL"}  # scripts: the writers
    with monitored(redis_url) as log:
        for path in GETS:
            get(board.url + path)
    assert log.commands, "MONITOR saw the requests' reads"
    assert [c for c in log.commands if c[0] in writes] == []
    ranges = log.named("XRANGE", "XREVRANGE")
    assert ranges, "the views read the events streams"
    for name, args, _ in ranges:
        upper = [a.upper() for a in args]
        assert "COUNT" in upper, f"{name} {' '.join(args)} reads a whole stream"
        assert int(args[upper.index("COUNT") + 1]) <= 2000
    assert log.named("KEYS") == []


def test_actions_are_refused_unless_allowed_and_with_the_token(
    taskq_app: taskq.App, serve_dashboard: Serve, dead_run: Any
) -> None:
    [entry] = deadletters.dead_entries(taskq_app.broker, "default")
    body = {"queue": "default", "ids": [entry.entry_id]}
    read_only = serve_dashboard(taskq_app)
    status, got = post(read_only.url + "/api/dead/requeue", body, TOKEN)
    assert status == 403 and "--allow-actions" in got["error"]
    status, _ = post(read_only.url + f"/api/runs/{dead_run.run_id}/cancel", {"queue": "default"})
    assert status == 403
    board = serve_dashboard(taskq_app, actions=True)
    assert post(board.url + "/api/dead/requeue", body)[0] == 401  # no token
    assert post(board.url + "/api/dead/requeue", body, "wrong")[0] == 401
    assert len(deadletters.dead_entries(taskq_app.broker, "default")) == 1  # untouched
    assert post(board.url + "/api/dead/requeue", {"queue": 3}, TOKEN)[0] == 400
    status, got = post(board.url + "/api/dead/requeue", body, TOKEN)
    assert (status, got) == (200, {"requeued": 1})
    assert deadletters.dead_entries(taskq_app.broker, "default") == []
    with pytest.raises(urllib.error.HTTPError) as no_get:
        get(board.url + "/api/dead/requeue")  # an action is never a GET
    assert no_get.value.code == 405


def test_cancel_from_the_dashboard(taskq_app: taskq.App, serve_dashboard: Serve) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    later = add.with_options(delay=3600).submit(1, 2)
    board = serve_dashboard(taskq_app, actions=True)
    url = board.url + f"/api/runs/{later.run_id}/cancel"
    status, got = post(url, {"queue": "default"}, TOKEN)
    assert (status, got) == (200, {"run_id": later.run_id, "reply": "cancelled"})
    assert later.state.name == "Cancelled"
