"""The supervisor: the only place that knows about processes.

It starts N worker processes (spawned, so each imports the app afresh and opens
its own connections), restarts one that dies, forwards SIGTERM/SIGINT, and in
burst mode returns once every process has drained and exited.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from taskq.worker import EXIT_TIMEOUT

log = logging.getLogger("taskq.supervisor")


@dataclass(frozen=True)
class PoolConfig:
    """What every worker process of a pool is started with."""

    app_spec: str
    queues: tuple[str, ...] = ()
    concurrency: int = 8
    burst: bool = False
    redis_url: str | None = None
    grace: float = 30.0
    log_level: str = "INFO"
    burst_wait: float = 60.0


def child_main(cfg: PoolConfig) -> None:
    """Entry point of one worker process."""
    from taskq.app import load_app
    from taskq.worker import Worker

    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    app = load_app(cfg.app_spec)
    app.configure(redis_url=cfg.redis_url)
    worker = Worker(
        app,
        cfg.queues or None,
        concurrency=cfg.concurrency,
        burst=cfg.burst,
        grace=cfg.grace,
        replace_on_timeout=True,
        burst_wait=cfg.burst_wait,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.run()
    if worker.handed_back:
        # Runs were handed back while their threads still run: end those threads with
        # the process, now, rather than letting them finish work another worker redoes.
        logging.shutdown()
        os._exit(0)


class Supervisor:
    """Keeps ``processes`` worker processes alive.

    Args:
        cfg: What each process runs.
        processes: How many worker processes.
    """

    def __init__(self, cfg: PoolConfig, processes: int) -> None:
        self.cfg = cfg
        self.processes = processes
        self._ctx = multiprocessing.get_context("spawn")
        self._children: dict[int, Any] = {}
        self._stopping = False
        self._signals = 0
        self.restarts = 0
        self._restarts_due: dict[int, float] = {}
        self._started_at: dict[int, float] = {}
        self._delays: dict[int, float] = {}

    def _spawn(self, slot: int) -> None:
        p = self._ctx.Process(target=child_main, args=(self.cfg,), name=f"taskq-worker-{slot}")
        p.start()
        self._children[slot] = p
        self._started_at[slot] = time.monotonic()
        log.info("started worker process %d (pid %s)", slot, p.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: children stop fetching and get their grace period. Second: they
        hand their unfinished runs back at once. Third: they are killed (the lease brings
        their runs back)."""
        self._signals += 1
        self._stopping = True
        log.info(
            "signal %d (#%d): stopping %d worker process(es)",
            signum,
            self._signals,
            len(self._children),
        )
        for p in self._children.values():
            if not p.is_alive():
                continue
            if self._signals >= 3:
                p.kill()
            elif p.pid is not None:
                p.terminate()

    def run(self) -> int:
        """Run until stopped (or, in burst mode, until all processes drained). Exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        while self._children or (self._restarts_due and not self._stopping):
            self._reap()
            now = time.monotonic()
            for slot, due in list(self._restarts_due.items()):
                if self._stopping:
                    self._restarts_due.clear()
                elif due <= now:
                    del self._restarts_due[slot]
                    self.restarts += 1
                    self._spawn(slot)
        return 0

    def _reap(self) -> None:
        """Wait (up to 1 s, or the next due restart) for a child to exit; schedule restarts.

        A process killed by a signal (after its first second) or one that ran for more
        than 10 s is restarted at once. One that exits on its own soon after starting (a
        broken import, a deterministic crash) is restarted after a delay that doubles up
        to 30 s, so it cannot spin.
        """
        next_due = min(self._restarts_due.values(), default=None)
        timeout = 1.0 if next_due is None else max(0.0, min(1.0, next_due - time.monotonic()))
        sentinels = [p.sentinel for p in self._children.values()]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=timeout)
        else:
            time.sleep(timeout)
        for slot, p in list(self._children.items()):
            if p.is_alive():
                continue
            p.join()
            del self._children[slot]
            code = p.exitcode
            if self._stopping or (self.cfg.burst and code == 0):
                continue
            if code == EXIT_TIMEOUT:
                log.warning("worker process %d was replaced after a task timed out", slot)
                self._restarts_due[slot] = time.monotonic()
                continue
            lived = time.monotonic() - self._started_at.get(slot, 0.0)
            if code is not None and code < 0 and lived > 1:
                delay = 0.0  # killed by a signal (SIGKILL, OOM killer): replace it at once
            elif lived > 10:
                delay = 0.0
            else:  # it failed on its own, soon after starting: back off
                delay = min(30.0, max(0.5, 2 * self._delays.get(slot, 0.25)))
            self._delays[slot] = delay
            log.warning("worker process %d exited with %s; restarting in %.1f s", slot, code, delay)
            self._restarts_due[slot] = time.monotonic() + delay
