"""``taskq.context()``: what a running task or flow body knows about its run.

It gives the run's id, attempt, task name and queue, the flow it is a child of,
whether it was asked to stop (:mod:`taskq.cancel`), and
:meth:`RunContext.progress`, which reports how far the run got: the run record keeps
the latest report (``taskq run ID`` shows it, ``future.state.data`` holds it) and the
queue's events stream gets a ``Progress`` entry (not a state change). Reports are
written at most once per ``MIN_INTERVAL`` seconds per run; a report made sooner is
kept and written by the next one after the interval, or just before the run's outcome,
so the last report always lands. Each write is one round trip, made by the body's own
thread (or event loop); a run that never reports pays nothing.

In a direct (in-process) call of a task or flow there is no run record:
``context()`` gives the names, and ``progress`` only remembers the latest report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from taskq.delivery import Delivery
from taskq.errors import ConfigurationError, MissingContextError, TaskqError
from taskq.runlogs import LocalRun, current_run

log = logging.getLogger("taskq.engine")

#: Seconds between two progress writes of one run.
MIN_INTERVAL = 0.5
#: Longest progress message kept, in characters.
MAX_MESSAGE = 1000


@dataclass
class RunContext:
    """The current run, as its body sees it. Made by :func:`context`."""

    run_id: str
    attempt: int
    task_name: str
    queue: str
    #: The run id of the flow this run is a child of (None: a top-level run).
    flow_run_id: str | None
    _run: Delivery | LocalRun

    @property
    def cancel_requested(self) -> bool:
        """Whether the run was asked to stop (``app.cancel``); see :mod:`taskq.cancel`."""
        return getattr(self._run, "cancel_reason", None) is not None

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the run got: ``fraction`` from 0 to 1, and a short message.

        Raises:
            ConfigurationError: ``fraction`` is not a number from 0 to 1.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ConfigurationError(f"progress fraction must be a number, got {fraction!r}")
        if not 0 <= fraction <= 1:
            raise ConfigurationError(f"progress fraction must be from 0 to 1, got {fraction!r}")
        report = (float(fraction), str(message)[:MAX_MESSAGE])
        run = self._run
        if isinstance(run, LocalRun):
            run.progress = report
            return
        run.progress_pending = report
        if time.monotonic() - run.progress_at >= MIN_INTERVAL:
            flush_progress(run)


def flush_progress(d: Delivery) -> None:
    """Write ``d``'s pending progress report (one fenced script call); a failure is
    logged, never raised into the run."""
    report = d.progress_pending
    if report is None:
        return
    d.progress_pending, d.progress_at = None, time.monotonic()
    try:
        d.task.app.broker.control.progress(d.queue, d.run_id, d.attempt, *report)
    except TaskqError as exc:
        log.warning("progress of run %s not recorded: %s", d.run_id, exc)


def context() -> RunContext:
    """The current run's context, inside a task or flow body.

    Raises:
        MissingContextError: Not inside a run.
    """
    run = current_run.get()
    if run is None:
        raise MissingContextError(
            "taskq.context() is for task and flow bodies: there is no run here"
        )
    if isinstance(run, LocalRun):
        return RunContext(
            run.run_id or "local", run.attempt or 1, run.task_name, run.queue, None, run
        )
    parent = run.parent
    return RunContext(
        run.run_id,
        run.attempt,
        run.task.name,
        run.queue,
        parent.flow_id if parent is not None else None,
        run,
    )
