"""The demo: taskq's main job in miniature, from a fresh machine.

1. Find Redis at TASKQ_REDIS_URL / localhost:6379, or start a private
   ``redis-server`` (and say so).
2. Start a worker pool (``taskq worker workers.example:app``) as a subprocess.
3. Submit a few hundred runs of the example tasks, follow their state
   transitions live on the events stream with a progress bar and the number of
   runs in each state now, and print a summary. The pool's warnings (say, Redis
   without persistence) are shown.

Run it with ``make demo`` (or ``python -m workers.demo``). Exit code 0 on success.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import IO, Any

import taskq
from taskq.broker.connection import redact_url
from taskq.events import follow
from taskq.localredis import ensure_redis

SHOW_TRANSITIONS = 12
FINAL = {"Completed", "Cached", "Failed", "Cancelled"}
BAR_WIDTH = 30


class Console:
    """Prints lines and one progress line, redrawn in place (\\r) on a terminal and
    printed every quarter of the way otherwise; thread-safe, so the pool's warnings can
    be printed from a reader thread without tearing the progress line."""

    def __init__(self, out: IO[str] = sys.stdout) -> None:
        self.out = out
        self.tty = out.isatty()
        self._lock = threading.Lock()
        self._bar = ""  # the progress line on screen (tty only)
        self._last_draw = 0.0
        self._quarter = -1

    def line(self, text: str) -> None:
        with self._lock:
            if self._bar:
                self.out.write("\r\x1b[K")
            self.out.write(text + "\n")
            if self._bar:
                self.out.write(self._bar)
            self.out.flush()

    def progress(self, final: int, total: int, now: Counter[str], force: bool = False) -> None:
        text = progress_line(final, total, now)
        with self._lock:
            if self.tty:
                t = time.monotonic()
                if force or t - self._last_draw >= 0.05:
                    self._bar, self._last_draw = text, t
                    self.out.write("\r\x1b[K" + text)
                    if force:
                        self.out.write("\n")
                        self._bar = ""
                    self.out.flush()
                return
            quarter = 4 * final // total if total else 4
            if force or quarter > self._quarter:
                self._quarter = quarter
                self.out.write(text + "\n")
                self.out.flush()


def progress_line(final: int, total: int, now: Counter[str]) -> str:
    """``[#####.....]  80/320 final  Pending=200 Running=16 Completed=78 Failed=2``:
    the runs that ended, and how many runs are in each state now."""
    filled = BAR_WIDTH * final // total if total else BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    states = " ".join(f"{k}={v}" for k, v in sorted(now.items()) if v)
    return f"  [{bar}] {final:>{len(str(total))}}/{total} final  {states}"


def show_pool_warnings(stderr: IO[str], console: Console) -> None:
    """Print the worker pool's WARNING and ERROR log lines (each distinct one once: every
    process says the same at start), without timestamps; other lines as they are."""
    seen: set[str] = set()
    for raw in stderr:
        parts = raw.rstrip("\n").split(" ", 5)  # date time pid logger level message
        if len(parts) == 6 and parts[4] in ("WARNING", "ERROR", "CRITICAL"):
            message = f"worker pool {parts[4].lower()}: {parts[5]}"
            if message not in seen:
                seen.add(message)
                console.line(message)
        elif len(parts) != 6 or parts[4] not in ("DEBUG", "INFO"):
            console.line(raw.rstrip("\n"))


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
            "WARNING",  # shown: a Redis without persistence is worth knowing about
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    console = Console()
    assert pool.stderr is not None
    reader = threading.Thread(target=show_pool_warnings, args=(pool.stderr, console), daemon=True)
    reader.start()
    try:
        return run(example, pool, console)
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=60)
        reader.join(timeout=5)
        client = example.app.broker.client
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.unlink(key)
        if server is not None:
            server.close()
            print("Stopped the private redis-server.")


def run(ex: Any, pool: subprocess.Popen[str], console: Console) -> int:
    app: taskq.App = ex.app
    console.line(f"Worker pool starting (pid {pool.pid}): 2 processes x 8 slots.")
    t0 = time.perf_counter()
    ex.add.submit(0, 0).result(timeout=60)  # the pool answers: it is up
    console.line(f"Worker pool ready in {time.perf_counter() - t0:.2f} s.")

    after = app.broker.inspect.recent_events("default", 1)[-1][0]
    start = time.perf_counter()
    futures = [
        *ex.add.map(range(100), range(100)),
        *ex.checksum.map([f"doc-{i}" for i in range(100)]),
        *ex.fetch_profile.map(range(80)),
        *ex.slugify.map([f"Post number {i}" if i % 10 else " " for i in range(40)]),
    ]
    total = len(futures)
    console.line(
        f"Submitted {total} runs of 4 tasks in {1000 * (time.perf_counter() - start):.1f} ms."
    )
    watched = {futures[i].run_id: futures[i].task_name for i in (0, 100, 200, 300)}
    console.line("Live state transitions of four of them (one fails on purpose):")
    # Each run's latest state, from the events: the counts are runs in each state now.
    state = {f.run_id: "Pending" for f in futures}
    now: Counter[str] = Counter(state.values())
    final = 0
    for ev in follow(app.broker, "default", after):
        old = state.get(ev.run_id)
        if old is None or old in FINAL or old == ev.state:
            continue  # not one of ours, or a repeat
        state[ev.run_id] = ev.state
        now[old] -= 1
        now[ev.state] += 1
        if ev.run_id in watched:
            err = f"  ({ev.error_type}: {ev.error_message})" if ev.error_type else ""
            console.line(f"  {watched[ev.run_id]:<28} {ev.run_id}  -> {ev.state}{err}")
        if ev.state in FINAL:
            final += 1
        console.progress(final, total, now, force=final >= total)
        if final >= total:
            break
    elapsed = time.perf_counter() - start
    results = taskq.wait(futures, timeout=30)
    ok = sum(1 for f in results.done if f.state.is_completed())
    failed = [f for f in results.done if f.state.is_failed()]
    console.line(
        f"Summary: {ok} completed, {len(failed)} failed (empty titles, on purpose), "
        f"{len(results.not_done)} unfinished; {elapsed:.2f} s, {total / elapsed:.0f} tasks/s."
    )
    console.line(f"  add(0, 0) -> {futures[0].result()!r}")
    console.line(f"  a failure -> {failed[0].result(raise_on_failure=False)}")
    return 0 if ok + len(failed) == total and len(failed) == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
