"""A user's own app, as the README's derived image packs it (tests/containers): the
image is ``FROM taskq-worker`` plus this file in /app and ``CMD ["derived_app:app"]``."""

from __future__ import annotations

import taskq
from taskq.cpus import available_cpus

app = taskq.App()  # TASKQ_REDIS_URL from the environment


@app.task(name="derived.cpus")  # the same name on the host as in /app
def cpus() -> int:
    """The CPUs the worker's container may use, as `taskq worker` counts them."""
    return available_cpus()
