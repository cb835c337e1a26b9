"""Cancels racing runs' own ends, on live workers: every run ends exactly once.

Runs of short tasks (sync and async) are cancelled at random moments while two worker
threads run them: some before they start, some while they run, some after they ended.
Whatever the interleaving, each run has one final state, one stored outcome and one
final event, and each cancel's reply agrees with it: CANCELLED (ended by the cancel)
means Cancelled; a run whose cancel found it ended (ENDED) kept its own end; one asked
to stop while running (REQUESTED) ends Cancelled or, if it ended first, Completed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

import pytest

import taskq
from taskq.events import read_events
from taskq.message import decode_outcome

pytestmark = pytest.mark.reliability

FINAL = {"Completed", "Cancelled", "Failed"}


def test_cancels_racing_the_runs_leave_one_end_each(redis_url: str, taskq_prefix: str) -> None:
    app = taskq.App(redis_url, prefix=taskq_prefix, cancel_grace_seconds=0.05)
    rng = random.Random(1234)

    @app.task
    def short(ms: int) -> int:
        time.sleep(ms / 1000)
        return ms

    @app.task
    async def short_async(ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    n = 120
    futures = [(short if i % 2 else short_async).submit(rng.randint(5, 40)) for i in range(n)]
    replies: dict[str, taskq.CancelReply] = {}
    workers = [taskq.Worker(app, concurrency=2) for _ in range(2)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        todo = rng.sample(futures, n // 2)  # half of them, in a random order
        while todo:
            time.sleep(rng.random() * 0.01)  # the test's own pacing, not a wait for work
            # Every other cancel goes to a run that is running now, when one is found.
            running = [f for f in todo[:12] if rng.random() < 0.5 and f.state.name == "Running"]
            fut = running[0] if running else todo[0]
            todo.remove(fut)
            replies[fut.run_id] = fut.cancel("race")
        states = {f.run_id: f.wait(timeout=30) for f in futures}
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)

    kinds = Counter(replies.values())
    print(f"cancel replies: {dict(kinds)}")
    assert kinds[taskq.CancelReply.UNKNOWN] == 0
    events = [e for e in read_events(app.broker, "default") if e.state in FINAL]
    finals = Counter(e.run_id for e in events)
    for fut in futures:
        state = states[fut.run_id]
        assert state.name in {"Completed", "Cancelled"}, (fut.run_id, state)
        assert finals[fut.run_id] == 1, (fut.run_id, finals[fut.run_id])
        stored = app.broker.execute("LRANGE", app.keys.result("default", fut.run_id), 0, -1)
        assert len(stored) == 1 and decode_outcome(stored[0]).state == state.name
        reply = replies.get(fut.run_id)
        if reply is None or reply is taskq.CancelReply.ENDED:
            assert state.name == "Completed", (fut.run_id, reply, state)
        elif reply is taskq.CancelReply.CANCELLED:
            assert state.name == "Cancelled", (fut.run_id, state)
    app.close()
