"""Prometheus metrics of a worker process (the ``taskq[metrics]`` extra).

Imported only by a worker process of a pool started with ``taskq worker
--metrics-port`` (and by that pool's supervisor): ``import taskq`` never imports it,
nor ``prometheus_client``. The supervisor (:mod:`taskq.metricsserver`) gives every
process a private ``PROMETHEUS_MULTIPROC_DIR`` before it starts, so each process's
values live in memory-mapped files there and the supervisor's one port serves them
summed over the pool (``prometheus_client``'s multiprocess mode).

The worker, its admission, outbox, engine and lease keeper each hold a ``metrics``
attribute that is None when metrics are off: every hook is one ``is not None``
check, and nothing here runs.

Labels: ``queue`` is the logical queue (a partitioned queue's partitions summed),
``task`` the registered task name, ``state`` a final state name, ``reason`` a
dead letter's class (:data:`DEAD_REASONS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from taskq.delivery import Delivery
from taskq.partitions import logical_queue
from taskq.protocol import StartKind

#: A dead letter's ``reason`` label: why the entry could not run.
DEAD_REASONS = ("max_deliveries", "unknown_task", "signature", "malformed")

#: Buckets (seconds) of the run duration histogram: a millisecond to an hour.
DURATION_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
DURATION_BUCKETS += (2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Buckets (seconds) of the start latency and retry lateness histograms.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
LATENCY_BUCKETS += (0.5, 1, 2.5, 5, 10, 30, 60, 300)

_STARTS = frozenset({StartKind.STARTED, StartKind.RETRYING, StartKind.RECOVERED})

_RUN_LABELS = ("queue", "task")


def entry_ms(entry_id: bytes) -> int:
    """The server time (Unix ms) a stream entry was added: its id's first part."""
    return int(entry_id[: entry_id.index(b"-")])


class _Series:
    """The label children of one ``(queue, task)``: looked up once, then reused."""

    __slots__ = ("duration", "fenced", "in_progress", "latency", "lateness", "queue", "retries")

    def __init__(self, m: Metrics, queue: str, task: str) -> None:
        self.queue = queue
        self.duration = m.duration.labels(queue, task)
        self.latency = m.start_latency.labels(queue, task)
        self.lateness = m.retry_lateness.labels(queue, task)
        self.retries = m.retries.labels(queue, task)
        self.fenced = m.fenced.labels(queue, task)
        self.in_progress = m.in_progress.labels(queue, task)


class Metrics:
    """The metrics one worker process records (see the module docstring).

    Args:
        registry: Where to register them; None (the default): nowhere, since in
            multiprocess mode the supervisor reads every process's files instead.
    """

    def __init__(self, registry: Any = None) -> None:
        r = registry
        self.runs = Counter(
            "taskq_runs", "Runs that reached a final state", ("queue", "task", "state"), registry=r
        )
        self.duration = Histogram(
            "taskq_run_duration_seconds",
            "Wall time of a run's body, per attempt (a flow: per execution)",
            _RUN_LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.start_latency = Histogram(
            "taskq_start_latency_seconds",
            "From the run's entry entering its stream (enqueue, or promotion from the delay "
            "queue) to its attempt's start, both on the Redis server's clock",
            _RUN_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retry_lateness = Histogram(
            "taskq_retry_lateness_seconds",
            "Start of a retry attempt minus the time it was due (server clock)",
            _RUN_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "taskq_retries", "Failed attempts scheduled for a retry", _RUN_LABELS, registry=r
        )
        self.reclaims = Counter(
            "taskq_lease_reclaims",
            "Deliveries taken over because their lease expired (their worker was lost)",
            ("queue",),
            registry=r,
        )
        self.fenced = Counter(
            "taskq_fenced_writes",
            "Outcomes and retries refused because the attempt no longer held the run",
            _RUN_LABELS,
            registry=r,
        )
        self.dead = Counter(
            "taskq_dead_letters",
            "Entries dead-lettered, by reason class",
            ("queue", "reason"),
            registry=r,
        )
        self.in_progress = Gauge(
            "taskq_runs_in_progress",
            "Runs executing now",
            _RUN_LABELS,
            multiprocess_mode="livesum",
            registry=r,
        )
        self._series: dict[tuple[str, str], _Series] = {}
        self._runs: dict[tuple[str, str, str], Any] = {}

    def _of(self, d: Delivery) -> _Series:
        key = (d.queue, d.task.name)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, logical_queue(d.queue), d.task.name)
        return series

    # -- hooks ---------------------------------------------------------------------------

    def started(
        self,
        batch: list[Delivery],
        kinds: list[tuple[StartKind, int, int]],
        now_ms: int,
        dues: Sequence[int],
    ) -> None:
        """A ``start`` call's deliveries: start latency of the attempts it started, and
        retry lateness of the retries among them (``dues`` in their order)."""
        due = iter(dues)
        for d, (kind, _, _) in zip(batch, kinds, strict=True):
            if kind not in _STARTS:
                continue
            series = self._of(d)
            series.latency.observe(max(0, now_ms - entry_ms(d.entry_id)) / 1000)
            if kind is StartKind.RETRYING and (at := next(due, -1)) >= 0:
                series.lateness.observe(max(0, now_ms - at) / 1000)

    def body(self, d: Delivery, seconds: float) -> None:
        """A body ran for ``seconds`` (one attempt, or one execution of a flow)."""
        self._of(d).duration.observe(seconds)

    def ended(self, d: Delivery, state: str, recorded: bool) -> None:
        """A final outcome was sent: counted by state, or as fenced off."""
        if not recorded:
            self._of(d).fenced.inc()
            return
        key = (d.queue, d.task.name, state)
        child = self._runs.get(key)
        if child is None:
            child = self._runs[key] = self.runs.labels(logical_queue(d.queue), d.task.name, state)
        child.inc()

    def retried(self, d: Delivery, recorded: bool) -> None:
        """A failed attempt was scheduled for a retry (or fenced off instead)."""
        series = self._of(d)
        (series.retries if recorded else series.fenced).inc()

    def running(self, d: Delivery, delta: int) -> None:
        """A run began (+1) or stopped (-1) executing here."""
        self._of(d).in_progress.inc(delta)

    def reclaimed(self, queue: str, n: int) -> None:
        """``n`` deliveries of ``queue`` were taken over (expired leases)."""
        self.reclaims.labels(logical_queue(queue)).inc(n)

    def dead_letter(self, queue: str, reason: str) -> None:
        """An entry of ``queue`` was dead-lettered; ``reason``: one of :data:`DEAD_REASONS`."""
        self.dead.labels(logical_queue(queue), reason).inc()
