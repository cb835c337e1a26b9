"""The live side on a real Redis: server-sent events from ONE reader, resumed with
Last-Event-ID; the depth samples; throughput and latency from the events."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import pytest

import taskq
from taskq.testing import BurstWorker, RedisClusterFactory
from tests.dashboard.conftest import Serve
from tests.dashboard.monitor import monitored
from tests.dashboard.sse import SSEClient


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=20) as resp:
        return json.loads(resp.read())


def test_each_transition_arrives_over_sse(
    taskq_app: taskq.App, serve_dashboard: Serve, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    board = serve_dashboard(taskq_app)
    client = SSEClient(board.url)
    future = add.submit(1, 2)
    seen = client.runs_until(lambda e: e["run_id"] == future.run_id)
    assert seen[-1]["state"] == "Pending" and seen[-1]["queue"] == "default"
    burst_worker(taskq_app)
    seen = client.runs_until(lambda e: e["run_id"] == future.run_id and e["state"] == "Completed")
    assert [e["state"] for e in seen if e["run_id"] == future.run_id] == [
        "Running",
        "Completed",
    ]
    client.close()


def test_a_reconnecting_client_resumes_after_its_last_event_id(
    taskq_app: taskq.App, serve_dashboard: Serve
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    board = serve_dashboard(taskq_app)
    first = SSEClient(board.url)
    one = add.submit(1, 1)
    msg = first.next()
    while msg.event != "runs":
        msg = first.next()
    assert [e["run_id"] for e in msg.json()] == [one.run_id]
    assert msg.id is not None and msg.id.endswith("@default")
    first.close()
    two, three = add.submit(2, 2), add.submit(3, 3)  # while no client is connected
    again = SSEClient(board.url, last_event_id=msg.id)
    seen = again.runs_until(lambda e: e["run_id"] == three.run_id)
    assert [e["run_id"] for e in seen] == [two.run_id, three.run_id]
    again.close()


def test_an_id_older_than_the_ring_gets_a_reset(
    taskq_app: taskq.App, serve_dashboard: Serve
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    add.submit(1, 1)  # in the history the dashboard loads at start
    board = serve_dashboard(taskq_app)
    client = SSEClient(board.url, last_event_id="1-0@default")
    assert client.next().event == "reset"
    later = add.submit(2, 2)
    assert client.runs_until(lambda e: e["run_id"] == later.run_id)[-1]["state"] == "Pending"
    client.close()


def test_one_blocking_read_serves_every_client(
    taskq_app: taskq.App, serve_dashboard: Serve, redis_url: str
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    board = serve_dashboard(taskq_app)
    events_key = taskq_app.keys.events("default")
    with monitored(redis_url) as log:
        clients = [SSEClient(board.url) for _ in range(5)]
        futures = [add.submit(i, i) for i in range(3)]
        for c in clients:
            seen = c.runs_until(lambda e: e["run_id"] == futures[-1].run_id)
            assert [e["run_id"] for e in seen] == [f.run_id for f in futures]
    reads = [c for c in log.named("XREAD", "XREADGROUP") if events_key in c[1]]
    assert reads, "the feed read the events stream"
    assert len({client for _, _, client in reads}) == 1  # one connection: the feed's
    assert all("BLOCK" in [a.upper() for a in args] for _, args, _ in reads)
    for c in clients:
        c.close()


def test_depth_is_sampled_per_logical_queue(taskq_app: taskq.App, serve_dashboard: Serve) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    board = serve_dashboard(taskq_app)
    add.map(range(3), range(3))
    board.dashboard.sampler.sample()
    samples = get(board.url + "/api/depth")["samples"]
    assert samples[-1]["queues"]["default"] == {
        "waiting": 3,
        "pending": 0,
        "delayed": 0,
        "dead": 0,
    }


def test_throughput_and_latency_come_from_the_events(
    taskq_app: taskq.App, serve_dashboard: Serve, burst_worker: BurstWorker
) -> None:
    @taskq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    board = serve_dashboard(taskq_app)
    client = SSEClient(board.url)
    futures = add.map(range(20), range(20))
    burst_worker(taskq_app)
    done = {f.run_id for f in futures}
    finished: set[str] = set()

    def all_done(e: dict[str, Any]) -> bool:
        if e["state"] == "Completed":
            finished.add(e["run_id"])
        return finished >= done

    client.runs_until(all_done)  # the feed has read them all, and counted them first
    stats = get(board.url + "/api/stats")
    assert sum(s["completed"] for s in stats["series"]) == 20
    assert sum(s["started"] for s in stats["series"]) == 20
    assert all(s["latency_avg_ms"] >= 0 for s in stats["series"] if s["started"])
    assert "Pending" in stats["latency"]
    client.close()


@pytest.mark.cluster
def test_on_a_cluster_the_feed_reads_each_queue_in_turn(
    redis_cluster_factory: RedisClusterFactory,
    serve_dashboard: Serve,
    burst_worker: BurstWorker,
) -> None:
    cluster = redis_cluster_factory(masters=3)
    app = taskq.App(cluster.url, prefix=f"dash{uuid.uuid4().hex[:8]}")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(queue="emails")
    def send(to: str) -> str:
        return to

    # Both queues exist before the dashboard starts (it watches the named queues).
    add.submit(0, 0)
    send.submit("first")
    board = serve_dashboard(app, queues=("default", "emails"))
    assert board.dashboard.broker.connection.is_cluster
    client = SSEClient(board.url)
    one, two = add.submit(1, 2), send.submit("a@example.org")
    burst_worker(app)
    ended: set[str] = set()

    def both_completed(e: dict[str, Any]) -> bool:
        if e["state"] == "Completed":
            ended.add(e["run_id"])
        return {one.run_id, two.run_id} <= ended

    seen = client.runs_until(both_completed)
    assert {e["queue"] for e in seen} == {"default", "emails"}
    client.close()
    board.stop()
    app.close()
