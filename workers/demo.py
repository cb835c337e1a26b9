"""The demo: taskq's main job in miniature, from a fresh machine.

1. Find Redis at TASKQ_REDIS_URL / localhost:6379, or start a private
   ``redis-server`` (and say so).
2. Start a worker pool (``taskq worker workers.example:app``) as a subprocess.
3. Submit a few hundred runs of the example tasks, follow their state
   transitions live on the events stream, and print a summary.

Run it with ``make demo`` (or ``python -m workers.demo``). Exit code 0 on success.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import taskq
from taskq.events import follow
from taskq.localredis import ensure_redis, redact_url

SHOW_TRANSITIONS = 12
FINAL = {"Completed", "Failed", "Cancelled"}


def main() -> int:
    url, server = ensure_redis(os.environ.get("TASKQ_REDIS_URL"))
    if server is not None:
        print(f"No Redis answered; started a private redis-server at {url} for this demo.")
    else:
        print(f"Using Redis at {redact_url(url)}.")
    prefix = f"taskq-demo-{uuid.uuid4().hex[:6]}"
    os.environ["TASKQ_REDIS_URL"], os.environ["TASKQ_PREFIX"] = url, prefix
    from workers import example  # reads the environment set just above

    pool = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskq",
            "worker",
            "workers.example:app",
            "--processes",
            "2",
            "--concurrency",
            "8",
            "--log-level",
            "ERROR",  # Redis persistence warnings are for deployments, not this demo
        ],
    )
    try:
        return run(example, pool)
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=60)
        client = example.app.broker.client
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.unlink(key)
        if server is not None:
            server.close()
            print("Stopped the private redis-server.")


def run(ex: Any, pool: subprocess.Popen[bytes]) -> int:
    app: taskq.App = ex.app
    print(f"Worker pool starting (pid {pool.pid}): 2 processes x 8 slots.")
    t0 = time.perf_counter()
    ex.add.submit(0, 0).result(timeout=60)  # the pool answers: it is up
    print(f"Worker pool ready in {time.perf_counter() - t0:.2f} s.")

    after = app.broker.recent_events("default", 1)[-1][0]
    start = time.perf_counter()
    futures = [
        *ex.add.map(range(100), range(100)),
        *ex.checksum.map([f"doc-{i}" for i in range(100)]),
        *ex.fetch_profile.map(range(80)),
        *ex.slugify.map([f"Post number {i}" if i % 10 else " " for i in range(40)]),
    ]
    total = len(futures)
    print(f"Submitted {total} runs of 4 tasks in {1000 * (time.perf_counter() - start):.1f} ms.")
    watched = {futures[i].run_id: futures[i].task_name for i in (0, 100, 200, 300)}
    print("Live state transitions of four of them (one fails on purpose):")
    counts: Counter[str] = Counter()
    final = 0
    for ev in follow(app.broker, "default", after):
        counts[ev.state] += 1
        if ev.run_id in watched:
            err = f"  ({ev.error_type}: {ev.error_message})" if ev.error_type else ""
            print(f"  {watched[ev.run_id]:<28} {ev.run_id}  -> {ev.state}{err}")
        if ev.state in FINAL:
            final += 1
            if final % 80 == 0 or final == total:
                line = "  ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                print(f"  progress: {final:>3}/{total} final   [{line}]")
        if final >= total:
            break
    elapsed = time.perf_counter() - start
    results = taskq.wait(futures, timeout=30)
    ok = sum(1 for f in results.done if f.state.is_completed())
    failed = [f for f in results.done if f.state.is_failed()]
    print(
        f"Summary: {ok} completed, {len(failed)} failed (empty titles, on purpose), "
        f"{len(results.not_done)} unfinished; {elapsed:.2f} s, {total / elapsed:.0f} tasks/s."
    )
    print(f"  add(0, 0) -> {futures[0].result()!r}")
    print(f"  a failure -> {failed[0].result(raise_on_failure=False)}")
    return 0 if ok + len(failed) == total and len(failed) == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
