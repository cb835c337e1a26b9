"""The supervisor: the only place that knows about processes.

It starts N worker processes (spawned, so each imports the app afresh and opens
its own connections), restarts one that dies, forwards SIGTERM/SIGINT (a burst of
signals from one user action counts once), enforces hard timeouts from outside the
worker processes (:mod:`taskq.deadlines`), touches the heartbeat file
(:mod:`taskq.health`), and in burst mode returns once every process has drained
and exited. A worker process whose supervisor dies hands its runs back and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from taskq.deadlines import Deadlines, Reporter
from taskq.health import Heartbeat
from taskq.worker import EXIT_TIMEOUT, Worker

if TYPE_CHECKING:
    from taskq.metricsserver import PoolMetrics

log = logging.getLogger("taskq.supervisor")

#: Exit code of a worker process that stopped because its supervisor died.
EXIT_ORPHANED = 71


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
    #: Record Prometheus metrics (the supervisor set ``PROMETHEUS_MULTIPROC_DIR``).
    metrics: bool = False


#: Signals closer together than this (seconds) are one user action: a terminal's Ctrl-C
#: reaches every process of the group and the supervisor forwards it too; systemd's
#: default ``KillMode=control-group`` signals the whole group as well.
SIGNAL_WINDOW = 0.5


class SignalCount:
    """Counts signals, taking a burst within :data:`SIGNAL_WINDOW` of the last counted
    one as the same signal."""

    def __init__(self) -> None:
        self.count = 0
        self._last = float("-inf")

    def new(self) -> bool:
        """Record a signal; True if it counts as a new one."""
        now = time.monotonic()
        if now - self._last < SIGNAL_WINDOW:
            return False
        self._last = now
        self.count += 1
        return True


def child_main(cfg: PoolConfig, deadlines: Any = None) -> None:
    """Entry point of one worker process."""
    # Ctrl-C reaches this process directly and again, as SIGTERM, from the supervisor:
    # only the supervisor's counts, so one Ctrl-C is one stop request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from taskq.app import load_app

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
    if cfg.metrics:
        from taskq.metrics import Metrics

        worker.use_metrics(Metrics())
    if deadlines is not None:  # the write end of the pipe to the supervisor
        reporter = Reporter(deadlines)
        reporter.hello(worker.id)
        worker.report_deadline = reporter.timed

    signals = SignalCount()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signals.new():  # not the forwarded copy of a signal the group already got
            worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    threading.Thread(
        target=_exit_with_supervisor, args=(worker,), name="taskq-parent", daemon=True
    ).start()
    worker.run()
    if worker.handed_back:
        # Runs were handed back while their threads still run: end those threads with
        # the process, now, rather than letting them finish work another worker redoes.
        logging.shutdown()
        os._exit(0)


def _exit_with_supervisor(worker: Worker) -> None:
    """Hand everything back and exit as soon as the supervisor is gone (SIGKILLed, OOM
    killed): unsupervised, this process would keep running with no one to stop it."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    log.warning("the supervisor (pid %s) is gone: handing back and exiting", parent.pid)
    try:
        worker.abort("its supervisor died")
    finally:
        logging.shutdown()
        os._exit(EXIT_ORPHANED)


