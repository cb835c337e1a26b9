"""A scheduled task for the schedule fault test (its own module: workers of the other
apps must not watch its schedule). Each tick's run records its run id on a list."""

from __future__ import annotations

import taskq

app = taskq.App()
TICK_SECONDS = 0.3


def ran_key() -> str:
    return f"{app.settings.prefix}:ticks-ran"


@app.task(schedule=TICK_SECONDS, queue="ticks")
def tick() -> str:
    run_id = taskq.context().run_id
    app.broker.execute("RPUSH", ran_key(), run_id)
    return run_id
