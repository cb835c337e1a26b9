"""The app and task ``python -m bench.scale`` drains.

``app`` takes everything from the environment, as a deployed worker does:
``TASKQ_REDIS_URL``, ``TASKQ_PREFIX`` and ``TASKQ_PARTITIONS`` (``hot=8``), which the
bench sets before it imports this module and passes on to the worker subprocesses, so
both sides agree on the keyspace and on the partitions' names.
"""

from __future__ import annotations

import os

import taskq

app = taskq.App(prefix=os.environ.get("TASKQ_PREFIX") or "scale")


@app.task
def noop(i: int) -> int:
    """The drained task: does nothing, returns its argument."""
    return i
