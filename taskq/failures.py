"""The log lines of failed attempts, as Prefect writes them: WARNING when the run will be
retried, ERROR with the traceback when the failure is final.

They go to the engine's logger (``taskq.engine``). Callers check
``log.isEnabledFor`` first, so a filtered level costs neither formatting nor the
look-ups that fill the line. The run's own log (:mod:`taskq.runlogs`) gets the same
text without the task and run it names (:func:`retry_message`, :func:`failure_message`).
"""

from __future__ import annotations

import logging

from taskq.errors import ErrorInfo

log = logging.getLogger("taskq.engine")


def retry_message(attempt: int, of: int, err: ErrorInfo, delay: float) -> str:
    """``attempt n/N failed: <Type>: <msg>; retrying in X s``, for the run's log."""
    return f"attempt {attempt}/{of} failed: {err}; retrying in {round(delay, 3):g} s"


def failure_message(attempt: int, of: int, err: ErrorInfo) -> str:
    """``attempt n/N failed: <Type>: <msg>`` and the traceback, for the run's log."""
    tb = err.traceback.rstrip("\n")
    return f"attempt {attempt}/{of} failed: {err}" + (f"\n{tb}" if tb else "")


def log_retry(task: str, run_id: str, attempt: int, of: int, err: ErrorInfo, delay: float) -> None:
    """``task <name> run <id> attempt n/N failed: <Type>: <msg>; retrying in X s``."""
    log.warning(
        "task %s run %s attempt %d/%d failed: %s; retrying in %g s",
        task,
        run_id,
        attempt,
        of,
        err,
        round(delay, 3),
    )


def log_failure(task: str, run_id: str, attempt: int, of: int, err: ErrorInfo) -> None:
    """The final failure, at ERROR, followed by the recorded traceback."""
    log.error(
        "task %s run %s attempt %d/%d failed: %s\n%s",
        task,
        run_id,
        attempt,
        of,
        err,
        err.traceback.rstrip("\n"),
    )