class Supervisor:
    """Keeps ``processes`` worker processes alive.

    Args:
        cfg: What each process runs.
        processes: How many worker processes.
        heartbeat_file: A file to touch about every second (:mod:`taskq.health`).
        metrics: The pool's Prometheus endpoint (:mod:`taskq.metricsserver`), served
            from this process while it runs, and closed when it returns.
    """

    def __init__(
        self,
        cfg: PoolConfig,
        processes: int,
        *,
        heartbeat_file: str | None = None,
        metrics: PoolMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self._heartbeat = Heartbeat(heartbeat_file) if heartbeat_file else None
        self.processes = processes
        self._ctx = multiprocessing.get_context("spawn")
        self._children: dict[int, Any] = {}
        self._stopping = False
        self._signals = SignalCount()
        self.restarts = 0
        self._restarts_due: dict[int, float] = {}
        self._started_at: dict[int, float] = {}
        self._delays: dict[int, float] = {}
        self.deadlines = Deadlines(cfg.app_spec, cfg.redis_url, cfg.queues)

    def _spawn(self, slot: int) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(
            target=child_main, args=(self.cfg, writer), name=f"taskq-worker-{slot}"
        )
        p.start()
        writer.close()  # the child holds it now: its exit means end of file here
        self.deadlines.attach(slot, reader)
        self._children[slot] = p
        self._started_at[slot] = time.monotonic()
        log.info("started worker process %d (pid %s)", slot, p.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: children stop fetching and get their grace period. Second: they
        hand their unfinished runs back at once. Third: they are killed (the lease brings
        their runs back). A SIGINT and a SIGTERM in the same burst (one user action
        reaching the whole process group) count once."""
        if not self._signals.new():
            return
        self._stopping = True
        log.info(
            "signal %d (#%d): stopping %d worker process(es)",
            signum,
            self._signals.count,
            len(self._children),
        )
        for p in self._children.values():
            if not p.is_alive():
                continue
            if self._signals.count >= 3:
                p.kill()
            elif p.pid is not None:
                p.terminate()

    def run(self) -> int:
        """Run until stopped (or, in burst mode, until all processes drained). Exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            if self.metrics is not None:  # before the children: they write to its directory
                self._serve_metrics(self.metrics)
            for slot in range(self.processes):
                self._spawn(slot)
            self.deadlines.watch_cancels()  # a run that holds the GIL ignores a cancel
            self._loop()
        finally:
            if self.metrics is not None:
                self.metrics.close()
            self.deadlines.close()
            if self._heartbeat is not None:
                self._heartbeat.remove()
        return 0

    def _serve_metrics(self, metrics: PoolMetrics) -> None:
        from taskq.app import load_app
        from taskq.metrics import Metrics

        self.deadlines.metrics = Metrics()  # the timeouts and cancels recorded here

        app = load_app(self.cfg.app_spec)  # the CLI's, already imported and configured
        app.configure(redis_url=self.cfg.redis_url)
        metrics.serve(app, app.physical_queues(self.cfg.queues or None))

    def _loop(self) -> None:
        while self._children or (self._restarts_due and not self._stopping):
            if self._heartbeat is not None:
                self._heartbeat.beat()  # the loop runs: children alive or being restarted
            self._reap()
            now = time.monotonic()
            for slot, due in list(self._restarts_due.items()):
                if self._stopping:
                    self._restarts_due.clear()
                elif due <= now:
                    del self._restarts_due[slot]
                    self.restarts += 1
                    self._spawn(slot)

    def _reap(self) -> None:
        """Wait (up to 1 s, or the next due restart) for a child to exit; schedule restarts.

        A process killed by a signal (after its first second) or one that ran for more
        than 10 s is restarted at once. One that exits on its own soon after starting (a
        broken import, a deterministic crash) is restarted after a delay that doubles up
        to 30 s, so it cannot spin.
        """
        next_due = min(self._restarts_due.values(), default=None)
        timeout = 1.0 if next_due is None else max(0.0, min(1.0, next_due - time.monotonic()))
        timeout = self.deadlines.timeout(timeout)  # wake when a timed run becomes overdue
        sentinels = [p.sentinel for p in self._children.values()]
        if sentinels:
            multiprocessing.connection.wait(
                sentinels + self.deadlines.connections(), timeout=timeout
            )
        else:
            time.sleep(timeout)
        self.deadlines.receive()
        killed = set(self.deadlines.enforce(self._children))
        for slot, p in list(self._children.items()):
            if p.is_alive():
                continue
            p.join()
            del self._children[slot]
            self.deadlines.detach(slot)
            if self.metrics is not None:
                self.metrics.process_dead(p.pid)
            code = p.exitcode
            if self._stopping or (self.cfg.burst and code == 0):
                continue
            if code == EXIT_TIMEOUT or slot in killed:
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
