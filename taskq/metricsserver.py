"""The pool's Prometheus endpoint: one port per ``taskq worker --metrics-port`` pool.

The supervisor makes a private directory and sets ``PROMETHEUS_MULTIPROC_DIR`` to it
before anything imports ``prometheus_client`` (the CLI does this before it loads the
app) and before it starts its worker processes, which inherit it: each process then
keeps its values in memory-mapped files there (``prometheus_client``'s multiprocess
mode), and a scrape of the supervisor's port reads them all, summed over the pool.
When a worker process exits, its live gauges are dropped
(:func:`prometheus_client.multiprocess.mark_process_dead`); its counters and
histograms stay counted. The directory is removed when the pool exits.

A scrape also asks Redis, in one pipelined round trip (one per master on a Cluster),
for every consumed queue's entries waiting and pending per priority level, its
delayed runs and its dead letters (:class:`DepthCollector`); a Redis that does not
answer leaves those out of that scrape and the rest is served.

Metrics a user's app records with ``prometheus_client`` in the worker processes land
in the same directory and are served on the same port.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from taskq.errors import ConfigurationError, TaskqError
from taskq.partitions import logical_queue

if TYPE_CHECKING:
    from taskq.app import App

log = logging.getLogger("taskq.metrics")

#: The environment variable prometheus_client's multiprocess mode reads.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: What to install when the extra is missing.
INSTALL_HINT = "pip install 'taskq[metrics]'"


def require_extra() -> None:
    """Raise unless ``prometheus_client`` can be imported (without importing it).

    Raises:
        ConfigurationError: It is not installed; the message names what to install.
    """
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigurationError(f"--metrics-port needs prometheus-client: {INSTALL_HINT}")


class DepthCollector:
    """A custom collector: the queues' depths, read from Redis at scrape time.

    Args:
        app: The pool's app (its broker is looked up at each scrape: the supervisor
            may reconfigure the app, which replaces it).
        queues: The physical queues the pool consumes.
    """

    def __init__(self, app: App, queues: Sequence[str]) -> None:
        self.app = app
        self.queues = list(queues)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            counts = self.app.broker.inspect.level_counts(self.queues)
        except TaskqError as exc:
            log.warning("metrics scrape: queue depths not read: %s", exc)
            return
        depth = GaugeMetricFamily(
            "taskq_queue_depth",
            "Entries waiting for a worker (not yet read), per priority level",
            labels=["queue", "level"],
        )
        in_flight = GaugeMetricFamily(
            "taskq_queue_in_flight",
            "Entries read by a worker and not yet acked, per priority level",
            labels=["queue", "level"],
        )
        delayed = GaugeMetricFamily(
            "taskq_queue_delayed",
            "Runs in the delay queue (retries, delay=, rate and concurrency deferrals)",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "taskq_queue_dead_letters", "Entries in the dead-letter stream", labels=["queue"]
        )
        # A partitioned queue's partitions are summed under its logical name.
        per: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for c in counts:
            w, p, other = per.setdefault(logical_queue(c.queue), ([0] * 10, [0] * 10, [0, 0]))
            for level in range(10):
                w[level] += c.waiting[level]
                p[level] += c.pending[level]
            other[0] += c.delayed
            other[1] += c.dead
        for queue, (w, p, other) in per.items():
            for level in range(10):
                depth.add_metric([queue, str(level)], w[level])
                in_flight.add_metric([queue, str(level)], p[level])
            delayed.add_metric([queue], other[0])
            dead.add_metric([queue], other[1])
        yield from (depth, in_flight, delayed, dead)


class PoolMetrics:
    """The multiprocess directory and the HTTP endpoint of one pool.

    Made (which sets ``PROMETHEUS_MULTIPROC_DIR``) before the app is loaded and the
    worker processes start; :meth:`serve` opens the port; :meth:`close` stops
    serving and removes the directory.

    Args:
        addr: The address to listen on (``127.0.0.1``; ``0.0.0.0`` in a container).
        port: The port (0: any free one, logged).
    """

    def __init__(self, addr: str, port: int) -> None:
        require_extra()
        self.addr = addr
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="taskq-metrics-")
        os.environ[MULTIPROC_ENV] = self.dir
        self._server: Any = None

    def serve(self, app: App, queues: Sequence[str]) -> int:
        """Start serving ``/metrics`` on a daemon thread; the port it listens on.

        Raises:
            TaskqError: The address cannot be bound (in use, not local, ...).
        """
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.dir)  # type: ignore[no-untyped-call]
        registry.register(DepthCollector(app, queues))
        try:
            self._server, _ = start_http_server(self.port, self.addr, registry=registry)
        except OSError as exc:
            raise TaskqError(f"cannot serve metrics on {self.addr}:{self.port}: {exc}") from exc
        port = int(self._server.server_port)
        log.info("serving Prometheus metrics on http://%s:%d/metrics", self.addr, port)
        return port

    def process_dead(self, pid: int | None) -> None:
        """A worker process exited: drop its live gauges (runs in progress)."""
        if pid is None:
            return
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.dir)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Stop serving and remove the directory."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if os.environ.get(MULTIPROC_ENV) == self.dir:
            del os.environ[MULTIPROC_ENV]
        shutil.rmtree(self.dir, ignore_errors=True)
