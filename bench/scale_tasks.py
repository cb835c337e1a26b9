"""The app and task ``python -m bench.scale`` drains.

``app`` takes its Redis URL and key prefix from ``TASKQ_REDIS_URL`` / ``TASKQ_PREFIX``,
and its partitioned queues from ``TASKQ_BENCH_PARTITIONS`` (``queue=N[,queue=N]``), so
the bench process and the worker subprocesses it starts declare the same keyspace.
The partitions option is passed only where taskq has it (``App(partitions=...)``).
"""

from __future__ import annotations

import inspect
import os

import taskq

PARTITIONS_ENV = "TASKQ_BENCH_PARTITIONS"


def has_partitions() -> bool:
    """True if this taskq declares partitioned queues (``App(partitions=...)``)."""
    return "partitions" in inspect.signature(taskq.App).parameters


def declared_partitions(text: str | None) -> dict[str, int]:
    """``{"hot": 8}`` from ``"hot=8"`` (empty for None or "")."""
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        if item.strip():
            name, _, count = item.partition("=")
            out[name.strip()] = int(count)
    return out


def make_app() -> taskq.App:
    """The bench's app, configured from the environment (see the module docstring)."""
    options: dict[str, object] = {"prefix": os.environ.get("TASKQ_PREFIX") or "scale"}
    partitions = declared_partitions(os.environ.get(PARTITIONS_ENV))
    if partitions and has_partitions():
        options["partitions"] = partitions
    return taskq.App(**options)  # type: ignore[arg-type]


app = make_app()


@app.task
def noop(i: int) -> int:
    """The drained task: does nothing, returns its argument."""
    return i
